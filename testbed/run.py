"""Command line: ``python -m testbed.run SCENARIO.yaml [--set key.path=value ...] [--out DIR]``.

Exit codes: 0 success, 1 a party or the run failed, 2 invalid scenario or arguments,
130 interrupted (Ctrl-C). A run that did not complete leaves no ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from testbed.config import ScenarioError, load_scenario
from testbed.results import ResultsExistError, RunDirectory, default_run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.run", description="Run a SMuLe testbed scenario.")
    parser.add_argument("scenario", type=Path, help="scenario YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a scenario key (value parsed as YAML); repeatable")
    parser.add_argument("--out", type=Path, help="results directory (default results/<scenario>/<run-id>)")
    parser.add_argument("--results-root", type=Path, default=Path("results"), help="root of default run directories")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        scenario = load_scenario(args.scenario, args.overrides)
    except ScenarioError as err:
        print(f"{args.scenario}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"cannot read scenario: {err}", file=sys.stderr)
        return 2
    try:
        out = RunDirectory(args.out or default_run_dir(args.results_root, scenario.name, scenario.seed), args.overwrite)
    except ResultsExistError as err:
        print(err, file=sys.stderr)
        return 2

    from testbed.cluster import PartyFailure  # imports Ray: only once the scenario is known to be valid
    from testbed.runner import run_scenario, summary_table

    try:
        summary = run_scenario(scenario, out, progress=not args.quiet)
    except PartyFailure as err:
        out.set_status("failed", str(err))
        print(f"run failed: {err}\nincomplete results in {out.path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out.set_status("interrupted")
        print(f"\ninterrupted; incomplete results in {out.path}", file=sys.stderr)
        return 130
    print(summary_table(summary))
    print(f"results: {out.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
