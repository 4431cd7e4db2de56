"""Validate the MPC scheme's accounted mode against real CrypTen: bytes and rounds of one answer.

    python bench/mpc_inference.py --out results/bench/mpc_inference.json [--samples 16] [--batch-size 8]

For each architecture (digits MLPs with poly2, ReLU and batch-norm, convnets with average and
max pooling, the CIFAR-10 three-block convnet at an eighth of its width, poly2 and ReLU), the
scheme answers the same samples in real mode (two CrypTen processes; CrypTen's counters) and in
accounted mode (the cost model), and the JSON lists both, their relative byte error, the
rounds, and the largest logit difference (fixed-point error). Exits 2 on bad arguments and
when CrypTen is not installed, 1 when the output cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cli import UsageError, at_least, output, path_argument, run_command  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.mpc_cost.crypten_measure import crypten_unavailable_reason  # noqa: E402
from testbed.registry import MODELS  # noqa: E402
from testbed.schemes.mpc.scheme import INSTALL, MpcScheme  # noqa: E402

CLASSES = 10
DIGITS, CIFAR = (1, 8, 8), (3, 32, 32)
CASES = {
    "digits MLP 64-32-10, poly2": ({"kind": "mlp", "hidden": [32], "activation": "poly2"}, DIGITS),
    "digits MLP 64-32-16-10, relu, batch-norm": ({"kind": "mlp", "hidden": [32, 16], "activation": "relu", "batch_norm": True}, DIGITS),
    "digits he_cnn (4 ch, poly2, avg-pool, hidden 16)": ({"kind": "he_cnn", "channels": 4, "hidden": 16}, DIGITS),
    "digits relu_cnn (4-8 ch, relu, max-pool)": ({"kind": "relu_cnn", "channels": [4, 8], "hidden": 16}, DIGITS),
    "CIFAR-10 he_convnet 2-4-8, poly2, avg-pool": ({"kind": "he_convnet", "channels": [2, 4, 8]}, CIFAR),
    "CIFAR-10 he_convnet 2-4-8, relu, max-pool": ({"kind": "he_convnet", "channels": [2, 4, 8], "activation": "relu", "pooling": "max"}, CIFAR),
}


def answer(mode: str, model, samples: np.ndarray, batch_size: int):
    params = MpcScheme.Params(mode=mode, batch_size=batch_size)
    querier, responder = MpcScheme(params, CLASSES, 0), MpcScheme(params, CLASSES, 0)
    responder.load(querier.setup(samples))
    start = time.perf_counter()
    wire = responder.answer(model, None)
    return wire, querier.decode(wire), time.perf_counter() - start


def case(spec: dict, shape: tuple[int, ...], samples: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = MODELS.create(MODELS.parse_spec(spec)).build(shape, CLASSES)
    model.train()
    model(torch.randn(32, *shape))  # batch-norm statistics that are not the identity
    model.eval()
    x = np.random.default_rng(0).random((samples, *shape)).astype(np.float32)
    real, real_logits, seconds = answer("real", model, x, batch_size)
    accounted, logits, _ = answer("accounted", model, x, batch_size)
    return {
        "model": spec,
        "real_bytes": real.charged_bytes,
        "real_rounds": real.rounds,
        "accounted_bytes": accounted.charged_bytes,
        "accounted_rounds": accounted.rounds,
        "byte_error": (accounted.charged_bytes - real.charged_bytes) / real.charged_bytes,
        "max_abs_logit_difference": float(np.abs(real_logits - logits).max()),
        "real_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--samples", type=at_least(1), default=16, help="querier samples per answer")
    parser.add_argument("--batch-size", type=at_least(1), default=8, help="samples per 2PC evaluation")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        out = output(args.out, "--out", "file")
        if reason := crypten_unavailable_reason():
            raise UsageError(f"real mode needs CrypTen: {reason}; install it with {INSTALL}")
        cases = {name: case(spec, shape, args.samples, args.batch_size) for name, (spec, shape) in CASES.items()}
        for name, row in cases.items():
            print(f"| {name} | {row['real_bytes']:,} | {row['real_rounds']} | {row['accounted_bytes']:,} | {row['accounted_rounds']} | "
                  f"{row['byte_error']:.1%} | {row['max_abs_logit_difference']:.1e} |")  # fmt: skip
        write_atomic(out, json.dumps({"samples": args.samples, "batch_size": args.batch_size, "cases": cases}, indent=2) + "\n")
        return 0

    return run_command("bench/mpc_inference.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())
