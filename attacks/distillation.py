"""Byzantine attacks on distillation-based collaboration, after Roux, Zimmer and Pokutta, "On the
Byzantine-Resilience of Distillation-Based Federated Learning", ICLR 2025: the loss maximisation
attack (LMA) and the class prior attack (CPA), in their closest blind form.

In the paper a Byzantine client sees the (honest mean) prediction on each public sample and
answers with a one-hot vector: on the least likely class (LMA), or on the class least similar to
the most likely one (CPA). A SMuLe responder is blind: it computes its answers under CKKS, on
encrypted logits, so it can evaluate only polynomials of them, and ``argmin`` / ``argmax`` are not
polynomials. What that changes:

* the one-hot choice becomes a linear map that approaches it: ``-k * logits`` for LMA (softmax
  then concentrates on the least likely class as ``k`` grows), a sharpened class permutation for
  CPA (the most likely class's logit moves to its least similar class);
* with two parties there is no honest mean: the attacker's own model stands in for it;
* nothing here needs the querier's labels, and nothing can use them.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment

from attacks.manipulation import Manipulation
from testbed.registry import ATTACKS


@ATTACKS.register("loss_max")
class LossMax(Manipulation):
    """Blind LMA: answer ``-sharpness * logits``, so the answer's mass goes to the classes the
    attacker's model finds least likely (as ``sharpness`` grows, a one-hot on the least likely).

    What the attacker knows: the protocol and the querier's defences, not its samples or labels.
    Under ``true_label`` only the (tiny) probability of the label passes, so it becomes a
    confidence attack; under defences that keep dark knowledge the mass on the least likely class
    passes too. Parameters: ``rate`` and ``sharpness`` (> 0; default 5). No success probe: it
    aims at accuracy.
    """

    class Params(Manipulation.Params):
        sharpness: float = Field(5.0, gt=0.0, allow_inf_nan=False, description="k in -k * logits")

    def matrix(self, classes: int) -> np.ndarray:
        return -self.params.sharpness * np.eye(classes)


@ATTACKS.register("class_prior")
class ClassPrior(Manipulation):
    """Blind CPA: move each class's logit to the class least similar to it, sharpened:
    ``out[sigma(c)] = sharpness * logits[c]``, so the answer's most likely class ``c`` becomes
    ``sigma(c)``.

    ``sigma`` is a permutation (a linear map must send every class somewhere, and a permutation
    keeps the answer's ranking intact under relabelling) that minimises the total similarity of
    ``c`` and ``sigma(c)``, no class mapped to itself. Similarity: the cosine of the attacker's
    class-mean inputs, from its own clean data (:meth:`fit`); the paper's similarity matrix comes
    from its models instead.

    What the attacker knows: its own data and the protocol, not the querier's samples or labels.
    Parameters: ``rate`` and ``sharpness`` (> 0; default 3). No success probe: it aims at accuracy.
    """

    class Params(Manipulation.Params):
        sharpness: float = Field(3.0, gt=0.0, allow_inf_nan=False, description="factor on the permuted logits")

    permutation: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> None:
        flat = x.reshape(len(x), -1).astype(np.float64)
        means = np.array([flat[y == c].mean(axis=0) if (y == c).any() else np.zeros(flat.shape[1]) for c in range(classes)])
        norms = np.maximum(np.linalg.norm(means, axis=1), 1e-12)
        similarity = (means @ means.T) / np.outer(norms, norms)
        np.fill_diagonal(similarity, 1e6)  # never keep a class where it is
        _, self.permutation = linear_sum_assignment(similarity)

    def matrix(self, classes: int) -> np.ndarray:
        if self.permutation is None:
            raise RuntimeError("class_prior: fit() must run on the attacker's data before its map is asked for")
        out = np.zeros((classes, classes))
        out[np.arange(classes), self.permutation] = self.params.sharpness
        return out
