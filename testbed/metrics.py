"""Pure metric functions: arrays in, numbers out.

The filter audit's ground truth comes from the malicious responder's **clean twin** (see
:mod:`testbed.party`): the same model, data order and peer guidance without any poisoning or
manipulation, i.e. what an honest party in the attacker's place would have answered. An answer's
harm is how far it moved from the twin's answer on the same sample, in the distribution the
querier actually distils toward (softmax at the distillation temperature). No filter's rule
enters the ground truth: an answer can be harmful with the right argmax, and a wrong argmax is
not harmful if the twin would have given it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: An answer is harmful when its KL divergence from the twin's answer exceeds this (nats, at
#: the distillation temperature)...
HARM_KL = 0.1
#: ...or when it moved at least this much probability toward the attack's target class.
HARM_TARGET_MASS = 0.02


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) in nats."""
    p = np.clip(p, 1e-12, 1)
    return (p * (np.log(p) - np.log(np.clip(q, 1e-12, 1)))).sum(axis=1)


@dataclass(frozen=True)
class Harm:
    """Per answer: how far it moved from the clean twin's answer, and whether that counts as harmful."""

    divergence: np.ndarray  # KL(answer || twin) at the distillation temperature, nats
    target_shift: np.ndarray  # p_answer(target) - p_twin(target) at that temperature (0 without a target)
    harmful: np.ndarray  # bool

    @classmethod
    def none(cls, n: int) -> "Harm":
        """An honest responder's answers: its own honest answers are the reference."""
        return cls(np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool))


def answer_harm(answer_logits: np.ndarray, twin_logits: np.ndarray, temperature: float, target: int | None) -> Harm:
    """Harm of each returned answer against the twin's answer on the same sample."""
    answer, twin = softmax(answer_logits, temperature), softmax(twin_logits, temperature)
    divergence = kl_divergence(answer, twin)
    shift = answer[:, target] - twin[:, target] if target is not None else np.zeros(len(answer))
    return Harm(divergence, shift, (divergence > HARM_KL) | (shift >= HARM_TARGET_MASS))


def filter_quality(weights: np.ndarray, harm: Harm, distilled_divergence: np.ndarray) -> dict[str, float]:
    """How a querier's defence treated one peer's answers, against the twin-based ground truth.

    A weight ``w`` in [0, 1] drops ``1 - w`` of an answer, so fractional weights count as partial
    drops (for 0/1 weights these are the usual counts):

    * ``kept``: mean weight;
    * ``precision``: the dropped share that was harmful (1 when nothing was dropped);
    * ``recall``: the harmful share that was dropped (1 when nothing was harmful);
    * ``dropped_useful``: the share of harmless answers dropped, the defence's cost (for an honest
      peer, every answer is harmless);
    * ``harm_kept`` / ``harm_dropped``: mean KL from the twin of the kept and of the dropped answers;
    * ``harm_distilled``: mean over answers of ``w * distilled_divergence``, where
      ``distilled_divergence`` compares what the querier distils toward after any rewriting defence
      with what it would have distilled toward from the twin: the poison that got through.
    """
    kept = np.asarray(weights, dtype=np.float64)
    dropped = 1.0 - kept
    harmful = harm.harmful.astype(np.float64)
    caught = float((dropped * harmful).sum())

    def ratio(num: float, den: float, empty: float) -> float:
        return num / den if den > 0 else empty

    return {
        "kept": float(kept.mean()),
        "precision": ratio(caught, float(dropped.sum()), 1.0),
        "recall": ratio(caught, float(harmful.sum()), 1.0),
        "dropped_useful": ratio(float((dropped * (1 - harmful)).sum()), float((1 - harmful).sum()), 0.0),
        "harmful": float(harmful.mean()),
        "harm_kept": ratio(float((kept * harm.divergence).sum()), float(kept.sum()), 0.0),
        "harm_dropped": ratio(float((dropped * harm.divergence).sum()), float(dropped.sum()), 0.0),
        "harm_distilled": float((kept * distilled_divergence).mean()),
    }


def success_rate(predicted: np.ndarray, target: int) -> float:
    """Attack success rate: the share of probe inputs classified as the attack's target."""
    return float((predicted == target).mean())
