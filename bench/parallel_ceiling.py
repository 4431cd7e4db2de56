"""Benchmark the most two workers can gain on this machine: the same work alone and in two processes at once.

    python bench/parallel_ceiling.py --out results/bench/parallel_ceiling.json [--repeats 40]

Two kinds of work, each in fresh processes: the bulk kernel of linear stages (the speed probe
of the CKKS time model, :func:`testbed.schemes.ckks.time_model.probe_seconds`, run ``--repeats``
times) and SEAL calls (loading a ciphertext and squaring it, 300 times at depth 5). Each runs
once alone, then twice at once; ``efficiency`` is the time alone over the slower of the two.
Two Ray workers (``scheme.workers: 2``) cannot beat twice the efficiency of the work they do:
on a machine whose two cores share the memory bandwidth the kernel needs, that is below 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cli import UsageError, output, path_argument, run_command  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.schemes.ckks.time_model import machine  # noqa: E402

SEAL_CALLS = 300


def log(message: str) -> None:
    print(f"[bench/parallel_ceiling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bulk_kernel(repeats: int) -> float:
    from testbed.schemes.ckks.time_model import probe_seconds

    started = time.perf_counter()
    probe_seconds(repeats)
    return time.perf_counter() - started


def seal_calls(_: int) -> float:
    import tenseal.sealapi as seal

    from testbed.schemes.ckks.crypto import PublicContext, encrypt_dataset, make_keys, public_frames
    from testbed.schemes.ckks.plan import plan_for_depth
    from testbed.schemes.ckks.wire import seal_load

    plan = plan_for_depth(5, 26, 10)
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(f) for f in public_frames(keys)], plan)
    frame = encrypt_dataset(keys, np.random.default_rng(0).random((plan.slots, 1)))[0]
    started = time.perf_counter()
    for _ in range(SEAL_CALLS):
        public.evaluator.square(seal_load(seal.Ciphertext(), frame, public.context), seal.Ciphertext())
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--repeats", type=int, default=40, help="runs of the kernel probe per measurement (default 40)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        if not 1 <= args.repeats <= 10_000:
            raise UsageError(f"--repeats {args.repeats}: allowed: 1 to 10000")
        out = output(args.out, "--out", "file")
        rows = []
        for name, work in (("bulk kernel", bulk_kernel), ("SEAL load and square", seal_calls)):
            with ProcessPoolExecutor(1) as pool:
                alone = pool.submit(work, args.repeats).result()
            with ProcessPoolExecutor(2) as pool:
                both = list(pool.map(work, [args.repeats] * 2))
            rows.append({"work": name, "alone_s": alone, "two_at_once_s": both, "efficiency": alone / max(both)})
            log(f"{name}: {alone:.2f} s alone, {max(both):.2f} s two at once (efficiency {rows[-1]['efficiency']:.2f})")
        write_atomic(out, json.dumps({"machine": machine(), "runs": rows}, indent=2) + "\n")
        log(f"wrote {out}")
        return 0

    return run_command("bench/parallel_ceiling.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())
