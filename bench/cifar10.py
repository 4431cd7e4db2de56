"""The CIFAR-10 experiment: SMuLe, local, joint and FedAvg, clean and poisoned, over seeds.

    python bench/cifar10.py --data ../shared/data/cifar10-jpeg.zip --out results/bench/cifar10 \
        [--seeds 0 1 2] [--protocols smule local joint fedavg] [--scenarios clean poison] \
        [--set training.query_fraction=0.25 ...] [--parallel 2] [--table-only]

Runs ``scenarios/cifar10_{clean,poison}.yaml`` with only ``protocol`` and ``seed`` changed (the
same model, epochs, optimiser and schedule for every protocol), each poisoned run's rate-0
reference beside it, one Ray task per run (``analysis.sweep.run_scenarios``). Resumable: a run
whose directory already holds a completed run of the same resolved scenario is kept, so an
interrupted bench continues where it stopped; a run of another definition (other ``--set``)
is rerun in its place, so give each setting its own ``--out``. Writes ``table.json`` and ``table.md`` under
``--out``: per scenario and protocol, the honest parties' accuracy and ASR delta (per seed the
mean over the honest parties, then mean +- std over the seeds), the honest parties' accuracy delta
and the attacker's own ASR delta (the poison works on the model trained on it), bytes per exchange epoch, setup bytes, total bytes of the run, rounds per epoch, wall
seconds per epoch and peak resident memory of the run's process (both parties: an upper bound
per party), and the joint baseline's modelled MPC bytes per epoch. ``--table-only`` writes the
tables from the runs of the grid that have finished (with their references) and starts none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.sweep import RunsFailed, finished_results, run_on_ray, run_scenarios, summary_rows  # noqa: E402
from testbed.cli import UsageError, add_set_argument, at_least, output, path_argument, seed_argument  # noqa: E402
from testbed.config import Scenario, load_scenario  # noqa: E402
from testbed.files import to_json, write_atomic  # noqa: E402
from testbed.result_schema import Summary  # noqa: E402

SCENARIOS = {"clean": ROOT / "scenarios" / "cifar10_clean.yaml", "poison": ROOT / "scenarios" / "cifar10_poison.yaml"}
PROTOCOLS = ("smule", "local", "joint", "fedavg")


def grid(data: Path, scenarios: list[str], protocols: list[str], seeds: list[int], overrides: list[str]) -> dict[str, Scenario]:
    return {
        f"{kind}-{protocol}-seed{seed}": load_scenario(SCENARIOS[kind], [f"dataset.path={json.dumps(str(data))}", f"protocol={protocol}", f"seed={seed}", *overrides])
        for kind in scenarios
        for protocol in protocols
        for seed in seeds
    }


def _mean_std(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def over_seeds(per_seed: list[list[dict]], key: str, role: str = "honest") -> dict[str, float | None]:
    """Per seed the mean over its parties of ``role``, then mean +- std over the seeds."""
    return _mean_std([_mean_std([r[key] for r in rows if r["role"] == role])["mean"] for rows in per_seed])


def table(results: dict[str, tuple[Summary, Summary | None]]) -> list[dict]:
    """One row per (scenario, protocol), aggregated over seeds."""
    groups: dict[tuple[str, str], list[tuple[Summary, Summary | None]]] = {}
    for name, result in results.items():
        kind, protocol, _ = name.split("-")
        groups.setdefault((kind, protocol), []).append(result)
    rows = []
    for (kind, protocol), runs in sorted(groups.items()):
        per_seed = [summary_rows({}, summary, reference) for summary, reference in runs]
        first, _ = runs[0]
        comm = first.communication
        rows.append({
            "scenario": kind, "protocol": protocol, "seeds": len(runs), "dataset": first.dataset,
            "honest_accuracy": over_seeds(per_seed, "accuracy"),
            "honest_asr_delta": over_seeds(per_seed, "asr_delta"),
            # Without an attack a run is its own reference: its zero accuracy delta is no measurement.
            "honest_accuracy_delta": over_seeds(per_seed, "accuracy_delta") if any(ref is not None for _, ref in runs) else _mean_std([]),
            "attacker_asr_delta": over_seeds(per_seed, "asr_delta", "malicious"),  # the poison works on its owner
            "bytes_per_epoch": comm.bytes_per_epoch,
            "setup_bytes": comm.setup_bytes,
            "total_bytes": comm.setup_bytes + comm.bytes_per_epoch * comm.exchange_epochs,
            "rounds_per_epoch": comm.rounds_per_epoch,
            "seconds_per_epoch": _mean_std([s.seconds.wall / s.epochs for s, _ in runs]),
            "peak_rss_mb": max((p.peak_rss_mb or 0) for s, _ in runs for p in s.parties.values()),
            "mpc_bytes_per_epoch_model": comm.mpc_bytes_per_epoch_model,
            "mpc_bytes_per_epoch_measured": comm.mpc_bytes_per_epoch_measured,
        })
    return rows


def markdown(rows: list[dict]) -> str:
    def pm(stat: dict, scale: float = 1.0, digits: int = 3) -> str:
        return "-" if stat["mean"] is None else f"{stat['mean'] * scale:.{digits}f} +- {stat['std'] * scale:.{digits}f}"

    lines = [
        "| scenario | protocol | seeds | honest accuracy | honest ASR delta | honest accuracy delta | attacker's ASR delta | MB / epoch | setup MB | total MB | rounds / epoch | s / epoch | peak RSS MB | MPC MB / epoch (model) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mpc = r["mpc_bytes_per_epoch_model"]
        lines.append(
            f"| {r['scenario']} | {r['protocol']} | {r['seeds']} | {pm(r['honest_accuracy'])} | {pm(r['honest_asr_delta'])} | {pm(r['honest_accuracy_delta'])} | {pm(r['attacker_asr_delta'])} | "
            f"{r['bytes_per_epoch'] / 1e6:.1f} | {r['setup_bytes'] / 1e6:.0f} | {r['total_bytes'] / 1e6:.0f} | {r['rounds_per_epoch']} | "
            f"{pm(r['seconds_per_epoch'], digits=0)} | {r['peak_rss_mb']:.0f} | {'-' if mpc is None else f'{mpc / 1e6:,.0f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Exit codes as ``testbed.run`` (:mod:`testbed.cli`); 1 also when some runs failed (the
    tables then hold the others)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=path_argument, required=True, help="CIFAR-10: cifar-10-batches-py directory or ImageFolder zip")
    parser.add_argument("--out", type=path_argument, required=True, help="directory for the runs and the tables (finished runs are kept)")
    parser.add_argument("--seeds", type=seed_argument, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    add_set_argument(parser)
    parser.add_argument("--parallel", type=at_least(1), default=2, help="runs at a time (one Ray task each)")
    parser.add_argument("--table-only", action="store_true", help="tabulate the grid's finished runs; start none")
    args = parser.parse_args(argv)
    where: list[Path] = []

    def body() -> int:
        if not args.data.exists():
            raise UsageError(f"--data {args.data}: no such file or directory; allowed: a cifar-10-batches-py directory or an ImageFolder zip")
        scenarios = grid(args.data.resolve(), args.scenarios, args.protocols, list(dict.fromkeys(args.seeds)), args.overrides)
        where.append(output(args.out, "--out", create=False))
        if args.table_only:
            results = finished_results(scenarios, args.out)
            if not results:
                print(f"--out {args.out}: none of the grid's {len(scenarios)} runs has finished there", file=sys.stderr)
                return 1
        else:
            try:
                results = run_scenarios(scenarios, args.out, args.parallel, desc="CIFAR-10 runs")
            except RunsFailed as err:
                print(err, file=sys.stderr)
                results = {name: result for name, result in err.results.items() if result[0] is not None}  # rerun next time
        rows = table(results)
        output(args.out, "--out")
        write_atomic(args.out / "table.json", to_json(rows, indent=2) + "\n")
        write_atomic(args.out / "table.md", markdown(rows))
        print(markdown(rows))
        return 0 if args.table_only or len(results) == len(scenarios) else 1

    return run_on_ray("bench/cifar10.py", body, where)


if __name__ == "__main__":
    sys.exit(main())
