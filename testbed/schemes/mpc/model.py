"""The responder's model as it enters two-party inference, and what a 2PC responder can do to it.

The responder owns its model, so before sharing it does in plaintext what costs nothing to do
there: it folds eval-mode batch-norm into the layer before it (CrypTen would otherwise evaluate
an inverse square root under MPC), and a manipulation's class-mixing matrix into its last layer.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from testbed.logit_map import LogitMap

_AFFINE = (nn.Linear, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def fold_problem(model: nn.Module) -> str | None:
    """Why :func:`inference_model` cannot take ``model``, or ``None``."""
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        return f"needs an nn.Sequential model, found {type(model).__name__}"
    for before, layer in zip([None, *model], model):
        if isinstance(layer, _NORMS) and not isinstance(before, _AFFINE):
            return f"folds batch-norm into the Linear or Conv2d layer before it; {type(layer).__name__} follows {type(before).__name__}"
    if not isinstance(model[-1], nn.Linear):
        return f"needs a model ending in nn.Linear (a responder folds its manipulation there), found {type(model[-1]).__name__}"
    return None


def inference_model(model: nn.Sequential, matrix: np.ndarray | None = None) -> nn.Sequential:
    """A copy of ``model`` in eval mode with batch-norm folded and, if given, the logits mapped by
    ``matrix`` (``logits @ matrix``) folded into the last Linear layer. Same logits, up to float rounding."""
    layers: list[nn.Module] = []
    with torch.no_grad():
        for layer in copy.deepcopy(model).eval():
            if isinstance(layer, _NORMS):
                affine = layers[-1]
                scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                shape = (-1,) + (1,) * (affine.weight.dim() - 1)
                bias = affine.bias if affine.bias is not None else torch.zeros(affine.weight.shape[0])
                affine.weight.mul_(scale.reshape(shape))
                affine.bias = nn.Parameter((bias - layer.running_mean) * scale + layer.bias)
            else:
                layers.append(layer)
        if matrix is not None:
            last = layers[-1]
            m = torch.as_tensor(matrix, dtype=last.weight.dtype)
            bias = last.bias if last.bias is not None else torch.zeros(last.out_features)
            last.weight.copy_(m.T @ last.weight)
            last.bias = nn.Parameter(bias @ m)
    return nn.Sequential(*layers).eval()


def realizable(logit_map: LogitMap) -> LogitMap:
    """The part of ``logit_map`` a 2PC responder can carry out (docs/mpc.md, manipulation).

    Both parties run the agreed circuit, so the responder chooses one set of weights for all
    the querier's samples: a class-mixing matrix reaches every row or none. Per-row offsets stay
    exact: the last layer's bias is added locally, and the responder's share of it may differ
    per row without any party noticing. A map whose matrix is not the identity therefore
    applies to every row of the epoch (the attack picks the epoch, not the rows); offsets keep
    their rows (unselected rows get none).
    """
    if np.allclose(logit_map.matrix, np.eye(len(logit_map.matrix))) or not logit_map.selected.any():
        return logit_map
    offset = np.where(logit_map.selected[:, None], logit_map.offset, 0.0)
    return LogitMap(np.ones_like(logit_map.selected), logit_map.matrix, offset)


def row_offsets(logit_map: LogitMap | None, n: int, classes: int) -> np.ndarray:
    """Per-row additions to the logits (the responder's per-row bias share); zero when unmanipulated."""
    if logit_map is None:
        return np.zeros((n, classes), dtype=np.float32)
    return np.where(logit_map.selected[:, None], logit_map.offset, 0.0).astype(np.float32)
