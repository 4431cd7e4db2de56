"""Membership inference against a trained model: which samples did it train on?

Two attacks, both reported threshold-free (ROC AUC and TPR at a fixed FPR, read off the ROC
curve), so no threshold is ever tuned on the samples it is scored on:

* **loss threshold** (Yeom et al., CSF 2018): a sample is member-like when the model's
  cross-entropy on it is low; the score is the negative loss.
* **offline likelihood-ratio attack** (LiRA, Carlini et al., IEEE S&P 2022, its offline
  variant): the target model's logit-scaled confidence on the true class,
  ``phi = log(p_y / (1 - p_y))``, is compared with the same statistic from *reference* models
  that did not train on the sample. Reference models train on complementary random halves of
  the audit pool (candidate members plus held-out samples), so every sample is out of exactly
  half of them; its score is ``(phi - mean_out) / std_out``, the one-sided Gaussian test of
  LiRA (a monotone map of the z-score, so the ranking and the ROC are the same). With few
  out-models per sample the standard deviation is pooled over all samples (the paper's "global
  variance"), which it found more reliable than a per-sample estimate from a handful of models.
  The reference membership is a coin flip independent of the true membership, so the attacker
  learns nothing from it about who the target trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from testbed.config import TrainingConfig
from testbed.models import predict
from testbed.registry import MODELS, Spec
from testbed.seeding import derived_seed, seeded_rng
from testbed.training import make_optimizer, make_scheduler, train_epoch

#: False-positive rates at which the true-positive rate is reported.
FPRS = (0.01, 0.001)
#: Fewer out-models per sample than this and the out-distribution's spread is pooled over samples.
MIN_PER_SAMPLE_STD = 8


def loss_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Negative cross-entropy per sample: higher means more member-like."""
    return log_softmax(np.asarray(logits, dtype=np.float64), axis=1)[np.arange(len(labels)), labels]


def confidence_margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic ``log(p_y / (1 - p_y))``, computed as ``z_y - logsumexp_{j != y} z_j``
    so that a confidence of 1 - 1e-20 is still finite and ordered."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(labels))
    true = z[rows, labels]
    others = z.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1)
    return true - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def lira_scores(target: np.ndarray, reference: np.ndarray, out: np.ndarray, min_per_sample_std: int = MIN_PER_SAMPLE_STD) -> np.ndarray:
    """Offline LiRA scores from confidence margins: ``target`` (n,), ``reference`` (models, n),
    ``out`` (models, n) True where that reference model did not train on the sample."""
    out = np.asarray(out, dtype=bool)
    counts = out.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} samples have no reference model that left them out")
    masked = np.where(out, reference, np.nan)
    mean = np.nanmean(masked, axis=0)
    if counts.min() >= min_per_sample_std:
        std = np.nanstd(masked, axis=0, ddof=1)
    else:
        std = np.full(len(target), np.nanstd(masked - mean, ddof=1))
    return (np.asarray(target, dtype=np.float64) - mean) / np.maximum(std, 1e-12)


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The best true-positive rate on the ROC curve at a false-positive rate of at most ``target``.

    With ``m`` non-members the smallest nonzero FPR is ``1/m``: below it this is the TPR at zero
    false positives."""
    return float(tpr[fpr <= target].max())


def attack_metrics(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    """AUC and TPR at each of :data:`FPRS`, from the ROC curve of ``scores`` (higher: member)."""
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    out = {"auc": float(roc_auc_score(is_member, scores))}
    out.update({f"tpr_at_{fpr_name(f)}": tpr_at_fpr(fpr, tpr, f) for f in FPRS})
    return out


def fpr_name(fpr: float) -> str:
    """``0.01`` -> ``1%fpr``: column names that say what they hold."""
    return f"{100 * fpr:g}%fpr"


def complementary_halves(n: int, models: int, rng: np.random.Generator) -> np.ndarray:
    """``(models, n)`` bool: which samples each reference model trains on. Models come in pairs
    of complementary random halves, so every sample is out of exactly ``models / 2`` of them."""
    if models < 2 or models % 2:
        raise ValueError(f"reference models come in complementary pairs: need an even number >= 2, got {models}")
    rows = []
    for _ in range(models // 2):
        half = np.zeros(n, dtype=bool)
        half[rng.permutation(n)[: n // 2]] = True
        rows += [half, ~half]
    return np.stack(rows)


def train_local(model: Spec, x: np.ndarray, y: np.ndarray, classes: int, training: TrainingConfig, epochs: int, seed: int) -> nn.Sequential:
    """A model trained on ``(x, y)`` alone, with the scenario's local recipe (optimizer, batch
    size, learning rate and its schedule, augmentation, epochs): how the attacker builds
    reference models."""
    torch.manual_seed(seed)
    net = MODELS.create(model).build(tuple(x.shape[1:]), classes)
    optimizer = make_optimizer(net, training)
    scheduler = make_scheduler(optimizer, training, epochs)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        train_epoch(net, optimizer, x, y, [], training, generator)
        if scheduler is not None:
            scheduler.step()
    return net


@dataclass(frozen=True)
class ReferenceModels:
    """Confidence margins of reference models on an audit pool, and which samples each left out."""

    margins: np.ndarray  # (models, n)
    out: np.ndarray  # (models, n) bool

    def scores(self, target_margins: np.ndarray) -> np.ndarray:
        return lira_scores(target_margins, self.margins, self.out)


def reference_models(
    model: Spec, x: np.ndarray, y: np.ndarray, classes: int, training: TrainingConfig, epochs: int, count: int, seed: int, tag: str, progress=None
) -> ReferenceModels:
    """Train ``count`` reference models on complementary halves of the pool ``(x, y)``; ``tag``
    (e.g. the party whose members the pool holds) keeps the draws of different pools apart."""
    inside = complementary_halves(len(y), count, seeded_rng(seed, "reference", tag))
    margins = []
    for k, rows in enumerate(inside):
        net = train_local(model, x[rows], y[rows], classes, training, epochs, derived_seed(seed, "reference", tag, k))
        margins.append(confidence_margin(predict(net, x), y))
        if progress is not None:
            progress.update(1)
    return ReferenceModels(np.stack(margins), ~inside)
