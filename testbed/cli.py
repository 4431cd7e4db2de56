"""What every command line shares: exit codes, argument types, output checks and signals.

Exit codes, for ``testbed.run`` and every command of ``analysis/`` and ``bench/``: 0 done; 1 a run
failed, or results could not be written; 2 bad arguments or input files (one line naming the
argument or key, the value and what is allowed; nothing runs and nothing is written); 130
interrupted by Ctrl-C or SIGTERM. Never a traceback for any of these.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.config import ScenarioError
from testbed.files import OutputPathError, check_output, prepare_output

USAGE = 2
INTERRUPTED = 130


class UsageError(ValueError):
    """Bad arguments or input: exit 2. The message names the argument or key, the value and what
    is allowed."""


def path_argument(text: str) -> Path:
    """An argparse type for paths: ``Path("")`` is the current directory, so an empty argument
    would write there unasked."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is an empty path; allowed: a path such as results/run (. for the current directory)")
    return Path(text)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed: an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: allowed: an integer >= {minimum}")
        return value

    return parse


def seed_argument(text: str) -> int:
    """An argparse type: a seed, 0..2^32-1 (what numpy, torch and scikit-learn take)."""
    value = at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"{value}: allowed: a seed in 0..2^32-1")
    return value


class _SetOnce(argparse.Action):
    """``--set KEY=VALUE``, repeatable, but one key once: YAML refuses a key given twice in a
    mapping for the same reason (the last one would silently win)."""

    def __call__(self, parser, namespace, value, option_string=None):
        given = list(getattr(namespace, self.dest) or [])
        key = value.partition("=")[0].strip()
        earlier = [o for o in given if o.partition("=")[0].strip() == key]
        if earlier and "=" in value:
            parser.error(f"argument --set: {key} given twice ({earlier[0]!r}, then {value!r}); allowed: each key once")
        setattr(namespace, self.dest, given + [value])


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action=_SetOnce, default=[], metavar="KEY.PATH=VALUE",
                        help="override a scenario key (value parsed as YAML); repeatable, each key once")


def output(path: Path, argument: str, kind: str = "directory", create: bool = True) -> Path:
    """``path``, given by ``argument``, checked as an output ``kind`` (:func:`testbed.files.check_output`)
    and, with ``create``, made ready to receive it (:func:`~testbed.files.prepare_output`: the
    directory created); :class:`UsageError` naming the argument otherwise. Commands call it before
    any long computation."""
    try:
        return prepare_output(path, kind) if create else check_output(path, kind)
    except OutputPathError as err:
        raise UsageError(f"{argument} {path}: {err}") from None


@contextmanager
def interruptible() -> Iterator[list[str]]:
    """SIGTERM (what ``timeout``, systemd and batch schedulers send) interrupts like Ctrl-C: both
    raise ``KeyboardInterrupt``, so the caller's cleanup runs. Yields the list that receives the
    signal's name. Signals after the first are ignored: they would break off that cleanup."""
    received: list[str] = []

    def interrupt(signum: int, frame: object) -> None:
        if not received:
            received.append(signal.Signals(signum).name)
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_command(prog: str, body: Callable[[], int], on_interrupt: Callable[[], str] | None = None) -> int:
    """Run a command's ``body`` under the exit codes of this module: bad input (``UsageError``,
    ``ScenarioError``, ``OutputPathError``) exits 2, results that cannot be written exit 1, Ctrl-C
    or SIGTERM exits 130 after ``on_interrupt`` (which cleans up and says what it left)."""
    with interruptible() as received:
        try:
            return body()
        except KeyboardInterrupt:
            left = on_interrupt() if on_interrupt is not None else "its results are incomplete"
            print(f"\n{prog}: interrupted by {received[0] if received else 'SIGINT'}; {left}", file=sys.stderr)
            return INTERRUPTED
        except (UsageError, ScenarioError, OutputPathError) as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return USAGE
        except OSError as err:  # checked output locations can still fill up or vanish
            print(f"{prog}: cannot write {err.filename or 'the results'}: {err.strerror or err}", file=sys.stderr)
            return 1
