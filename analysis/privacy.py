"""Privacy leakage audit: what the exchanged predictions and the final models reveal, per protocol.

``python -m analysis.privacy audit SCENARIO [--set KEY=VALUE ...] [--seeds 0 1 2] [--references 16]
[--nonmembers N] [--out DIR] [--overwrite]`` runs :mod:`analysis.privacy_audit` (membership
inference on every party's final model, model extraction and answer-sequence membership from the
answers) into ``DIR/<scenario>/``.

``python -m analysis.privacy flood SCENARIO [--levels ...] [--seeds ...] [--out DIR]`` runs
:mod:`analysis.privacy_flood` (the accuracy cost of CKKS noise flooding, and the CKKS error it
hides) into ``DIR/<scenario>-flood/``.

``python -m analysis.privacy report DIR [DIR ...] [--tables DIR] [--figures DIR]`` aggregates
audit and flood results over seeds into small tables and figures (:mod:`analysis.privacy_report`)
and prints them as markdown.

Results are written atomically and never over earlier ones without ``--overwrite``. Exit status
2 on bad input, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from analysis.privacy_audit import MIN_NONMEMBERS, audit
from analysis.privacy_flood import FLOOD_LEVELS, flood
from analysis.privacy_report import report
from testbed.cli import add_set_argument, at_least, output, path_argument, run_command, seed_argument
from testbed.config import load_scenario


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
