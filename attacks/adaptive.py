"""Filter-aware (adaptive) attacks: built to pass the honest querier's
robustness filters, so that the testbed shows where filtering stops protecting it.

The querier's filters judge each answer by its argmax (agreement), the peer probability of the
true label (confidence), its distance to the querier's own prediction (divergence), and a
running share of agreement (trust). Each attack below says which of them it is built to pass and
which signal still betrays it:

* ``mass_shift`` and ``stealth_swap`` are answer manipulations (a :class:`LogitMap`, evaluated
  blindly on encrypted logits) that move probability mass toward a class while leaving the
  argmax of most answers unchanged;
* ``boundary_label_flip`` poisons only the source-class samples a simple model is least sure
  about, where the honest party's own model is unsure too.
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import Field, PositiveInt, model_validator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from attacks.base import DataPoisoning, PoisonedData, SuccessProbe
from attacks.budget import budget
from attacks.manipulation import ClassSwap, TargetedPush
from attacks.targets import ClassIndex, SourceTargetParams, SourceToTarget, check_classes
from testbed.registry import ATTACKS


@ATTACKS.register("mass_shift")
class MassShift(TargetedPush):
    """Sharpen the answer and push the ``target`` logit: ``out = sharpen * logits + strength * e_target``
    on the manipulated samples (a targeted push, as ``targeted_push``, made to survive the
    agreement and confidence filters).

    With ``m = logit[top] - logit[target]`` the answer's margin over the target:

    * the argmax survives exactly when ``sharpen * m > strength`` (sharpening multiplies every
      margin, so no third class overtakes the top one); answers whose margin is at most
      ``strength / sharpen`` turn to ``target`` and fail the agreement filter;
    * the target's share relative to the top class grows exactly when
      ``strength > (sharpen - 1) * m``; for very confident answers (larger margins) the
      sharpening wins, the target loses mass and the top class gains it, so the answer passes the
      confidence filter all the more. ``softmax`` mass on the target grows on every answer whose
      margins over the target, ``logit[j] - logit[target]`` for every ``j``, are all below
      ``strength / (sharpen - 1)`` (on every answer when ``sharpen == 1``).

    The attack therefore bites on the band ``strength / sharpen < m < strength / (sharpen - 1)``:
    argmax (agreement filter) kept, peer probability of the top class kept high (confidence
    filter), target mass raised; and the trust filter, fed by agreement, keeps trusting. Neither
    condition depends on the querier's temperature ``T``: dividing by ``T`` scales both sides.
    What still catches it is the divergence filter: sharpening and the push both move the answer
    away from the querier's own prediction, and ``KL(peer_soft || own_soft)`` grows with
    ``sharpen`` and ``strength``.

    Parameters:
        rate: see :class:`~attacks.manipulation.Manipulation` (uniform, blind, fresh each epoch).
        target: the class that gains probability mass.
        strength: the logit added to ``target`` (> 0); default 3.0.
        sharpen: the factor on every logit (>= 1); default 1.5, which with the default strength
            keeps the argmax for margins above 2 and raises the target's mass up to margin 6.
        source: optional; the class whose test samples measure success. The responder sees no
            labels, so ``source`` does not change what it does, only what counts as harm.

    Success probe, measured on the honest party's model: the ``source``-class test samples when
    ``source`` is given, otherwise every test sample whose true class is not ``target``; a
    success when classified as ``target``.
    """

    class Params(TargetedPush.Params):
        strength: float = Field(3.0, gt=0.0, allow_inf_nan=False, description="logit added to the target")
        sharpen: float = Field(1.5, ge=1.0, allow_inf_nan=False, description="factor on every logit")
        source: ClassIndex | None = Field(None, description="class whose test samples measure success")

        @model_validator(mode="after")
        def _distinct(self) -> MassShift.Params:
            if self.source == self.target:
                raise ValueError(f"source and target are both {self.source}; they must differ")
            return self

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        check_classes(self, classes, "target", *(["source"] if self.params.source is not None else []))

    def matrix(self, classes: int) -> np.ndarray:
        return self.params.sharpen * np.eye(classes)

    def success_probe(self, x_test: np.ndarray, y_test: np.ndarray) -> SuccessProbe:
        if self.params.source is None:
            return super().success_probe(x_test, y_test)
        return SuccessProbe(x_test[y_test == self.params.source], self.params.target)


@ATTACKS.register("stealth_swap")
class StealthSwap(ClassSwap):
    """A partial class swap: ``out[source] = (1 - mix) * l[source] + mix * l[target]`` and
    ``out[target] = mix * l[source] + (1 - mix) * l[target]``, other logits unchanged; that is,
    ``(1 - mix) * identity + mix * swap`` (``class_swap`` is ``mix = 1``).

    The map is blind, yet its effect is aimed: it mixes only the ``source`` and ``target``
    logits, so answers where both carry little probability (samples of other classes) change
    little, and source-class answers change most: mass moves to the target while ``mix < 1/2``
    keeps ``source`` above ``target`` (the gap shrinks by the factor ``1 - 2 * mix``). The argmax
    of a source answer survives unless a third class overtakes the lowered source logit, i.e.
    unless ``(1 - mix) * l[source] + mix * l[target] <= max of the other logits``. Like ``mass_shift`` it
    passes the agreement filter (and trust) on those answers; the confidence filter passes it
    while the lowered ``p(source)`` stays above its threshold, so a high threshold catches a large
    ``mix``; the divergence filter sees the mass moved toward ``target``.

    Parameters: ``rate`` (see :class:`~attacks.manipulation.Manipulation`), ``source``,
    ``target`` (distinct classes), and ``mix`` (strictly between 0 and 1/2).

    Success probe, measured on the honest party's model: the source-class test samples, a success
    when classified as ``target``.
    """

    class Params(SourceTargetParams):
        mix: float = Field(gt=0.0, lt=0.5, description="share of each of the two logits moved to the other")

    def matrix(self, classes: int) -> np.ndarray:
        mix = self.params.mix
        return (1 - mix) * np.eye(classes) + mix * super().matrix(classes)


@ATTACKS.register("boundary_label_flip")
class BoundaryLabelFlip(SourceToTarget, DataPoisoning):
    """Targeted label flip (source -> target, as ``label_flip``) that spends its budget on the
    source-class samples nearest the source/target decision boundary instead of uniformly.

    Nearness: a multinomial logistic regression fitted on the attacker's own clean data
    (flattened ``x``, ``y``) gives each source-class sample a margin ``p(source) - p(target)``;
    the lowest margins are flipped (ties broken by sample order). Negative margins, source samples
    the simple model already takes for ``target``, come first.

    Why it is meant to be filter-aware: a model trained on these labels has its source/target
    boundary pushed into ``source`` only where the data are ambiguous, so its wrong answers should
    come with low confidence on borderline inputs, where the honest querier's own model is unsure
    too: the divergence filter sees little disagreement there and a confidence threshold gives no
    clear signal (a hypothesis the runs test, against ``label_flip`` at the same rate). The
    agreement filter still rejects any answer whose argmax becomes ``target`` on a source sample;
    what the attack aims for is that such answers are fewer and less confident than after a
    uniform flip of the same budget, while the distillation term still carries the poisoned soft
    labels on the many borderline answers that keep their argmax.

    Parameters:
        rate: the poison budget, ``round(rate * n)`` over the party's ``n`` training samples, as in
            ``label_flip``, capped by the number of source-class samples.
        source: the class whose samples are relabelled.
        target: the label they get.
        max_iter: iterations of the logistic regression's L-BFGS fit; default 100. The fit only
            ranks samples, so it need not converge: lower it for large inputs (one iteration
            costs about 0.6 s on 5,000 samples of 3x32x32 on two cores; digits fits in 0.5 s).

    The fit is deterministic (L-BFGS); its ``random_state`` is still drawn from ``rng``, so the
    choice stays a function of the seed whichever solver is used. Success probe: as
    ``label_flip``, the source-class test samples, a success when classified as ``target``.
    """

    class Params(SourceTargetParams):
        max_iter: PositiveInt = Field(100, description="L-BFGS iterations of the ranking model")

    def poison(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> PoisonedData:
        source, target = self.params.source, self.params.target
        eligible = y == source
        count = budget(eligible, self.params.rate)
        candidates = np.flatnonzero(eligible)
        margin = self.margins(x, y, classes, int(rng.integers(2**31 - 1)))[candidates]
        poisoned = np.zeros(len(y), dtype=bool)
        poisoned[candidates[np.argsort(margin, kind="stable")[:count]]] = True
        flipped = y.copy()
        flipped[poisoned] = target
        return PoisonedData(x.copy(), flipped, poisoned)

    def margins(self, x: np.ndarray, y: np.ndarray, classes: int, seed: int) -> np.ndarray:
        """``p(source) - p(target)`` for every sample under a logistic regression fitted on ``(x, y)``;
        all zeros when ``y`` holds fewer than two classes (nothing to fit: ties, so sample order)."""
        present = np.unique(y)
        if len(present) < 2:
            return np.zeros(len(y))
        model = LogisticRegression(max_iter=self.params.max_iter, random_state=seed)
        flat = x.reshape(len(x), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(flat, y)
        proba = np.zeros((len(y), classes))
        proba[:, present] = model.predict_proba(flat)  # classes_ is the sorted unique labels
        return proba[:, self.params.source] - proba[:, self.params.target]
