"""The scenario schema: a YAML file validated once, at the edge, into typed objects.

Every problem found here is reported with its key path, the value and what is allowed, before
anything runs. :func:`load_scenario` is the one entry point.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

import attacks  # noqa: F401  (registers attacks)
import testbed.filters  # noqa: F401  (registers filters)
import testbed.protocols  # noqa: F401  (registers protocols)
import testbed.schemes  # noqa: F401  (registers schemes)
from attacks.base import ATTACKS, PredictionManipulation
from testbed.datasets import DATASETS
from testbed.filters.base import FILTERS
from testbed.models import MODELS, is_he_friendly
from testbed.protocols.base import PROTOCOLS
from testbed.registry import Registry, Spec
from testbed.schemes.base import SCHEMES
from testbed.splits import SPLITS


class ScenarioError(ValueError):
    """A scenario that cannot run; ``problems`` are ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("invalid scenario:\n" + "\n".join(f"  {path}: {msg}" for path, msg in problems))


def _spec(registry: Registry, default: Any = None):
    """A scenario field naming a registered component: ``{kind: ..., <params>}`` or a bare kind."""
    kind = Annotated[
        Spec,
        BeforeValidator(registry.parse_spec),
        PlainSerializer(lambda spec: spec.dump(), return_type=dict),
    ]
    return kind, (registry.parse_spec(default) if default is not None else None)


ModelSpec, DEFAULT_MODEL = _spec(MODELS, "mlp")
DatasetSpec, DEFAULT_DATASET = _spec(DATASETS, "digits")
SplitSpec, DEFAULT_SPLIT = _spec(SPLITS, "iid")
SchemeSpec, DEFAULT_SCHEME = _spec(SCHEMES, "plaintext")
AttackSpec, _ = _spec(ATTACKS)
FilterSpec, _ = _spec(FILTERS)
ProtocolSpec, DEFAULT_PROTOCOL = _spec(PROTOCOLS, "smule")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingConfig(Strict):
    batch_size: int = Field(32, ge=1, description="minibatch size of local training")
    learning_rate: float = Field(0.003, gt=0, le=10)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(0.0, ge=0)
    temperature: float = Field(2.0, gt=0, description="T: softens both distributions in the mutual term")
    mutual_weight: float = Field(0.25, ge=0, description="lambda: weight of T^2 * KL(peer || own)")
    warmup_epochs: int = Field(1, ge=0, description="first epochs train on labels only, before any exchange")


class PartyConfig(Strict):
    role: Literal["honest", "malicious"] = "honest"
    samples: int = Field(ge=1, description="training samples this party holds")
    model: ModelSpec = DEFAULT_MODEL
    attacks: list[AttackSpec] = Field(default_factory=list, description="malicious parties only")
    filters: list[FilterSpec] = Field(default_factory=list, description="robustness filters on the peers' answers")


class RayConfig(Strict):
    address: str | None = Field(None, description="attach to this cluster; default $RAY_ADDRESS, else start locally")
    object_store_mb: int = Field(1024, ge=100, description="object store bound for a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (default: all)")


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the results directory")
    description: str = ""
    seed: int = Field(0, ge=0)
    protocol: ProtocolSpec = DEFAULT_PROTOCOL
    epochs: int = Field(10, ge=1, le=10000)
    dataset: DatasetSpec = DEFAULT_DATASET
    split: SplitSpec = DEFAULT_SPLIT
    scheme: SchemeSpec = DEFAULT_SCHEME
    training: TrainingConfig = TrainingConfig()
    parties: dict[str, PartyConfig] = Field(min_length=2)
    ray: RayConfig = RayConfig()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def check_scenario(scenario: Scenario) -> None:
    """Cross-field checks that need the registries: sizes, models, scheme and attack compatibility."""
    problems: list[tuple[str, str]] = []
    dataset = DATASETS.create(scenario.dataset)
    try:
        dataset.check()
    except (FileNotFoundError, ValueError) as err:
        problems.append(("dataset", str(err)))
    pool = dataset.train_pool_size()
    total = sum(p.samples for p in scenario.parties.values())
    if total > pool:
        sizes = ", ".join(f"{n}={p.samples}" for n, p in scenario.parties.items())
        problems.append(("parties.*.samples", f"{sizes} add up to {total}, more than the {pool} training samples of dataset '{dataset.kind}'"))
    scheme = SCHEMES.get(scenario.scheme.kind)
    for name, party in scenario.parties.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            problems.append((f"parties.{name}", "party names may use letters, digits, '-' and '_' only"))
        if party.attacks and party.role != "malicious":
            problems.append((f"parties.{name}.attacks", f"only a malicious party attacks; set parties.{name}.role: malicious"))
        try:
            model = MODELS.create(party.model).build(dataset.input_shape, dataset.classes)
        except ValueError as err:
            problems.append((f"parties.{name}.model", str(err)))
            continue
        if scheme.needs_he_friendly_model and not is_he_friendly(model):
            problems.append((f"parties.{name}.model", f"scheme '{scheme.kind}' needs an HE-friendly model (mlp with square/poly2, he_cnn); got '{party.model.kind}' with {party.model.params}"))
            continue
        try:
            scheme.check_model(scenario.scheme.params, model, dataset.input_shape)
        except ValueError as err:
            problems.append((f"parties.{name}.model", str(err)))
        manipulating = []
        for i, spec in enumerate(party.attacks):
            attack = ATTACKS.create(spec)
            try:
                attack.check(dataset.input_shape, dataset.classes)
            except ValueError as err:
                problems.append((f"parties.{name}.attacks.{i}", str(err)))
            if isinstance(attack, PredictionManipulation):
                manipulating.append(spec.kind)
        if len(manipulating) > 1:
            problems.append((f"parties.{name}.attacks", f"at most one prediction manipulation per party, got {', '.join(manipulating)}"))
    protocol = PROTOCOLS.get(scenario.protocol.kind)
    architectures = {str(party.model.dump()) for party in scenario.parties.values()}
    if protocol.needs_same_architecture and len(architectures) > 1:
        problems.append(("parties.*.model", f"protocol '{protocol.kind}' averages models, so every party needs the same model; got {', '.join(sorted(architectures))}"))
    if scenario.protocol.kind == "smule" and scenario.training.warmup_epochs >= scenario.epochs:
        problems.append(("training.warmup_epochs", f"{scenario.training.warmup_epochs} leaves no exchange epoch of epochs={scenario.epochs}; allowed: 0..{scenario.epochs - 1}"))
    if problems:
        raise ScenarioError(problems)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``key.path=value`` (value parsed as YAML) to the raw scenario mapping in place."""
    if "=" not in assignment:
        raise ScenarioError([(assignment, "expected --set key.path=value")])
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    node: Any = raw
    for depth, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ScenarioError([(".".join(keys[: depth + 1]), f"no list item {key} (the list has {len(node)})")])
            node = node[int(key)]
        else:
            node = node.setdefault(key, {})
        if not isinstance(node, (dict, list)):
            raise ScenarioError([(".".join(keys[: depth + 1]), f"is {node!r}, not a mapping")])
    last = keys[-1]
    value = yaml.safe_load(text)
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ScenarioError([(path, f"no list item {last} (the list has {len(node)})")])
        node[int(last)] = value
    else:
        node[last] = value


def parse_scenario(raw: Any, overrides: list[str] = ()) -> Scenario:
    """Validate a raw mapping (plus ``key=value`` overrides); raises :class:`ScenarioError`."""
    if not isinstance(raw, dict):
        raise ScenarioError([("<top>", f"a scenario is a mapping of keys, got {type(raw).__name__}")])
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError([(_location(e["loc"]), _message(e)) for e in err.errors()]) from None
    check_scenario(scenario)
    return scenario


def load_scenario(path: str | os.PathLike, overrides: list[str] = ()) -> Scenario:
    """Read, override and validate a scenario file; raises :class:`ScenarioError` or ``OSError``."""
    text = Path(path).read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioError([(str(path), f"not valid YAML: {err}")]) from None
    return parse_scenario(raw, overrides)


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "<top>"


def _message(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown key (value {error['input']!r})"
    if error["type"] == "missing":
        return "required key is missing"
    if "input" in error and not isinstance(error["input"], (dict, list)):
        return f"{message} (got {error['input']!r})"
    return message
