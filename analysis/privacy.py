"""Privacy leakage audit: what the exchanged predictions and the final models reveal, per protocol.

``python -m analysis.privacy audit SCENARIO [--set KEY=VALUE ...] [--seeds 0 1 2] [--references 16]
[--nonmembers N] [--out DIR] [--overwrite]`` runs the scenario's honest parties under every
audited protocol (SMuLe with the default defence and without a filter, local, joint, FedAvg),
in-process, per seed, and attacks each party's final model (membership inference: loss
threshold and offline LiRA, :mod:`analysis.membership`; members are a party's training samples,
non-members held-out samples of the train pool no party holds), with the peer's training
samples as members too. For SMuLe it also measures what a querier learns from the answers
(:mod:`analysis.answer_leakage`). Writes ``DIR/<scenario>/``: ``membership.csv``, ``extraction.csv``,
``sequence.csv``, ``scores.npz`` (every attack's scores, for ROC curves), ``meta.json``.

``python -m analysis.privacy flood SCENARIO [--levels ...] [--seeds ...] [--out DIR]`` measures
the accuracy cost of CKKS noise flooding (``scheme.flood_std``) in ``mode: accounted``, and the
CKKS decryption error real mode leaves on the same models, and how many honest answers the
simulator's harm audit would flag for the flood alone: ``DIR/<scenario>-flood/flood.csv``,
``ckks_error.csv``, ``flood_flags.csv``.

``python -m analysis.privacy report DIR [DIR ...] [--tables DIR] [--figures DIR]`` aggregates
audit and flood results over seeds into small tables and figures and prints them as markdown.

Results are written atomically and never over earlier ones without ``--overwrite``. Exit status
2 on bad input, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from analysis.answer_leakage import ExchangeLog, agreement, distil, margin_sequence, mean_answer, sequence_membership
from analysis.membership import ReferenceModels, attack_metrics, confidence_margin, loss_scores, reference_models
from analysis.privacy_report import report
from testbed.cli import UsageError, add_set_argument, at_least, output, path_argument, run_command, seed_argument
from testbed.config import DEFAULT_FILTERS, Scenario, load_scenario, parse_scenario
from testbed.datasets import LoadedData, load_data
from testbed.files import atomic_path, prepare_output
from testbed.files import to_json, write_atomic
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.metrics import HARM_KL, kl_divergence, softmax
from testbed.models import predict
from testbed.registry import DATASETS, PROTOCOLS, SCHEMES
from testbed.seeding import derived_seed, seeded_rng
from testbed.shares import PartyData, party_data
from testbed.training import accuracy

#: The audited protocols, in the order they run: the scenario's protocol, and the filters of every
#: party where the variant sets them. Those whose parties exchange answers also log them.
VARIANTS: dict[str, tuple[dict, list | None]] = {
    "smule_default": ({"kind": "smule"}, [dict(f) for f in DEFAULT_FILTERS]),
    "smule_nofilter": ({"kind": "smule"}, []),
    "local": ({"kind": "local"}, None),
    "joint": ({"kind": "joint", "measure_crypten": False}, None),
    "fedavg": ({"kind": "fedavg"}, None),
}
PROTOCOL_VARIANTS = tuple(VARIANTS)
ANSWERING_VARIANTS = tuple(name for name, (spec, _) in VARIANTS.items() if PROTOCOLS.get(spec["kind"]).audits_answers)
FLOOD_LEVELS = (0.0, 1e-3, 1e-2, 0.1, 0.3, 1.0)
#: Fewer held-out samples than this cannot give a meaningful ROC curve.
MIN_NONMEMBERS = 50
AUDIT_FILES = ("membership.csv", "accuracy.csv", "extraction.csv", "sequence.csv", "scores.npz", "meta.json")
FLOOD_FILES = ("flood.csv", "flood_flags.csv", "ckks_error.csv", "meta.json")


class AuditError(UsageError):
    """Input the audit cannot run on; the message says why."""


# -- scenarios -------------------------------------------------------------------------------
def check_base(scenario: Scenario) -> None:
    """The audit measures honest parties: an attack would confound leakage with poisoning."""
    attacking = [name for name, party in scenario.parties.items() if party.role != "honest" or party.attacks]
    if attacking:
        raise AuditError(f"the audit needs honest parties without attacks; {', '.join(attacking)} attack(s)")


def variant(base: Scenario, name: str, seed: int) -> Scenario:
    """``base`` at ``seed`` under audited protocol ``name``."""
    protocol, filters = VARIANTS[name]
    raw = {**base.dump(), "seed": seed, "protocol": dict(protocol)}
    if filters is not None:
        for party in raw["parties"].values():
            party["filters"] = list(filters)
    return parse_scenario(raw)


def held_out(loaded: LoadedData, shares: dict[str, PartyData], count: int | None, seed: int) -> np.ndarray:
    """Indices of train-pool samples no party holds (a seeded subset of ``count`` if given)."""
    used = np.concatenate([share.indices for share in shares.values()])
    free = np.setdiff1d(np.arange(len(loaded.train)), used)
    if count is not None and count < len(free):
        free = np.sort(seeded_rng(seed, "privacy", "held_out").choice(free, count, replace=False))
    if len(free) < MIN_NONMEMBERS:
        raise AuditError(
            f"the parties hold {len(used)} of the {len(loaded.train)} train-pool samples, leaving {len(free)} as non-members; "
            f"leave at least {MIN_NONMEMBERS} unused (fewer parties.*.samples)"
        )
    return free


# -- one seed --------------------------------------------------------------------------------
class Pool:
    """Candidate members of one party and the shared held-out non-members: what an attack scores."""

    def __init__(self, share: PartyData, loaded: LoadedData, held: np.ndarray):
        self.x = np.concatenate([share.train.x, loaded.train.x[held]])
        self.y = np.concatenate([share.train.y, loaded.train.y[held]])
        self.is_member = np.concatenate([np.ones(len(share.train.y), bool), np.zeros(len(held), bool)])


def run_protocol(scenario: Scenario, probes: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, Any], ExchangeLog]:
    """Run ``scenario`` in-process; each party's final model (the one it ends with: the joint host's
    for joint) and the answer log."""
    parties = InProcessParties(scenario)
    log = ExchangeLog(parties, probes, scenario.training.warmup_epochs)
    protocol = PROTOCOLS.create(scenario.protocol)
    protocol.run(scenario, parties, Channel(), log)
    models = {name: parties[protocol.final_model_of(name, parties.names)].model for name in parties.names}
    log.parties = None  # the parties hold a copy of the data set each: let them go
    return models, log


def membership_rows(protocol: str, models: dict[str, Any], pools: dict[str, Pool], refs: dict[str, ReferenceModels], scores: dict[str, np.ndarray], seed: int) -> list[dict]:
    """Both attacks on every party's model, with every party's samples as the members."""
    rows = []
    for holder, model in models.items():
        for owner, pool in pools.items():
            logits = predict(model, pool.x)
            attacks = {"loss": loss_scores(logits, pool.y), "lira": refs[owner].scores(confidence_margin(logits, pool.y))}
            for attack, score in attacks.items():
                scores[f"{protocol}|{seed}|{holder}|{owner}|{attack}"] = score.astype(np.float32)
                rows.append({
                    "seed": seed, "protocol": protocol, "model_of": holder, "members_of": owner,
                    "relation": "own" if holder == owner else "peer", "attack": attack,
                    **attack_metrics(score, pool.is_member),
                    "members": int(pool.is_member.sum()), "nonmembers": int((~pool.is_member).sum()),
                })
    return rows


def extraction_rows(scenario: Scenario, protocol: str, log: ExchangeLog, models: dict, local: dict, test_x: np.ndarray, shares: dict[str, PartyData]) -> list[dict]:
    """For each (querier, responder): how close students trained on the answers get to the responder."""
    rows = []
    for (querier, responder) in sorted(log.answers):
        answers = log.received(querier, responder)
        spec, x = scenario.parties[querier].model, shares[querier].train.x
        students = {
            "student_last": distil(spec, x, answers[-1], scenario.training, scenario.epochs, derived_seed(scenario.seed, "student_last", querier, responder)),
            "student_mean": distil(spec, x, mean_answer(answers), scenario.training, scenario.epochs, derived_seed(scenario.seed, "student_mean", querier, responder)),
            "querier_model": models[querier],
            "querier_local": local[querier],
        }
        target = models[responder]
        rows.append({
            "seed": scenario.seed, "protocol": protocol, "querier": querier, "responder": responder, "answer_epochs": len(answers),
            **{f"agreement_{name}": agreement(model, target, test_x) for name, model in students.items()},
        })
    return rows


def sequence_rows(scenario: Scenario, protocol: str, log: ExchangeLog, pools: dict[str, Pool], refs: dict[str, ReferenceModels]) -> list[dict]:
    """Answer-sequence membership: the querier's samples (never the responder's) against held-out
    samples, and, as the control that the test can see a difference, the responder's own members.
    Each candidate set is scored with the held-out samples as one pool, calibrated by the
    reference models of that pool."""
    rows = []
    for (querier, responder) in sorted(log.answers):
        epochs = log.answer_epochs(querier, responder)
        held = log.said(responder, "held_out", epochs)
        cases = {"querier_samples": (querier, log.received(querier, responder)), "responder_members": (responder, log.said(responder, "own", epochs))}
        for case, (owner, candidates) in cases.items():
            pool = pools[owner]
            raw = margin_sequence(np.concatenate([candidates, held], axis=1), pool.y)
            calibrated = np.stack([refs[owner].scores(step) for step in raw.T], axis=1)
            rows.append({
                "seed": scenario.seed, "protocol": protocol, "querier": querier, "responder": responder, "candidates": case, "answer_epochs": len(epochs),
                **sequence_membership(raw, calibrated, pool.is_member, derived_seed(scenario.seed, "sequence", querier, responder)),
            })
    return rows


def train_references(scenario: Scenario, pools: dict[str, Pool], classes: int, count: int, bar: tqdm) -> dict[str, ReferenceModels]:
    """LiRA's reference models for each party's pool, trained with that party's local recipe."""
    refs = {}
    for name, pool in pools.items():
        bar.set_description(f"seed {scenario.seed}: reference models for {name}'s pool")
        refs[name] = reference_models(scenario.parties[name].model, pool.x, pool.y, classes, scenario.training, scenario.epochs, count, scenario.seed, name, bar)
    return refs


def audit_seed(base: Scenario, seed: int, references: int, nonmembers: int | None, bar: tqdm) -> dict[str, Any]:
    scenario = variant(base, "local", seed)  # the split depends on the seed and sizes, not the protocol
    loaded = load_data(scenario)
    shares = party_data(scenario, loaded)
    held = held_out(loaded, shares, nonmembers, seed)
    pools = {name: Pool(share, loaded, held) for name, share in shares.items()}
    refs = train_references(scenario, pools, loaded.classes, references, bar)
    probes = {name: {"held_out": loaded.train.x[held], "own": share.train.x} for name, share in shares.items()}
    out: dict[str, Any] = {"membership": [], "extraction": [], "sequence": [], "accuracy": [], "scores": {}}
    finals, logs = {}, {}
    for protocol in PROTOCOL_VARIANTS:
        bar.set_description(f"seed {seed}: {protocol}")
        finals[protocol], logs[protocol] = run_protocol(variant(base, protocol, seed), probes if protocol in ANSWERING_VARIANTS else {})
        out["membership"] += membership_rows(protocol, finals[protocol], pools, refs, out["scores"], seed)
        out["accuracy"] += [{"seed": seed, "protocol": protocol, "party": p, "accuracy": accuracy(m, loaded.test.x, loaded.test.y)} for p, m in finals[protocol].items()]
        bar.update(1)
    for protocol in ANSWERING_VARIANTS:
        run = variant(base, protocol, seed)
        out["extraction"] += extraction_rows(run, protocol, logs[protocol], finals[protocol], finals["local"], loaded.test.x, shares)
        out["sequence"] += sequence_rows(run, protocol, logs[protocol], pools, refs)
    out["labels"] = {f"members|{seed}|{name}": pool.is_member for name, pool in pools.items()}
    return out


# -- output ----------------------------------------------------------------------------------
def prepare_out(directory: Path, files: tuple[str, ...], overwrite: bool) -> None:
    existing = [name for name in files if (directory / name).exists()]
    if existing and not overwrite:
        raise AuditError(f"{directory} already holds {', '.join(existing)}; allowed: --overwrite to replace them, or another --out")
    prepare_output(directory)


def setting(scenario: Scenario) -> str:
    """What the tables call a scenario's data and scale, e.g. ``digits, 2 x 500``."""
    sizes = sorted({party.samples for party in scenario.parties.values()})
    scale = f"{len(scenario.parties)} x {sizes[0]}" if len(sizes) == 1 else " + ".join(str(p.samples) for p in scenario.parties.values())
    return f"{DATASETS.create(scenario.dataset).label()}, {scale}"


def write_tables(directory: Path, tables: dict[str, list[dict]], scenario: Scenario) -> None:
    label = {"dataset": DATASETS.create(scenario.dataset).label(), "setting": setting(scenario)}
    for name, rows in tables.items():
        write_atomic(directory / f"{name}.csv", pd.DataFrame(rows).assign(**label).to_csv(index=False))


def write_scores(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".tmp.npz") as partial:
        np.savez_compressed(partial, **arrays)


def audit(base: Scenario, seeds: list[int], references: int, nonmembers: int | None, out: Path, overwrite: bool = False) -> None:
    check_base(base)
    prepare_out(out, AUDIT_FILES, overwrite)
    dataset = DATASETS.create(base.dataset).label()
    tables: dict[str, list[dict]] = {"membership": [], "accuracy": [], "extraction": [], "sequence": []}
    arrays: dict[str, np.ndarray] = {}
    started = time.time()
    steps = len(seeds) * (references * len(base.parties) + len(PROTOCOL_VARIANTS))
    with tqdm(total=steps, unit="step") as bar:
        for seed in seeds:
            result = audit_seed(base, seed, references, nonmembers, bar)
            for name in tables:
                tables[name] += result[name]
            arrays.update(result["scores"])
            arrays.update(result["labels"])
            # Written after every seed, so a long audit that stops keeps the seeds it finished.
            write_tables(out, tables, base)
            write_scores(out / "scores.npz", arrays)
            meta = {"kind": "audit", "scenario": base.dump(), "dataset": dataset, "setting": setting(base), "seeds": seeds[: seeds.index(seed) + 1],
                    "references": references, "protocols": list(PROTOCOL_VARIANTS), "seconds": round(time.time() - started, 1)}
            write_atomic(out / "meta.json", to_json(meta, indent=2))


def flood(base: Scenario, levels: list[float], seeds: list[int], out: Path, overwrite: bool = False, error_samples: int | None = None) -> None:
    """Final test accuracy per flood level (accounted mode); with the unflooded models, the share
    of honest answers the simulator's harm audit would flag for the flood alone, and (first seed
    only: it depends on the parameters and the model, not the seed) the real-mode CKKS error the
    flood must hide."""
    if base.scheme.kind != "ckks":
        raise AuditError(f"flood needs a scenario with scheme kind ckks, got {base.scheme.kind}")
    prepare_out(out, FLOOD_FILES, overwrite)
    levels = sorted(set(levels) | {0.0})  # no flood is the reference every level is compared with
    tables: dict[str, list[dict]] = {"flood": [], "ckks_error": [], "flood_flags": []}
    started = time.time()
    with tqdm(total=len(seeds) * len(levels), unit="run") as bar:
        for seed in seeds:
            for level in levels:
                bar.set_description(f"seed {seed}: flood_std {level:g}")
                raw = base.dump()
                raw["seed"] = seed
                raw["scheme"] = {**raw["scheme"], "mode": "accounted", "flood_std": level}
                scenario = parse_scenario(raw)
                models, _ = run_protocol(scenario, {})
                loaded = load_data(scenario)
                tables["flood"] += [{"seed": seed, "flood_std": level, "party": p, "accuracy": accuracy(m, loaded.test.x, loaded.test.y)} for p, m in models.items()]
                if level == 0:
                    tables["flood_flags"] += flood_flags(scenario, models, loaded, levels)
                if level == 0 and seed == seeds[0] and error_samples != 0:
                    bar.set_description(f"seed {seed}: real CKKS error")
                    tables["ckks_error"] += ckks_errors(scenario, models, loaded, error_samples)
                bar.update(1)
    write_tables(out, tables, base)
    meta = {"kind": "flood", "scenario": base.dump(), "dataset": DATASETS.create(base.dataset).label(), "setting": setting(base),
            "seeds": seeds, "levels": levels, "error_samples": error_samples, "seconds": round(time.time() - started, 1)}
    write_atomic(out / "meta.json", to_json(meta, indent=2))


def directions(scenario: Scenario) -> list[tuple[str, str]]:
    return [(q, r) for q in scenario.parties for r in scenario.parties if q != r]


def flood_flags(scenario: Scenario, models: dict[str, Any], loaded: LoadedData, levels: list[float]) -> list[dict]:
    """Share of an honest responder's (unflooded) answers that the flood alone moves by more than
    the harm audit's threshold from the clean twin's answer (KL at the distillation temperature
    above ``HARM_KL``): the twin answers without flood, so at that level the audit would count
    noise as poison."""
    shares = party_data(scenario, loaded)
    temperature, rows = scenario.training.temperature, []
    for querier, responder in directions(scenario):
        clean = predict(models[responder], shares[querier].train.x)
        rng = seeded_rng(scenario.seed, "flood_flags", querier, responder)
        for level in levels:
            noisy = clean + rng.normal(0.0, level, clean.shape)
            divergence = kl_divergence(softmax(noisy, temperature), softmax(clean, temperature))
            rows.append({"seed": scenario.seed, "flood_std": level, "querier": querier, "responder": responder, "flagged": float((divergence > HARM_KL).mean())})
    return rows


def ckks_errors(scenario: Scenario, models: dict[str, Any], loaded: LoadedData, samples: int | None) -> list[dict]:
    """Real CKKS (no flood) on each querier's samples (the first ``samples`` of them, if given)
    against the plaintext logits: the error a querier sees after decryption, which flooding is
    meant to hide, and how many such logits one run hands it (samples x classes x exchange epochs)."""
    spec = SCHEMES.parse_spec({**scenario.scheme.dump(), "mode": "real", "flood_std": 0.0})
    shares = party_data(scenario, loaded)
    rows = []
    for querier, responder in directions(scenario):
        mine = SCHEMES.create(spec, loaded.classes, derived_seed(scenario.seed, "ckks_error", querier, responder))
        theirs = SCHEMES.create(spec, loaded.classes, derived_seed(scenario.seed, "ckks_error", responder, querier))
        x = shares[querier].train.x
        measured = x[:samples]
        theirs.load(mine.setup(measured))
        plain = predict(models[responder], measured)
        error = mine.decode(theirs.answer(models[responder])) - plain
        rows.append({
            "seed": scenario.seed, "querier": querier, "responder": responder, "samples_measured": len(measured),
            "error_rms": float(np.sqrt(np.mean(np.square(error, dtype=np.float64)))), "error_max_abs": float(np.abs(error).max()),
            "logit_max_abs": float(np.abs(plain).max()), "logits_per_run": len(x) * loaded.classes * (scenario.epochs - scenario.training.warmup_epochs),
        })
    return rows


# -- command line ----------------------------------------------------------------------------
def positive_even(text: str) -> int:
    value = at_least(2)(text)
    if value % 2:
        raise argparse.ArgumentTypeError(f"{value}: reference models come in complementary pairs; allowed: an even number >= 2")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: allowed: a finite number >= 0")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.privacy", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("audit", "membership inference, extraction and answer-sequence audit"), ("flood", "accuracy cost of CKKS noise flooding")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("scenario", type=path_argument, help="base scenario YAML (honest parties)")
        add_set_argument(sub)
        sub.add_argument("--seeds", type=seed_argument, nargs="+", default=[0, 1, 2])
        sub.add_argument("--out", type=path_argument, default=Path("results/privacy"), help="results root (default results/privacy)")
        sub.add_argument("--overwrite", action="store_true", help="replace earlier results of the same scenario")
        sub.add_argument("--threads", type=at_least(1), default=1, help="torch CPU threads (default 1: many small models, where more threads only contend)")
        if name == "audit":
            sub.add_argument("--references", type=positive_even, default=16, help="LiRA reference models per party (even; default 16)")
            sub.add_argument("--nonmembers", type=at_least(MIN_NONMEMBERS), default=None, help="held-out non-members (default: every unused train-pool sample)")
        else:
            sub.add_argument("--levels", type=non_negative, nargs="+", default=list(FLOOD_LEVELS), help="flood_std values (0 is always added)")
            sub.add_argument("--error-samples", type=at_least(0), default=None, help="samples per querier for the real-CKKS error (default: all; 0: do not measure it)")
    report = commands.add_parser("report", help="aggregate audit and flood results into tables and figures")
    report.add_argument("results", type=path_argument, nargs="+", help="directories written by audit or flood")
    report.add_argument("--tables", type=path_argument, default=Path("results/privacy/report"))
    report.add_argument("--figures", type=path_argument, default=Path("results/privacy/report"))
    report.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if hasattr(args, "seeds"):
        args.seeds = list(dict.fromkeys(args.seeds))  # a seed given twice is one run

    def body() -> int:
        if args.command == "report":
            print(report(args.results, output(args.tables, "--tables", create=False), output(args.figures, "--figures", create=False), args.overwrite))
            return 0
        root = output(args.out, "--out", create=False)
        base = load_scenario(args.scenario, args.overrides)
        if args.command == "audit":
            out = root / base.name
            audit(base, args.seeds, args.references, args.nonmembers, out, args.overwrite)
        else:
            out = root / f"{base.name}-flood"
            flood(base, args.levels, args.seeds, out, args.overwrite, args.error_samples)
        print(f"wrote {out}")
        return 0

    return run_command("analysis.privacy", body, lambda: "files written before are kept (audit and flood write theirs after every seed)")


if __name__ == "__main__":
    sys.exit(main())
