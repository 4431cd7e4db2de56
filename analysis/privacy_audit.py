"""The privacy audit: what the exchanged predictions and the final models reveal, per protocol.

The scenario's honest parties run under every audited protocol (SMuLe with the default defence
and without a filter, local, joint, FedAvg), in-process, per seed, and each party's final model
is attacked (membership inference: loss threshold and offline LiRA, :mod:`analysis.membership`;
members are a party's training samples, non-members held-out samples of the train pool no party
holds), with the peer's training samples as members too. For SMuLe it also measures what a
querier learns from the answers (:mod:`analysis.answer_leakage`). Writes ``membership.csv``,
``accuracy.csv``, ``extraction.csv``, ``sequence.csv``, ``scores.npz`` (every attack's scores, for
ROC curves) and ``meta.json``, after every seed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from analysis.answer_leakage import ExchangeLog, agreement, distil, margin_sequence, mean_answer, sequence_membership
from analysis.membership import ReferenceModels, attack_metrics, confidence_margin, loss_scores, reference_models
from analysis.privacy_runs import AuditError, prepare_out, run_protocol, setting, write_tables
from testbed.config import DEFAULT_FILTERS, Scenario, parse_scenario
from testbed.datasets import LoadedData, load_data
from testbed.files import atomic_path, to_json, write_atomic
from testbed.models import predict
from testbed.registry import DATASETS, PROTOCOLS
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
#: Fewer held-out samples than this cannot give a meaningful ROC curve.
MIN_NONMEMBERS = 50
AUDIT_FILES = ("membership.csv", "accuracy.csv", "extraction.csv", "sequence.csv", "scores.npz", "meta.json")


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


class Pool:
    """Candidate members of one party and the shared held-out non-members: what an attack scores."""

    def __init__(self, share: PartyData, loaded: LoadedData, held: np.ndarray):
        self.x = np.concatenate([share.train.x, loaded.train.x[held]])
        self.y = np.concatenate([share.train.y, loaded.train.y[held]])
        self.is_member = np.concatenate([np.ones(len(share.train.y), bool), np.zeros(len(held), bool)])


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
