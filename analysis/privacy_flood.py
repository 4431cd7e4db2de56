"""The cost of CKKS noise flooding (``scheme.flood_std``): final test accuracy per flood level
(accounted mode), the share of honest answers the simulator's harm audit would flag for the flood
alone, and the real-mode CKKS decryption error the flood is meant to hide. Writes ``flood.csv``,
``flood_flags.csv``, ``ckks_error.csv`` and ``meta.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from analysis.privacy_runs import AuditError, prepare_out, run_protocol, setting, write_tables
from testbed.config import Scenario, parse_scenario
from testbed.datasets import LoadedData, load_data
from testbed.files import to_json, write_atomic
from testbed.metrics import HARM_KL, kl_divergence, softmax
from testbed.models import predict
from testbed.registry import DATASETS, SCHEMES
from testbed.seeding import derived_seed, seeded_rng
from testbed.shares import party_data
from testbed.training import accuracy

FLOOD_LEVELS = (0.0, 1e-3, 1e-2, 0.1, 0.3, 1.0)
FLOOD_FILES = ("flood.csv", "flood_flags.csv", "ckks_error.csv", "meta.json")


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
