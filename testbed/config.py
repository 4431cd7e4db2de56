"""The scenario schema: a YAML file validated once, at the edge, into typed objects.

Every problem found here is reported with its key path, the value and what is allowed, before
anything runs; schema and cross-field problems are reported together. :func:`load_scenario` is
the one entry point.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, ValidationError, field_validator, model_validator

from testbed.files import check_component
from testbed.memory import machine_memory_mb
from testbed.network import DEFAULT_PROFILE, Link, dump_network, parse_network
from testbed.registry import ATTACKS, DATASETS, FILTERS, MODELS, PROTOCOLS, SCHEMES, SPLITS, Params, Registry, Spec, short_repr, validation_problems


class ScenarioError(ValueError):
    """A scenario that cannot run; ``problems`` are ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("invalid scenario:\n" + "\n".join(f"  {path}: {msg}" for path, msg in problems))


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain YAML
    keeps the last one silently, so a scenario would not run what its author reads)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {short_repr(key)} (first given on line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            except TypeError:  # unhashable: the base class reports it
                continue
        return super().construct_mapping(node, deep)


def read_yaml(text: str, where: str) -> Any:
    """Parse ``text`` with :class:`UniqueKeyLoader`; a problem is a :class:`ScenarioError` at ``where``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({err.context})" if err.context else ""
        raise ScenarioError([(where, f"not valid YAML: {err.problem}{at}{context}")]) from None
    except yaml.YAMLError as err:
        raise ScenarioError([(where, f"not valid YAML: {' '.join(str(err).split())}")]) from None
    except RecursionError:
        raise ScenarioError([(where, "not valid YAML: nested too deeply")]) from None


def _spec(registry: Registry):
    """A scenario field naming a registered component: ``{kind: ..., <params>}`` or a bare kind."""
    return Annotated[
        Spec,
        BeforeValidator(registry.parse_spec),
        PlainSerializer(lambda spec: spec.dump(), return_type=dict),
    ]


def _default(kind: str) -> Any:
    # Validated when a scenario is, not at import: the registries fill when the plug-ins load.
    return Field(default_factory=lambda: kind, validate_default=True)


ModelSpec = _spec(MODELS)
DatasetSpec = _spec(DATASETS)
SplitSpec = _spec(SPLITS)
SchemeSpec = _spec(SCHEMES)
AttackSpec = _spec(ATTACKS)
FilterSpec = _spec(FILTERS)
ProtocolSpec = _spec(PROTOCOLS)
#: A named profile (:data:`testbed.network.PROFILES`) or ``{bandwidth_mbps, rtt_ms}``; written back
#: as it was given, a profile by its name.
NetworkSpec = Annotated[Link, BeforeValidator(parse_network), PlainSerializer(dump_network)]


class Strict(Params):
    """A scenario section: the rules of component parameters (unknown keys are errors; strict
    numbers, so `epochs: true` or `temperature: .inf` is a mistake to report, not 1 or NaN)."""


class TrainingConfig(Strict):
    batch_size: int = Field(32, ge=1, description="minibatch size of local training")
    learning_rate: float = Field(0.003, gt=0, le=10)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(0.0, ge=0)
    temperature: float = Field(2.0, gt=0, description="T: softens both distributions in the mutual term")
    mutual_weight: float = Field(0.25, ge=0, description="lambda: weight of T^2 * KL(peer || own)")
    warmup_epochs: int = Field(1, ge=0, description="first epochs train on labels only, before any exchange")
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate over the epochs: constant, or cosine-annealed to 0 at the last epoch")
    augment: bool = Field(False, description="images: random crop (4-pixel reflect padding) and horizontal flip for every minibatch")
    query_fraction: float = Field(1.0, gt=0, le=1, description="SMuLe: share of its samples (a seeded subset) a querier asks its peers to predict")


#: The defence an honest party runs when its scenario names no ``filters`` (``filters: []`` turns
#: filtering off): ``trust`` (the peer's weight falls to 0 while its answers' argmax disagrees with
#: the querier's labels), then ``own_confidence`` and ``true_label``. Chosen from the
#: utility-robustness frontier by the rule of ``analysis.frontier``: no defence measured has a
#: worst-case harm within 2 points, so the rule takes the smallest (4.5 points, a weak
#: ``confidence_boost``). It keeps none of SMuLe's gain on a label-skewed split, where it switches
#: an honest but different peer off. docs/results.md, "The utility-robustness frontier".
DEFAULT_FILTERS: tuple[dict[str, Any], ...] = ({"kind": "trust"}, {"kind": "own_confidence"}, {"kind": "true_label"})


class PartyConfig(Strict):
    role: Literal["honest", "malicious"] = "honest"
    samples: int = Field(ge=1, description="training samples this party holds")
    model: ModelSpec = _default("mlp")
    attacks: list[AttackSpec] = Field(default_factory=list, description="malicious parties only")
    filters: list[FilterSpec] = Field(description="robustness filters on the peers' answers; default DEFAULT_FILTERS for honest parties")

    @model_validator(mode="before")
    @classmethod
    def _default_filters(cls, data: Any) -> Any:
        """SMuLe runs with its robustness filtering: an honest party filters unless told not to."""
        if isinstance(data, dict) and "filters" not in data:
            honest = data.get("role", "honest") == "honest"
            data = {**data, "filters": [dict(f) for f in DEFAULT_FILTERS] if honest else []}
        return data


_RAY_ADDRESS = re.compile(r"(ray://)?([^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")


class RayConfig(Strict):
    address: str | None = Field(None, description="attach to this cluster; default $RAY_ADDRESS, else start locally")
    object_store_mb: int = Field(1024, ge=100, description="object store bound for a local Ray, at most the machine's memory")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (default: all)")

    @field_validator("object_store_mb")
    @classmethod
    def _fits_the_machine(cls, mb: int) -> int:
        # Ray itself fails late, with a negative size and without naming the key.
        if mb > (total := machine_memory_mb()):
            raise ValueError(f"more than this machine's memory ({total} MB); allowed: 100..{total}")
        return mb

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        match = _RAY_ADDRESS.fullmatch(address) if address not in (None, "auto") else None
        if address in (None, "auto") or (match and 0 < int(match.group(3)) < 65536):
            return address
        raise ValueError("expected HOST:PORT of the cluster's head (as `ray start --head` prints it), ray://HOST:PORT, or auto")


#: A Python module path: what ``plugins`` may name.
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _module_name(name: str) -> str:
    if not _MODULE.fullmatch(name):
        raise ValueError("expected a module to import, such as my_attacks or mypackage.filters")
    return name


class Scenario(Strict):
    plugins: list[Annotated[str, AfterValidator(_module_name)]] = Field(
        [], description="modules imported before the scenario is validated, where it runs (every Ray worker too): a user's own attacks, filters, models, schemes register themselves on import"
    )
    name: Annotated[str, AfterValidator(check_component)] = Field(description="names the results directory")
    description: str = ""
    # numpy, torch and scikit-learn all take 32-bit seeds
    seed: int = Field(0, ge=0, le=2**32 - 1)
    protocol: ProtocolSpec = _default("smule")
    epochs: int = Field(10, ge=1, le=10000)
    dataset: DatasetSpec = _default("digits")
    split: SplitSpec = _default("iid")
    scheme: SchemeSpec = _default("plaintext")
    training: TrainingConfig = TrainingConfig()
    parties: dict[str, PartyConfig] = Field(min_length=2)
    validation_samples: int = Field(
        0, ge=0, description="hold out this many train-pool samples (seeded) and evaluate on them instead of the test set: for choosing hyperparameters"
    )
    network: NetworkSpec = Field(
        default_factory=lambda: DEFAULT_PROFILE, validate_default=True,
        description="the link the summary's network time is computed for: lan, wan, mobile, or {bandwidth_mbps, rtt_ms}; changes no training",
    )
    ray: RayConfig = RayConfig()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def __reduce__(self) -> tuple:
        # Pickled (to a Ray worker) as plain data and validated again there, after its plug-ins
        # are imported: their classes cannot be unpickled before the modules that define them.
        return _revalidated, (self.dump(),)


def _revalidated(raw: dict[str, Any]) -> Scenario:
    problems = import_plugins(raw.get("plugins"))
    if problems:
        raise ScenarioError(problems)
    return Scenario.model_validate(raw)


def import_plugins(modules: Any) -> list[tuple[str, str]]:
    """Import each module ``plugins`` names (its components register themselves); ``(key,
    message)`` for each that is not a module name or fails to import, naming the error's first line.
    A malformed ``plugins`` value is left to the schema to report."""
    problems = []
    for i, module in enumerate(modules if isinstance(modules, list) else []):
        if not isinstance(module, str) or not _MODULE.fullmatch(module):
            continue
        try:
            importlib.import_module(module)
        except Exception as err:  # a user's module may fail in any way; it must not be a traceback
            first = (str(err).strip().splitlines() or [""])[0]
            problems.append((f"plugins.{i}", f"cannot import module '{module}': {type(err).__name__}{': ' + first if first else ''}"))
    return problems


#: A model larger than this is refused before anything is allocated: 400 MB of float32 weights per
#: party, far above any model here, while a typo such as ``hidden: [1.0e+11]`` asks for terabytes.
MAX_MODEL_PARAMETERS = 100_000_000


def check_scenario(scenario: Scenario) -> None:
    """Cross-field checks that need the registries: sizes, models, scheme and attack compatibility."""
    problems = cross_field_problems(scenario)
    if problems:
        raise ScenarioError(problems)


def cross_field_problems(scenario: Scenario, invalid: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """The problems :func:`check_scenario` raises. ``invalid`` names key paths that failed schema
    validation (``scenario`` holds defaults there): checks that read them are skipped, so the
    others can be reported in the same pass."""

    def valid(*keys: str) -> bool:
        return not any(key == bad or key.startswith(bad + ".") or bad.startswith(key + ".") for key in keys for bad in invalid)

    problems: list[tuple[str, str]] = []
    dataset = DATASETS.create(scenario.dataset)
    if valid("dataset"):
        try:
            dataset.check()
        except (FileNotFoundError, ValueError) as err:
            problems.append(("dataset", str(err)))
    pool = dataset.train_pool_size() - scenario.validation_samples
    total = sum(p.samples for p in scenario.parties.values())
    if total > pool and valid("dataset", "validation_samples", *(f"parties.{n}.samples" for n in scenario.parties)):
        sizes = ", ".join(f"{n}={p.samples}" for n, p in scenario.parties.items())
        held = f" left after validation_samples={scenario.validation_samples}" if scenario.validation_samples else ""
        problems.append(("parties.*.samples", f"{sizes} add up to {total}, more than the {pool} training samples{held} of dataset '{dataset.kind}'"))
    scheme = SCHEMES.get(scenario.scheme.kind)
    workers, cpus = getattr(scenario.scheme.params, "workers", 1), scenario.ray.num_cpus or os.cpu_count() or 1
    if workers > cpus and not scenario.ray.address and valid("scheme", "ray"):
        problems.append(("scheme.workers", f"{workers} is more than the {cpus} CPUs of the local Ray (ray.num_cpus); allowed: 1..{cpus}"))
    if valid("scheme"):
        problems += scheme.machine_problems(scenario.scheme.params)
    for name, party in scenario.parties.items():
        if not (name.isascii() and name.replace("_", "").replace("-", "").isalnum()):
            problems.append((f"parties.{name}", f"party name {short_repr(name)}: allowed are ASCII letters, digits, '-' and '_'"))
        if party.attacks and party.role != "malicious" and valid(f"parties.{name}.role", f"parties.{name}.attacks"):
            problems.append((f"parties.{name}.attacks", f"only a malicious party attacks; set parties.{name}.role: malicious"))
        if valid("dataset", f"parties.{name}.attacks"):
            problems += _attack_problems(f"parties.{name}.attacks", party, dataset)
        if valid("dataset", "scheme", f"parties.{name}.model", f"parties.{name}.samples"):
            problems += _model_problems(f"parties.{name}", party, dataset, scheme, scenario.scheme.params)
    return problems + PROTOCOLS.get(scenario.protocol.kind).problems(scenario, valid)


def _attack_problems(key: str, party: PartyConfig, dataset: Any) -> list[tuple[str, str]]:
    problems, manipulating = [], []
    for i, spec in enumerate(party.attacks):
        attack = ATTACKS.create(spec)
        try:
            attack.check(dataset.input_shape, dataset.classes)
        except ValueError as err:
            problems.append((f"{key}.{i}", str(err)))
        if attack.manipulates_predictions:
            manipulating.append(spec.kind)
    if len(manipulating) > 1:
        problems.append((key, f"at most one prediction manipulation per party, got {', '.join(manipulating)}"))
    return problems


def _model_problems(party_key: str, party: PartyConfig, dataset: Any, scheme: Any, scheme_params: Any) -> list[tuple[str, str]]:
    key = f"{party_key}.model"
    factory = MODELS.create(party.model)
    try:
        # Shapes only, nothing allocated: the size is checked before the real model is built.
        with torch.device("meta"):
            shapes = factory.build(dataset.input_shape, dataset.classes)
        size = sum(p.numel() for p in shapes.parameters())
        if size > MAX_MODEL_PARAMETERS:
            return [(key, f"{party.model.dump()} has {size:,} parameters for inputs of shape {dataset.input_shape}; allowed: at most {MAX_MODEL_PARAMETERS:,}")]
        model = factory.build(dataset.input_shape, dataset.classes)
    except ValueError as err:
        return [(key, str(err))]
    except RuntimeError as err:  # torch's own shape checks
        return [(key, f"{party.model.dump()} cannot be built for inputs of shape {dataset.input_shape}: {str(err).strip().splitlines()[0]}")]
    if party.samples == 1 and (problem := _one_sample_problem(shapes, dataset.input_shape)):
        return [(f"{party_key}.samples", f"1 cannot train {party.model.dump()}: {problem}; allowed: at least 2 samples, or a model without batch-norm")]
    try:
        scheme.check_model(scheme_params, model, dataset.input_shape)
    except ValueError as err:
        return [(key, str(err))]
    return []


def _one_sample_problem(shapes: torch.nn.Module, input_shape: tuple[int, ...]) -> str | None:
    """Why ``shapes`` (a model on the meta device) cannot take a training step on a minibatch of
    one sample, or ``None``: batch-norm needs more than one value per channel (training drops a
    last minibatch of one, but a party of one sample has no other)."""
    try:
        with torch.device("meta"):
            shapes.train()(torch.zeros(1, *input_shape))
    except ValueError as err:
        return str(err).strip().splitlines()[0]
    return None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``key.path=value`` (value parsed as YAML) to the raw scenario mapping in place;
    raises :class:`ScenarioError` naming the key (``raw`` may then hold part of the path)."""
    path, sep, text = assignment.partition("=")
    path = path.strip()
    keys = path.split(".")
    if not sep or not all(keys):
        raise ScenarioError([(assignment, "expected --set key.path=value, e.g. --set training.temperature=4")])
    try:
        value = read_yaml(text, path)
    except ScenarioError as err:
        (_, message), = err.problems
        raise ScenarioError([(path, f"{message}; the value {short_repr(text)} is read as YAML, so quote a string: --set \"{path}='...'\"")]) from None
    node: Any = raw
    for depth, key in enumerate(keys):
        here, last = ".".join(keys[: depth + 1]), depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError([(here, f"no list item {key} (the list has {len(node)}; items are numbered from 0)")])
            key = int(key)
        elif not isinstance(node, dict):
            parent = ".".join(keys[:depth])
            raise ScenarioError([(parent, f"is {short_repr(node)}, not a mapping or list, so it has no key '{key}'")])
        elif key not in node and not last:
            if keys[depth + 1].isdigit():
                raise ScenarioError([(here, f"is not set, so it has no item {keys[depth + 1]} to change; set the whole list instead: --set '{here}=[...]'")])
            node[key] = {}
        if last:
            node[key] = value
        else:
            node = node[key]


def parse_scenario(raw: Any, overrides: list[str] = ()) -> Scenario:
    """Validate a raw mapping (plus ``key=value`` overrides); raises :class:`ScenarioError`
    listing every problem found: bad overrides, schema errors, and the cross-field problems of
    the parts that are valid."""
    if raw is None:
        raise ScenarioError([("<top>", "the scenario is empty; it needs at least name and parties")])
    if not isinstance(raw, dict):
        raise ScenarioError([("<top>", f"a scenario is a mapping of keys, got {type(raw).__name__}")])
    problems: list[tuple[str, str]] = []
    for assignment in overrides:
        trial = copy.deepcopy(raw)
        try:
            apply_override(trial, assignment)
            raw = trial
        except ScenarioError as err:
            problems += err.problems
    problems += import_plugins(raw.get("plugins"))  # before the kinds they register are looked up
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        problems += validation_problems(err)
        invalid = frozenset(path for path, _ in problems) | {".".join(map(str, _part(e["loc"]))) for e in errors}
        salvaged = _salvage(raw, [_part(e["loc"]) for e in errors])
        if salvaged is not None:
            problems += cross_field_problems(salvaged, invalid)
        raise ScenarioError(problems) from None
    problems += cross_field_problems(scenario, frozenset(path for path, _ in problems))
    if problems:
        raise ScenarioError(problems)
    return scenario


def _part(loc: tuple) -> tuple:
    """The part of the scenario a schema error invalidates: a top-level key, a key of
    ``training`` or ``ray``, or a key of one party (the whole party when its name is the problem)."""
    if "[key]" in loc:
        return loc[: loc.index("[key]")]
    return loc[:3] if loc[0] == "parties" else loc[:2] if loc[0] in ("training", "ray") else loc[:1]


def _salvage(raw: dict[str, Any], parts: list[tuple]) -> Scenario | None:
    """``raw`` with its invalid parts replaced by defaults (required ones by placeholders), so
    the cross-field checks of the other parts can run; ``None`` when nothing valid is left."""
    raw = copy.deepcopy(raw)
    for part in parts:
        if part in ((), ("parties",)):
            return None
        node = raw
        for key in part[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and part[-1] in node:
            del node[part[-1]]
            if part[0] == "parties" and len(part) == 2:
                node[part[-1]] = {}  # a placeholder: the party still counts in the cross-field checks
    raw.setdefault("name", "invalid")
    parties = raw.get("parties")
    for name in parties if isinstance(parties, dict) else ():
        if not isinstance(parties[name], dict):
            parties[name] = {}
        parties[name].setdefault("samples", 1)
    try:
        return Scenario.model_validate(raw)
    except ValidationError:
        return None


def load_scenario(path: str | os.PathLike, overrides: list[str] = ()) -> Scenario:
    """Read, override and validate a scenario file; raises :class:`ScenarioError`, naming the file
    when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ScenarioError([(str(path), f"not UTF-8 text ({err.reason} at byte {err.start})")]) from None
    except OSError as err:
        raise ScenarioError([(str(path), f"cannot read the scenario: {err.strerror or err}")]) from None
    return parse_scenario(read_yaml(text, str(path)), overrides)

