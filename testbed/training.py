"""Local training with the mutual-learning objective, and evaluation.

The SMuLe objective on a minibatch (docs/protocol.md, after Deep Mutual Learning, Zhang et al.,
CVPR 2018, with Hinton et al.'s T^2 distillation scaling):

    CE(own(x), y) + lambda * T^2 * mean_peers( w * KL(peer_soft || own_soft) )

where ``w`` is a per-sample weight (0 for predictions a robustness filter dropped, or for samples
the querier did not send). With ``augment``, ``own(x)`` is the prediction on the augmented image in
both terms, while the peer's answer is on the un-augmented one (the only image it was sent): crop
and flip preserve the label, so the answer stays a fair target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

from testbed.config import TrainingConfig
from testbed.models import predict


@dataclass(frozen=True)
class PeerGuidance:
    """Peer logits on this party's samples and the weight each one gets in the mutual term."""

    logits: np.ndarray  # (n, classes)
    weights: np.ndarray  # (n,), in [0, 1]


def make_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig, epochs: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per epoch; the same schedule for every protocol."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if cfg.schedule == "cosine" else None


#: Pixels of reflect padding before the random crop (the usual CIFAR-10 recipe).
CROP_PADDING = 4


def augmented(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image randomly cropped back to its size from a reflect-padded copy, and flipped
    horizontally with probability 1/2, drawn from ``generator`` (deterministic per party)."""
    n, _, height, width = images.shape
    padded = TF.pad(images, [CROP_PADDING], padding_mode="reflect")
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=generator).tolist()
    flips = torch.rand(n, generator=generator) < 0.5
    cropped = torch.stack([TF.crop(image, top, left, height, width) for image, (top, left) in zip(padded, offsets)])
    return torch.where(flips[:, None, None, None], TF.horizontal_flip(cropped), cropped)


def mutual_learning_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    peer_logits: torch.Tensor | None,
    peer_weights: torch.Tensor | None,
    temperature: float,
    mutual_weight: float,
) -> torch.Tensor:
    """Cross-entropy plus the weighted distillation term; ``peer_*`` have a leading peer axis."""
    loss = F.cross_entropy(logits, labels)
    if peer_logits is None or mutual_weight == 0:
        return loss
    own_log_soft = F.log_softmax(logits / temperature, dim=1)
    peer_soft = F.softmax(peer_logits / temperature, dim=2)
    # KL(peer || own) per peer and sample, summed over classes.
    kl = (peer_soft * (torch.log(peer_soft.clamp_min(1e-12)) - own_log_soft.unsqueeze(0))).sum(dim=2)
    return loss + mutual_weight * temperature**2 * (peer_weights * kl).mean()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    guidance: list[PeerGuidance],
    cfg: TrainingConfig,
    generator: torch.Generator,
) -> float:
    """One pass over the data in a seeded random order; returns the mean minibatch loss."""
    model.train()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    peer_logits = torch.from_numpy(np.stack([g.logits for g in guidance]).astype(np.float32)) if guidance else None
    peer_weights = torch.from_numpy(np.stack([g.weights for g in guidance]).astype(np.float32)) if guidance else None
    order = torch.randperm(len(ys), generator=generator)
    losses = []
    for start in range(0, len(ys), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        if len(batch) < 2 and len(ys) >= 2:  # batch-norm cannot train on a single sample
            continue
        optimizer.zero_grad()
        inputs = augmented(xs[batch], generator) if cfg.augment else xs[batch]
        loss = mutual_learning_loss(
            model(inputs),
            ys[batch],
            None if peer_logits is None else peer_logits[:, batch],
            None if peer_weights is None else peer_weights[:, batch],
            cfg.temperature,
            cfg.mutual_weight,
        )
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x).argmax(1) == y).mean())
