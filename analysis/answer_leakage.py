"""What SMuLe's exchanged answers give away: the responder's model, and membership.

Every exchange epoch the responder returns its logits on the querier's samples: over a run, a
labelled data set of the responder's model. Three measurements read it:

* :class:`ExchangeLog` wraps the protocol's per-epoch report: it keeps what each querier
  received from each responder and, as the simulator, what each model said on comparison sets
  (held-out samples, its own training samples) at the same moment. The answer received in epoch
  ``e`` was computed before that epoch's training, by the model as it stood when epoch ``e - 1``
  was reported, so it is paired with that snapshot.
* **extraction**: a student trained on the querier's samples with the answers as soft labels
  (no true labels), scored by its test-set agreement with the responder's final model, against
  the agreement the querier's own local model has with it anyway.
* **answer sequence**: do the answers over epochs on the querier's samples look like answers on
  the responder's members? They should not: the responder never trains on them. Compared with
  held-out samples by the mean confidence margin and by a cross-fitted classifier on the whole
  sequence, beside the same comparison for the responder's own training samples, where a
  difference is expected (the control that shows the test can see one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from analysis.membership import confidence_margin
from testbed.config import TrainingConfig
from testbed.metrics import softmax
from testbed.models import predict
from testbed.registry import MODELS, Spec
from testbed.training import make_optimizer

#: Folds of the cross-fitted sequence classifier: every sample is scored by a model that did not fit it.
FOLDS = 5


class ExchangeLog:
    """A report callback that records the answers and the simulator's snapshots; ``probes`` maps
    each party to the named sample sets its model is evaluated on after every epoch."""

    def __init__(self, parties, probes: dict[str, dict[str, np.ndarray]], warmup_epochs: int, report: Callable | None = None):
        self.parties, self.probes, self.warmup, self.report = parties, probes, warmup_epochs, report
        self.answers: dict[tuple[str, str], dict[int, np.ndarray]] = {}  # (querier, responder) -> epoch -> logits
        self.snapshots: dict[str, dict[int, dict[str, np.ndarray]]] = {}  # party -> epoch -> probe -> logits

    def __call__(self, epoch: int, metrics: dict) -> None:
        for name in self.parties.names:
            party = self.parties[name]
            if epoch > self.warmup:
                for peer, view in party.received.items():
                    if len(view.peer_logits) != len(party.y):
                        raise ValueError(f"party {name} asked {peer} about {len(view.peer_logits)} of its {len(party.y)} samples; the audit needs training.query_fraction: 1")
                    self.answers.setdefault((name, peer), {})[epoch] = view.peer_logits.copy()
            probes = self.probes.get(name, {})
            self.snapshots.setdefault(name, {})[epoch] = {key: predict(party.model, x) for key, x in probes.items()}
        if self.report is not None:
            self.report(epoch, metrics)

    def answer_epochs(self, querier: str, responder: str) -> list[int]:
        return sorted(self.answers.get((querier, responder), {}))

    def received(self, querier: str, responder: str) -> np.ndarray:
        """``(epochs, n, classes)``: the responder's answers on the querier's samples, in epoch order."""
        log = self.answers[(querier, responder)]
        return np.stack([log[e] for e in sorted(log)])

    def said(self, party: str, probe: str, epochs: list[int]) -> np.ndarray:
        """``(epochs, n, classes)``: what ``party``'s model said on ``probe`` when it answered in ``epochs``."""
        return np.stack([self.snapshots[party][e - 1][probe] for e in epochs])


def margin_sequence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(n, epochs)`` confidence margins on the true labels from ``(epochs, n, classes)`` logits."""
    return np.stack([confidence_margin(step, labels) for step in logits], axis=1)


def sequence_membership(raw: np.ndarray, calibrated: np.ndarray, is_member: np.ndarray, seed: int) -> dict[str, float]:
    """How well margin sequences ``(n, epochs)`` tell members from non-members: AUC of the mean raw
    margin, of the mean calibrated margin (each epoch's LiRA score against reference models that
    left the sample out, which removes per-sample difficulty), and of a logistic regression on
    the calibrated sequence, cross-fitted over :data:`FOLDS` stratified folds (fixed
    hyperparameters: nothing is tuned on the samples it scores)."""
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear"))
    fitted = cross_val_predict(classifier, calibrated, is_member, cv=folds, method="predict_proba")[:, 1]
    return {
        "auc_mean_margin": float(roc_auc_score(is_member, raw.mean(axis=1))),
        "auc_mean_calibrated": float(roc_auc_score(is_member, calibrated.mean(axis=1))),
        "auc_classifier": float(roc_auc_score(is_member, fitted)),
    }


def distil(model: Spec, x: np.ndarray, teacher_logits: np.ndarray, training: TrainingConfig, epochs: int, seed: int) -> nn.Sequential:
    """A student trained on ``x`` with the teacher's softmax as its only labels (KL at temperature
    1; the scenario's optimizer, learning rate and batch size): what the querier can rebuild."""
    torch.manual_seed(seed)
    student = MODELS.create(model).build(tuple(x.shape[1:]), teacher_logits.shape[1])
    optimizer = make_optimizer(student, training)
    generator = torch.Generator().manual_seed(seed)
    xs = torch.from_numpy(x)
    targets = torch.from_numpy(softmax(teacher_logits).astype(np.float32))
    student.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), training.batch_size):
            batch = order[start : start + training.batch_size]
            if len(batch) < 2:  # batch-norm cannot train on a single sample
                continue
            optimizer.zero_grad()
            F.kl_div(F.log_softmax(student(xs[batch]), dim=1), targets[batch], reduction="batchmean").backward()
            optimizer.step()
    return student


def agreement(a: nn.Module, b: nn.Module, x: np.ndarray) -> float:
    """Share of ``x`` on which the two models predict the same class."""
    return float((predict(a, x).argmax(1) == predict(b, x).argmax(1)).mean())


def mean_answer(answers: np.ndarray) -> np.ndarray:
    """Logits of the mean answered distribution over epochs: the whole sequence as one label set."""
    return np.log(np.clip(softmax(answers.reshape(-1, answers.shape[-1])).reshape(answers.shape).mean(axis=0), 1e-12, 1.0))
