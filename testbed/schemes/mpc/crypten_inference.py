"""Two-party inference under CrypTen: the querier (rank 0) shares its samples, the responder
(rank 1) its model; they evaluate the model on the shares, and only the querier learns the logits.

Both parties run as local processes (:func:`testbed.mpc_cost.crypten_measure.run_parties`).
CrypTen's own counters (``communicator.verbose``) give the bytes and rounds of each phase; the
responder's counter is read (under CrypTen's default provider, TFP, the querier makes the Beaver
triples itself, so the counters hold the online phase only).

Phases, per evaluation batch: ``share`` (the querier's samples and the responder's weights and
per-row offsets become secret shares: pseudo-random zero sharing, which CrypTen counts as free),
``evaluate`` (the model's forward pass: every opening of a product or comparison) and
``reveal`` (the responder sends its share of the logits to the querier alone).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from testbed.mpc_cost.crypten_measure import check_convertible, enter_phase, run_parties, to_crypten

QUERIER, RESPONDER = 0, 1
NAMES = ("querier", "responder")
PHASES = ("share", "evaluate", "reveal")


def secure_logits(
    model: nn.Sequential, samples: np.ndarray, offsets: np.ndarray, batch_size: int | None, timeout_s: float
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """Evaluate ``model`` (eval mode, batch-norm folded) on ``samples`` under two-party CrypTen.

    Args:
        model: the responder's model, as :func:`testbed.schemes.mpc.model.inference_model` makes it.
        samples: the querier's samples, ``(n, *input_shape)``.
        offsets: ``(n, classes)``, the responder's per-row additions to the logits (zeros when honest).
        batch_size: samples per evaluation; ``None``: all in one.
        timeout_s: the parties are ended and RuntimeError raised after this long.

    Returns:
        The logits the querier reconstructs, float32 ``(n, classes)``, and the responder's
        counters per phase, ``{phase: {"bytes": int, "rounds": int}}`` summed over batches.

    Raises:
        RuntimeError: naming the party and phase, when a party fails or dies, or on timeout.
    """
    check_convertible(model)
    values = run_parties(
        _evaluate, (model, samples.astype(np.float32), offsets.astype(np.float32), batch_size), "TFP", timeout_s, NAMES
    )
    return values[QUERIER][0], values[RESPONDER][1]


def sharing_counters(samples: np.ndarray, timeout_s: float) -> dict[str, int]:
    """The responder's counters while the querier shares ``samples`` (the one-time setup)."""
    return run_parties(_share_only, (samples.astype(np.float32),), "TFP", timeout_s, NAMES)[RESPONDER]


def _counter(communicator) -> dict[str, int]:
    stats = communicator.get_communication_stats()
    return {"bytes": int(stats["bytes"]), "rounds": int(stats["rounds"])}


def _since(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    return {k: now[k] - before[k] for k in now}


def _share_only(rank: int, samples: np.ndarray) -> dict[str, int]:
    import crypten
    import crypten.communicator as comm

    crypten.cfg.communicator.verbose = True
    communicator = comm.get()
    communicator.reset_communication_stats()
    enter_phase("share")
    crypten.cryptensor(_own(rank, QUERIER, samples), src=QUERIER)
    return _counter(communicator)


def _own(rank: int, owner: int, value: np.ndarray) -> torch.Tensor:
    """The owner's value; the other party passes zeros of the same shape (it does not know it)."""
    return torch.from_numpy(value) if rank == owner else torch.zeros(value.shape)


def _evaluate(rank: int, model, samples, offsets, batch_size) -> tuple[np.ndarray | None, dict]:
    import crypten
    import crypten.communicator as comm

    if rank != RESPONDER:  # the processes are forked: prove the querier's copy of the weights unused
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
    crypten.cfg.communicator.verbose = True
    communicator = comm.get()
    communicator.reset_communication_stats()
    totals = {phase: {"bytes": 0, "rounds": 0} for phase in PHASES}
    step = batch_size or len(samples)
    outputs = []
    private = None
    for start in range(0, len(samples), step):
        rows = slice(start, start + step)
        before = _counter(communicator)
        enter_phase("share")
        x = crypten.cryptensor(_own(rank, QUERIER, samples[rows]), src=QUERIER)
        offset = crypten.cryptensor(_own(rank, RESPONDER, offsets[rows]), src=RESPONDER)
        if private is None:
            private = to_crypten(model).encrypt(src=RESPONDER)
            private.eval()
        now = _counter(communicator)
        _add(totals["share"], _since(before, now))
        before = now
        enter_phase("evaluate")
        logits = private(x) + offset  # a bias is added locally: a per-row one costs nothing either
        now = _counter(communicator)
        _add(totals["evaluate"], _since(before, now))
        before = now
        enter_phase("reveal")
        plain = logits.get_plain_text(dst=QUERIER)
        _add(totals["reveal"], _since(before, _counter(communicator)))
        if rank == QUERIER:
            outputs.append(plain.numpy().astype(np.float32))
    return (np.concatenate(outputs) if rank == QUERIER else None), totals


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] += value
