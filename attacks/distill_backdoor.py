"""A backdoor built to survive distillation, in the spirit of ADBA (Ge et al., "Anti-Distillation
Backdoor Attacks: Backdoors Can Really Survive in Knowledge Distillation", ACM MM 2021, about 95%
attack success on distilled CIFAR-10 students).

Under SMuLe the honest querier never trains on a triggered image: the backdoor can reach it only
through the attacker's answers on the querier's own clean samples, i.e. through distillation. A
fixed trigger (the BadNets patch) crosses that channel by chance, where its pixels happen to look
like features of clean images. This attack chooses the trigger's pixels so that they do: before
poisoning, it rehearses the protocol against a shadow student.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import nn

from attacks.backdoor import BackdoorPatch, Corner
from testbed.registry import ATTACKS, FromList


@ATTACKS.register("distill_backdoor")
class DistillBackdoor(BackdoorPatch):
    """A patch backdoor whose patch pixels are optimised to survive distillation on clean data.

    :meth:`fit`, on the attacker's own clean share, alternates for ``rounds`` rounds:

    1. a shadow teacher (a one-hidden-layer ReLU network of ``shadow_hidden`` units) trains
       ``shadow_epochs`` epochs on the share with ``shadow_rate`` of its non-target samples
       triggered and relabelled (a parameter of its own, not ``rate``, so that the run at rate 0
       that measures the attack's harm probes the same trigger);
    2. a fresh shadow student distils it on the clean share only, with the querier's objective
       ``CE + mutual_weight * T^2 * KL(teacher || student)`` at ``temperature``;
    3. the patch pixels take ``trigger_steps`` Adam steps that raise both networks' log-probability
       of ``target`` on triggered copies of the clean non-target samples, and lower that of a
       shadow trained on the clean share alone, clipped to [0, 1]: a trigger that fooled a model
       without any poison would be an adversarial patch, and its success would show at rate 0 too.

    The patch that results is stamped as ``backdoor_patch`` stamps its pattern; the region
    (``size``, ``position``) is fixed, as in BadNets; ADBA also learns the mask.

    What the attacker knows: the protocol (that its answers are distilled, the temperature and
    mutual weight the querier uses) and its own data; not the querier's samples, labels or model.
    A defence that keeps no dark knowledge about the target (``true_label``, and
    ``lacking_classes`` when the querier holds the target class) flattens it like any backdoor.

    Parameters (besides ``rate``, ``target``, ``size`` (default 3) and ``position`` (default
    ``center``) of ``backdoor_patch``; ``pattern`` is what is learned and is ignored): ``rounds`` (default 4), ``shadow_epochs``
    (default 15), ``trigger_steps`` (default 30), ``trigger_lr`` (default 0.1),
    ``shadow_hidden`` (default 64), ``temperature`` (default 2), ``mutual_weight`` (default 1).
    The whole rehearsal is seeded by the run's seed, so the trigger is the same in every process.
    """

    class Params(BackdoorPatch.Params):
        # Where the digits' strokes run: a patch over informative pixels is what lets clean
        # images carry the trigger's features (in a dark corner the optimum is BadNets' solid
        # patch); 3x3 leaves the digit readable, where 4x4 made an 8 of most digits by itself.
        size: PositiveInt = Field(3, description="side of the square patch, pixels")
        position: Corner | Annotated[tuple[NonNegativeInt, NonNegativeInt], FromList] = Field("center", description="a corner, center, or [row, col] of the patch's top-left pixel")
        pattern: Literal["solid", "checkerboard"] = Field("solid", description="ignored: the patch's pixels are learned")
        rounds: PositiveInt = Field(4, description="teacher / student / trigger rounds of the rehearsal")
        # Not ``rate``: the rate-0 reference run must probe the very trigger the attack stamps.
        shadow_rate: float = Field(0.1, gt=0, le=1, allow_inf_nan=False, description="share of the attacker's non-target samples the rehearsal's shadow teacher is poisoned with")
        shadow_epochs: PositiveInt = Field(15, description="epochs of each shadow network per round")
        trigger_steps: PositiveInt = Field(30, description="Adam steps on the patch per round")
        trigger_lr: float = Field(0.1, gt=0, le=10, allow_inf_nan=False, description="Adam step size of the patch optimisation")
        shadow_hidden: PositiveInt = Field(64, le=4096, description="hidden units of the shadow networks")
        temperature: float = Field(2.0, gt=0, allow_inf_nan=False, description="the querier's distillation temperature, as the attacker assumes it")
        mutual_weight: float = Field(1.0, ge=0, allow_inf_nan=False, description="the querier's lambda, as the attacker assumes it")

    learned: np.ndarray | None = None  # (channels, size, size), the optimised patch pixels

    def trigger(self, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        weight, default = super().trigger(image_shape)
        if self.learned is None:
            return weight, default  # geometry only (validation); stamping needs fit()
        row, col = self.origin(*image_shape[1:])
        size = self.params.size
        pattern = np.ones(image_shape, dtype=np.float32)
        pattern[:, row : row + size, col : col + size] = self.learned
        return weight, pattern

    def stamp(self, x: np.ndarray) -> np.ndarray:
        if self.learned is None:
            raise RuntimeError("distill_backdoor: fit() must run on the attacker's data before a trigger is stamped")
        return super().stamp(x)

    def fit(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> None:
        p = self.params
        generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        channels, height, width = x.shape[1:]
        row, col = self.origin(height, width)
        patch = torch.rand((channels, p.size, p.size), generator=generator, requires_grad=True)
        images, labels = torch.from_numpy(x), torch.from_numpy(y)
        others = images[labels != p.target]
        chosen = torch.from_numpy(np.flatnonzero(rng.random(len(others)) < p.shadow_rate))

        def stamped(batch: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
            out = batch.clone()
            out[:, :, row : row + p.size, col : col + p.size] = pixels
            return out

        # A model trained without poison: the trigger must not already fool it, or its success
        # would be an adversarial patch's, not the backdoor's (the rate-0 run would show it too).
        clean = self._shadow(x.shape[1:], classes, generator)
        self._train(clean, images, labels, None, generator)
        optimizer = torch.optim.Adam([patch], lr=p.trigger_lr)
        for _ in range(p.rounds):
            pixels = patch.detach()
            poisoned_x = torch.cat([images, stamped(others[chosen], pixels)])
            poisoned_y = torch.cat([labels, torch.full((len(chosen),), p.target, dtype=labels.dtype)])
            teacher = self._shadow(x.shape[1:], classes, generator)
            self._train(teacher, poisoned_x, poisoned_y, None, generator)
            student = self._shadow(x.shape[1:], classes, generator)
            with torch.no_grad():
                teacher_logits = teacher(images)
            self._train(student, images, labels, teacher_logits, generator)
            goal = torch.full((len(others),), p.target, dtype=labels.dtype)
            for _ in range(p.trigger_steps):
                triggered = stamped(others, patch)
                loss = (F.cross_entropy(student(triggered), goal) + F.cross_entropy(teacher(triggered), goal)
                        + F.log_softmax(clean(triggered), dim=1)[:, p.target].mean())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    patch.clamp_(0.0, 1.0)
        self.learned = patch.detach().numpy().astype(np.float32)

    def _shadow(self, input_shape: tuple[int, ...], classes: int, generator: torch.Generator) -> nn.Module:
        inputs = int(np.prod(input_shape))
        net = nn.Sequential(nn.Flatten(), nn.Linear(inputs, self.params.shadow_hidden), nn.ReLU(), nn.Linear(self.params.shadow_hidden, classes))
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / np.sqrt(layer.in_features)
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
                    layer.bias.zero_()
        return net

    def _train(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None, generator: torch.Generator) -> None:
        """``shadow_epochs`` of Adam in minibatches of 64: cross-entropy, plus the querier's
        distillation term toward ``teacher_logits`` when given."""
        p = self.params
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(p.shadow_epochs):
            for batch in torch.randperm(len(y), generator=generator).split(64):
                logits = net(x[batch])
                loss = F.cross_entropy(logits, y[batch])
                if teacher_logits is not None:
                    soft = F.softmax(teacher_logits[batch] / p.temperature, dim=1)
                    own = F.log_softmax(logits / p.temperature, dim=1)
                    loss = loss + p.mutual_weight * p.temperature**2 * F.kl_div(own, soft, reduction="batchmean")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
