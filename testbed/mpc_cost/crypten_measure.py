"""Measured communication of two-party secure training with CrypTen (an optional extra).

Two CrypTen parties run in two local processes (torch.distributed with gloo over a file
rendezvous), train the same architecture as the plaintext model on random data of the given
shape, and read CrypTen's own per-party counters (``communicator.verbose``): every
``all_reduce`` of an opening counts one round and the bytes the party sends plus those it
receives, which for two parties is the total traffic on the wire in both directions.

CrypTen is the optional extra ``mpc`` (``docs/mpc.md`` says how to install it). Without it,
or when it cannot be imported, :func:`measure_crypten_training` returns ``None`` and
:func:`crypten_unavailable_reason` says why; no number is ever made up in its place.
CrypTen 0.4.1, its last release, imports a module that newer torch no longer has
(``torch.onnx._internal.registration``, used only by its ONNX importer); a stub is put in
its place before the import, and only then.
"""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing
import os
import queue
import sys
import tempfile
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from testbed.models import Poly2, Square
from testbed.mpc_cost.cost_model import PARTIES, batches_per_epoch

PROVIDERS = ("TFP", "TTP")  # CrypTen's trusted first party (default) or trusted third party
_MISSING_TORCH_MODULE = "torch.onnx._internal.registration"
_PHASES = ("forward", "loss", "backward", "step")


def crypten_unavailable_reason() -> str | None:
    """``None`` when CrypTen can be imported, otherwise a sentence saying why not."""
    try:
        import_crypten()
    except ImportError as error:
        return str(error)
    return None


def import_crypten() -> types.ModuleType:
    """Import CrypTen, stubbing the torch module it needs only for ONNX import. Raises ImportError."""
    if importlib.util.find_spec("crypten") is None:
        raise ImportError("CrypTen is not installed (it is the optional extra 'mpc'; see docs/mpc.md)")
    stubbed = False
    if _MISSING_TORCH_MODULE not in sys.modules and importlib.util.find_spec(_MISSING_TORCH_MODULE) is None:
        stub = types.ModuleType(_MISSING_TORCH_MODULE)
        stub.registry = None
        sys.modules[_MISSING_TORCH_MODULE] = stub
        stubbed = True
    try:
        import crypten
    except Exception as error:  # a broken install fails in many ways; all mean "unavailable"
        if stubbed:
            del sys.modules[_MISSING_TORCH_MODULE]
        raise ImportError(f"CrypTen failed to import: {type(error).__name__}: {error}") from error
    return crypten


def measure_crypten_training(
    model: nn.Sequential,
    input_shape: tuple[int, ...],
    classes: int,
    batch_size: int,
    batches: int = 2,
    seed: int = 0,
    provider: str = "TFP",
    timeout_s: float = 600.0,
) -> dict | None:
    """Train ``model``'s architecture for ``batches`` batches under CrypTen and return its traffic.

    Each batch is forward, softmax cross-entropy on one-hot labels, backward and a plain SGD
    step (no momentum, no gradient clipping: the update is then local). The data are random
    (communication in CrypTen does not depend on values) and shared by party 0; sharing
    costs nothing in CrypTen (pseudo-random zero sharing), whichever party owns the data.

    Args:
        model: an ``nn.Sequential`` from :mod:`testbed.models`; its weights are copied.
        input_shape: one sample's shape, e.g. ``(1, 8, 8)``.
        classes: number of classes.
        batch_size: samples per batch (at least 2).
        batches: batches to run; the result is their mean (they are identical in practice).
        seed: seed for the random data and labels.
        provider: "TFP" (CrypTen's default: party 0 makes the Beaver triples itself, so only the
            online phase is communicated) or "TTP" (a third process deals triples; the bytes
            it sends to party 0 are reported as ``dealer_bytes_per_batch``).
        timeout_s: the parties are killed and RuntimeError raised after this long.

    Returns:
        ``None`` when CrypTen is unavailable (see :func:`crypten_unavailable_reason`), otherwise
        a dict: ``bytes_per_batch`` and ``rounds_per_batch`` (online traffic, both directions
        together), ``phases`` (the same split into forward, loss, backward, step),
        ``dealer_bytes_per_batch`` (``None`` under TFP), ``seconds_per_batch`` (wall time of
        the two local processes on this machine), ``per_batch`` (each batch's bytes and
        rounds), ``batch_size``, ``batches``, ``provider`` and ``source``.

    Raises:
        ValueError: for a layer without a CrypTen counterpart, a bad provider or batch size.
        RuntimeError: when a party fails or the run exceeds ``timeout_s``.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    if batch_size < 2 or batches < 1:
        raise ValueError(f"need batch_size >= 2 and batches >= 1, got {batch_size} and {batches}")
    if crypten_unavailable_reason() is not None:
        return None
    check_convertible(model)
    crypten = import_crypten()
    records = run_parties(_train, (model, tuple(input_shape), classes, batch_size, batches, seed), provider, timeout_s)
    online = records[1]  # party 1 never talks to the dealer: its counter is the online phase alone
    per_batch = [{"bytes": sum(b[p]["bytes"] for p in _PHASES), "rounds": sum(b[p]["rounds"] for p in _PHASES)} for b in online]
    dealer = None
    if provider == "TTP":
        dealer = _mean(sum(b0[p]["bytes"] - b1[p]["bytes"] for p in _PHASES) for b0, b1 in zip(records[0], online))
    return {
        "source": (
            f"measured: CrypTen {crypten.__version__}, {PARTIES} parties in local processes (gloo), "
            f"provider {provider}, {batches} batch(es) of {batch_size} random samples"
        ),
        "provider": provider,
        "batch_size": batch_size,
        "batches": batches,
        "bytes_per_batch": _mean(b["bytes"] for b in per_batch),
        "rounds_per_batch": _mean(b["rounds"] for b in per_batch),
        "phases": {p: {k: _mean(b[p][k] for b in online) for k in ("bytes", "rounds")} for p in _PHASES},
        "dealer_bytes_per_batch": dealer,
        "seconds_per_batch": _mean(b["seconds"] for b in records[0]),
        "per_batch": per_batch,
    }


def bytes_per_epoch(measurement: dict, samples: int) -> float:
    """Scale a measurement to one epoch over ``samples``; a last partial batch counts as a full one."""
    return measurement["bytes_per_batch"] * batches_per_epoch(samples, measurement["batch_size"])


def rounds_per_epoch(measurement: dict, samples: int) -> float:
    """Rounds of one epoch over ``samples``, scaled like :func:`bytes_per_epoch`."""
    return measurement["rounds_per_batch"] * batches_per_epoch(samples, measurement["batch_size"])


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# -- the model under CrypTen -----------------------------------------------------------------

_CONVERTIBLE = (
    nn.Flatten, nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, Square, Poly2,
)  # fmt: skip


def check_convertible(model: nn.Sequential) -> None:
    for layer in model:
        if not isinstance(layer, _CONVERTIBLE):
            raise ValueError(f"no CrypTen counterpart for layer {type(layer).__name__}")
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            raise ValueError("only nn.Flatten() over all but the batch dimension is supported")
        if isinstance(layer, nn.MaxPool2d) and layer.dilation not in (1, (1, 1)):
            raise ValueError("CrypTen's MaxPool2d has no dilation")


@functools.cache
def _polynomial_layer() -> type:
    import crypten.nn as cnn

    class Polynomial(cnn.Module):
        """c0 + c1 x + c2 x^2 (Square, Poly2): one secure square forward, one product backward.

        CrypTen's ``polynomial`` is used rather than ``x.square().mul(c2) + x.mul(c1)``:
        its autograd would also differentiate each public coefficient, one wasted
        secure product per term.
        """

        def __init__(self, coefficients: tuple[float, float, float]):
            super().__init__()
            self.coefficients = coefficients

        def forward(self, x):
            c0, c1, c2 = self.coefficients
            out = x.polynomial([c1, c2])
            return out.add(c0) if c0 else out

    return Polynomial


def to_crypten(model: nn.Sequential):
    """The same network as crypten.nn modules, with the same weights (plaintext until encrypted)."""
    import crypten.nn as cnn

    layers = []
    for layer in model:
        if isinstance(layer, nn.Flatten):
            layers.append(cnn.Flatten(axis=1))
        elif isinstance(layer, nn.Linear):
            layers.append(_with_weights(cnn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None), layer))
        elif isinstance(layer, nn.Conv2d):
            converted = cnn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
            )  # fmt: skip
            layers.append(_with_weights(converted, layer))
        elif isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
            pool = cnn.AvgPool2d if isinstance(layer, nn.AvgPool2d) else cnn.MaxPool2d
            layers.append(pool(layer.kernel_size, stride=layer.stride, padding=layer.padding, ceil_mode=layer.ceil_mode))
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            norm = cnn.BatchNorm1d if isinstance(layer, nn.BatchNorm1d) else cnn.BatchNorm2d
            converted = _with_weights(norm(layer.num_features, eps=layer.eps, momentum=layer.momentum), layer)
            for name in ("running_mean", "running_var"):
                converted.set_buffer(name, getattr(layer, name).detach().clone())
            layers.append(converted)
        elif isinstance(layer, nn.ReLU):
            layers.append(cnn.ReLU())
        else:  # Square, Poly2
            layers.append(_polynomial_layer()(tuple(float(c) for c in layer.coefficients)))
    return cnn.Sequential(*layers)


def _with_weights(converted, layer: nn.Module):
    for name, parameter in layer.named_parameters(recurse=False):
        converted.set_parameter(name, nn.Parameter(parameter.detach().clone()))
    return converted


def _train(rank: int, model, input_shape, classes, batch_size, batches, seed) -> list[dict]:
    """One party's side of the training run; returns its counters per batch and phase."""
    import crypten
    import crypten.communicator as comm

    crypten.cfg.communicator.verbose = True
    torch.manual_seed(seed)
    private = to_crypten(model).encrypt(src=0)
    private.train()
    loss_fn = crypten.nn.CrossEntropyLoss()
    optimizer = crypten.optim.SGD(private.parameters(), lr=0.01)
    communicator = comm.get()
    records = []
    for _ in range(batches):
        x = crypten.cryptensor(torch.rand(batch_size, *input_shape), src=0)
        y = crypten.cryptensor(F.one_hot(torch.randint(classes, (batch_size,)), classes).float(), src=0)
        communicator.reset_communication_stats()
        record, before = {}, {"bytes": 0, "rounds": 0}
        start = time.perf_counter()

        def phase(name):
            nonlocal before
            enter_phase(f"after {name}")
            now = communicator.get_communication_stats()
            record[name] = {"bytes": now["bytes"] - before["bytes"], "rounds": now["rounds"] - before["rounds"]}
            before = now

        optimizer.zero_grad()
        out = private(x)
        phase("forward")
        loss = loss_fn(out, y)
        phase("loss")
        loss.backward()
        phase("backward")
        optimizer.step()
        phase("step")
        record["seconds"] = time.perf_counter() - start
        records.append(record)
    return records


# -- two parties (and, for TTP, a dealer) as local processes ----------------------------------

_phase = None  # in a party's process: the shared buffer its current phase is written to


def enter_phase(name: str) -> None:
    """In a party's process: record that it now runs ``name``, so that a failure names it."""
    if _phase is not None:
        _phase.value = name.encode()[:63]


def _launch(function, rank: int, rendezvous: str, provider: str, results, phase, args) -> None:
    """Process body: CrypTen reads its rank and rendezvous from the environment."""
    global _phase
    _phase = phase
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(PARTIES), RENDEZVOUS=rendezvous, DISTRIBUTED_BACKEND="gloo")
    try:
        enter_phase("init")
        torch.set_num_threads(1)
        crypten = import_crypten()
        crypten.cfg.mpc.provider = provider
        if rank == PARTIES:  # the trusted third party serves party 0 until it hangs up
            crypten.mpc.provider.TTPServer()
            return
        crypten.init()
        value = function(rank, *args)
        enter_phase("uninit")
        crypten.uninit()
        results.put((rank, None, value))
    except BaseException as error:  # report any failure to the parent instead of hanging it
        results.put((rank, f"{type(error).__name__}: {error}", None))


def run_parties(function, args: tuple, provider: str, timeout_s: float, names: tuple[str, ...] = ()) -> list:
    """Run ``function(rank, *args)`` in each party's process; return the values by rank.

    ``function`` runs after ``crypten.init()`` and may call :func:`enter_phase`; its value must
    be picklable without shared memory (numbers, lists, numpy arrays). ``names`` names the ranks
    in errors (default ``party <rank>``).

    Raises:
        RuntimeError: naming the party and its phase, when a party raises, its process dies, or
            the run exceeds ``timeout_s``. Every process started is ended before it returns.
    """
    context = multiprocessing.get_context("fork")  # the parties inherit the model; nothing is pickled in
    results = context.Queue()
    ranks = list(range(PARTIES)) + ([PARTIES] if provider == "TTP" else [])
    label = {r: (names[r] if r < len(names) else (f"party {r}" if r < PARTIES else "dealer")) for r in ranks}
    phases = {r: context.Array("c", 64) for r in ranks}
    values: dict[int, object] = {}

    def where(rank: int) -> str:
        return f"CrypTen {label[rank]} (rank {rank}, phase {phases[rank].value.decode() or 'start'})"

    with tempfile.TemporaryDirectory() as folder:
        rendezvous = "file://" + os.path.join(folder, "rendezvous")
        processes = {r: context.Process(target=_launch, args=(function, r, rendezvous, provider, results, phases[r], args)) for r in ranks}
        for process in processes.values():
            process.start()
        try:
            deadline = time.monotonic() + timeout_s
            while len(values) < PARTIES:
                if time.monotonic() > deadline:
                    running = [where(r) for r, p in processes.items() if r < PARTIES and r not in values]
                    raise RuntimeError(f"{', '.join(running)} did not finish within {timeout_s:.0f} s")
                try:
                    rank, error, value = results.get(timeout=0.2)
                except queue.Empty:
                    dead = [r for r, p in processes.items() if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"{where(dead[0])} died (exit code {processes[dead[0]].exitcode})") from None
                    continue
                if error is not None:
                    raise RuntimeError(f"{where(rank)} failed: {error}")
                values[rank] = value
        finally:
            for process in processes.values():
                process.join(timeout=10 if len(values) == PARTIES else 0.5)
                if process.is_alive():
                    process.kill()
                    process.join()
    return [values[r] for r in range(PARTIES)]
