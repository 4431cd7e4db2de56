"""Command line: ``python -m testbed.run SCENARIO.yaml [--set key.path=value ...] [--out DIR]``.

Exit codes: 0 success, 1 a party, Ray or the run failed, 2 invalid scenario or arguments,
130 interrupted (Ctrl-C or SIGTERM). A run that did not complete leaves no ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys

from testbed.cli import add_set_argument, interruptible, path_argument
from testbed.config import ScenarioError, load_scenario
from testbed.files import OutputPathError
from testbed.result_schema import Summary
from testbed.results import ResultsExistError, RunDirectory, default_run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.run", description="Run a SMuLe testbed scenario.")
    parser.add_argument("scenario", type=path_argument, help="scenario YAML file")
    add_set_argument(parser)
    parser.add_argument("--out", type=path_argument, help="results directory (default results/<scenario>/<run-id>)")
    parser.add_argument("--results-root", type=path_argument, default="results", help="root of default run directories")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out once the new run completes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    with interruptible() as received:
        try:
            return _run(args)
        except KeyboardInterrupt:
            print(f"\ninterrupted by {received[0] if received else 'SIGINT'}; nothing was run", file=sys.stderr)
            return 130


def _run(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario, args.overrides)
    except ScenarioError as err:
        print(f"{args.scenario}: {err}", file=sys.stderr)
        return 2
    argument = f"--out {args.out}" if args.out is not None else f"--results-root {args.results_root}"
    try:
        out = RunDirectory(args.out or default_run_dir(args.results_root, scenario.name, scenario.seed), args.overwrite)
    except (ResultsExistError, OutputPathError) as err:
        print(f"{argument}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{argument}: cannot create the results directory {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2

    try:
        return _run_in(scenario, out, args.quiet)
    except KeyboardInterrupt:
        out.set_status("interrupted")
        print(f"\ninterrupted; {_where(out)}", file=sys.stderr)
        return 130


def _run_in(scenario, out: RunDirectory, quiet: bool) -> int:
    from testbed.cluster import PartyFailure, RayUnavailable  # imports Ray: only for a valid scenario
    from testbed.driver import run_scenario

    try:
        summary = run_scenario(scenario, out, progress=not quiet)
    except (PartyFailure, RayUnavailable) as err:
        _record_failure(out, str(err))
        print(f"run failed: {err}\n{_where(out)}", file=sys.stderr)
        return 1
    except OSError as err:  # results could not be written (disk full, directory removed)
        _record_failure(out, str(err))
        print(f"run failed writing results: {err}\n{_where(out)}", file=sys.stderr)
        return 1
    except Exception as err:  # a defect: record it, and keep the traceback for whoever fixes it
        _record_failure(out, f"{type(err).__name__}: {err}")
        raise
    print(summary_table(summary))
    print(f"results: {out.path}")
    return 0


def summary_table(summary: Summary) -> str:
    """A short human-readable table of the summary."""
    comm = summary.communication
    lines = [f"{'party':<10} {'role':<10} {'accuracy':>9} {'ASR':>7}   evaluated on: {summary.evaluated_on}"]
    for name, p in summary.parties.items():
        asr = "-" if p.asr is None else f"{p.asr:.3f}"
        if len(p.asr_by_attack) > 1:
            asr = ", ".join(f"{key} {value:.3f}" for key, value in p.asr_by_attack.items())
        lines.append(f"{name:<10} {p.role:<10} {p.accuracy:>9.4f} {asr:>7}")
    lines.append(
        f"communication: setup {comm.setup_bytes / 1e6:.3f} MB, "
        f"{comm.bytes_per_epoch / 1e6:.3f} MB and {comm.messages_per_epoch} messages per exchange epoch; "
        f"wall {summary.seconds.wall:.1f} s"
    )
    if comm.network_profile is not None:
        mpc = "".join(f", MPC training {seconds:.3g} s per epoch ({source})" for source in ("model", "measured")
                      if (seconds := getattr(comm, f"mpc_network_seconds_per_epoch_{source}")) is not None)
        lines.append(f"network time only (not measured) on {comm.network_profile}: setup {comm.network_setup_seconds:.3g} s, "
                     f"{comm.network_seconds_per_epoch:.3g} s per exchange epoch{mpc}")
    return "\n".join(lines)


def _record_failure(out: RunDirectory, error: str) -> None:
    try:
        out.set_status("failed", error)
    except OSError:
        pass  # the failure may be that nothing can be written there; the message still says why


def _where(out: RunDirectory) -> str:
    if out.replacing:
        return f"incomplete results in {out.writing}; the earlier results in {out.path} are kept"
    return f"incomplete results in {out.path}"


if __name__ == "__main__":
    sys.exit(main())
