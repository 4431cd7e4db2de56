"""A party: its data, its model, and its small message-level interface.

``query`` / ``accept`` run once per peer (setup); each exchange epoch ``answer`` / ``receive``
carry predictions, then ``train`` and ``evaluate``. Nothing here knows about Ray: the same
class runs in a Ray actor (:mod:`testbed.cluster`) or in-process.

A malicious party also carries its **clean twin** (simulator only): a party with the same name,
so the same initialisation and data order, trained on the same peer guidance, but without any
poisoning or manipulation. Its plaintext answers on each querier's samples are the ground truth
of what an honest party in the attacker's place would have said; they travel to the querier's
:meth:`Party.audit` after the querier has filtered, and never into any training or filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from testbed.attackers import manipulation, success_probes
from testbed.config import Scenario
from testbed.datasets import load_data
from testbed.filters import Filter, PredictionView, combined_weights, rewritten
from testbed.logit_map import LogitMap
from testbed.memory import peak_rss_mb
from testbed.messages import AnswerTruth, Message
from testbed.metrics import Harm, answer_harm, filter_quality, kl_divergence, softmax, success_rate
from testbed.models import predict
from testbed.protocols.base import PartyInterface
from testbed.registry import FILTERS, MODELS, PROTOCOLS, SCHEMES
from testbed.result_schema import PREDICTED, Evaluation, FilterAudit
from testbed.schemes.base import SecureInferenceScheme
from testbed.seeding import derived_seed, seeded_rng
from testbed.shares import party_data
from testbed.timing import Stopwatch
from testbed.training import PeerGuidance, accuracy, make_optimizer, make_scheduler, train_epoch


def clean_twin_scenario(scenario: Scenario, name: str) -> Scenario:
    """``scenario`` with party ``name``'s attacks removed: the world of its clean twin."""
    party = scenario.parties[name].model_copy(update={"attacks": []})
    return scenario.model_copy(update={"parties": {**scenario.parties, name: party}})


class Party(PartyInterface):
    def __init__(self, scenario: Scenario, name: str, with_twin: bool = True):
        self.scenario = scenario
        self.name = name
        self.config = scenario.parties[name]
        loaded = self._loaded = load_data(scenario)
        share = self.share = party_data(scenario, loaded, only=name)[name]
        self.x, self.y = share.train.x, share.train.y
        self.queried = share.queried
        self.test = loaded.test
        self.probes = success_probes(scenario, loaded)
        self.classes = loaded.classes
        seed = derived_seed(scenario.seed, name)
        torch.manual_seed(seed)
        self.model = MODELS.create(self.config.model).build(loaded.input_shape, loaded.classes)
        self.optimizer = make_optimizer(self.model, scenario.training)
        self.scheduler = make_scheduler(self.optimizer, scenario.training, scenario.epochs)
        self.generator = torch.Generator().manual_seed(seed)
        self.manipulation = manipulation(scenario, name)
        self.querying: dict[str, SecureInferenceScheme] = {}  # peer -> our scheme side as querier
        self.answering: dict[str, SecureInferenceScheme] = {}  # peer -> our scheme side as responder
        self.guidance: dict[str, PeerGuidance] = {}
        self.filters: dict[str, list[Filter]] = {}  # peer -> this party's filters on that peer's answers
        self.received: dict[str, PredictionView] = {}  # peer -> its last answer as received, for the audit
        self.stopwatch = Stopwatch()
        # A party whose attacks all have rate 0 is its own clean twin.
        active = any(getattr(spec.params, "rate", 1) > 0 for spec in self.config.attacks)
        needs_twin = with_twin and active and PROTOCOLS.get(scenario.protocol.kind).audits_answers
        self.twin = Party(clean_twin_scenario(scenario, name), name, with_twin=False) if needs_twin else None
        self.target = next((spec.params.target for spec in self.config.attacks if getattr(spec.params, "target", None) is not None), None)
        self._peer_samples: dict[str, np.ndarray] = {}

    def _scheme(self, peer: str) -> SecureInferenceScheme:
        return SCHEMES.create(self.scenario.scheme, self.classes, derived_seed(self.scenario.seed, self.name, peer))

    # -- setup ---------------------------------------------------------------------------
    def query(self, peer: str) -> Message:
        """As querier: make keys for ``peer`` and the one-time payload with our samples."""
        scheme = self.querying[peer] = self._scheme(peer)
        with self._timed_scheme(scheme, "setup"):
            wire = scheme.setup(self.share.queried_x)
        return Message(self.name, peer, "query", 0, wire)

    def accept(self, message: Message) -> None:
        """As responder: keep the querier's (encrypted) samples for every later answer."""
        scheme = self.answering[message.sender] = self._scheme(message.sender)
        with self._timed_scheme(scheme, "setup"):
            scheme.load(message.wire)

    # -- every exchange epoch ------------------------------------------------------------
    def answer(self, peer: str, epoch: int) -> tuple[Message, AnswerTruth]:
        """As responder: our model's (possibly manipulated) logits on ``peer``'s samples.

        Returns the message and the simulator's ground truth: which answers were manipulated and
        what the clean twin would have answered.
        """
        scheme = self.answering[peer]
        n = scheme.sample_count
        with self._timed_scheme(scheme, "answer"):
            logit_map = self._logit_map(peer, epoch, n)
            logit_map = scheme.realizable(logit_map) if logit_map is not None else None
            wire = scheme.answer(self.model, logit_map)
        manipulated = logit_map.selected.copy() if logit_map is not None else np.zeros(n, dtype=bool)
        return Message(self.name, peer, "answer", epoch, wire), AnswerTruth(manipulated, self._twin_answer(peer), self.target)

    def _twin_answer(self, peer: str) -> np.ndarray | None:
        if self.twin is None:
            return None
        with self.stopwatch.timed("twin"):
            if peer not in self._peer_samples:  # the simulator may read what the querier sent
                self._peer_samples[peer] = party_data(self.scenario, self._loaded, only=peer)[peer].queried_x
            return predict(self.twin.model, self._peer_samples[peer])

    def _logit_map(self, peer: str, epoch: int, n: int) -> LogitMap | None:
        if self.manipulation is None:
            return None
        return self.manipulation.logit_map(n, self.classes, seeded_rng(self.scenario.seed, "manipulate", self.name, peer, epoch))

    def receive(self, message: Message) -> None:
        """As querier: decode ``message.sender``'s logits on our samples and filter them."""
        peer = message.sender
        scheme = self.querying[peer]
        with self._timed_scheme(scheme, "decode"):
            logits = scheme.decode(message.wire)
        with self.stopwatch.timed("filter"):
            if peer not in self.filters:  # one set per peer, kept: a filter may carry state across epochs
                self.filters[peer] = [FILTERS.create(spec) for spec in self.config.filters]
            filters = self.filters[peer]
            own = predict(self.model, self.share.queried_x) if filters else logits  # only filters read our own prediction
            view = self.received[peer] = PredictionView(logits, own, self.share.queried_y, self.scenario.training.temperature)
            self.guidance[peer] = self._guidance(rewritten(filters, view), combined_weights(filters, view))
            if self.twin is not None:  # the twin is guided exactly as we are
                self.twin.guidance[peer] = self.guidance[peer]

    def _guidance(self, logits: np.ndarray, weights: np.ndarray) -> PeerGuidance:
        """Guidance over all our samples from answers on the queried ones (weight 0 elsewhere)."""
        if len(self.queried) == len(self.y):
            return PeerGuidance(logits, weights)
        full_logits = np.zeros((len(self.y), logits.shape[1]), dtype=logits.dtype)
        full_weights = np.zeros(len(self.y), dtype=weights.dtype)
        full_logits[self.queried], full_weights[self.queried] = logits, weights
        return PeerGuidance(full_logits, full_weights)

    def audit(self, peer: str, truth: AnswerTruth) -> FilterAudit:
        """Simulator only: how our filters treated ``peer``'s last answer, against its clean twin.

        The truth arrives here from the driver after filtering and never reaches ``receive`` or ``train``.
        """
        view, filters = self.received[peer], self.filters[peer]
        full = self.guidance[peer]
        guidance = PeerGuidance(full.logits[self.queried], full.weights[self.queried])
        n = len(self.queried)
        if truth.twin_logits is None:
            harm, distilled = Harm.none(n), np.zeros(n)
        else:
            harm = answer_harm(view.peer_logits, truth.twin_logits, view.temperature, truth.target)
            twin_distilled = rewritten(filters, PredictionView(truth.twin_logits, view.own_logits, view.labels, view.temperature))
            distilled = kl_divergence(softmax(guidance.logits, view.temperature), softmax(twin_distilled, view.temperature))
        states = {key: value for f in filters for key, value in f.state().items()}
        return FilterAudit(**filter_quality(guidance.weights, harm, distilled), **states)

    @contextmanager
    def _timed_scheme(self, scheme: SecureInferenceScheme, phase: str) -> Iterator[None]:
        """Time the block as ``phase``, less what the scheme reports under its own phases."""
        with self.stopwatch.timed(phase):
            yield
        detail = scheme.timings()
        for key, seconds in detail.items():
            self.stopwatch.seconds[key] += seconds
        self.stopwatch.seconds[phase] -= sum(detail.values())
        for key, seconds in scheme.predicted_timings().items():
            self.stopwatch.seconds[PREDICTED + key] += seconds

    # -- local work ----------------------------------------------------------------------
    def train(self, use_peers: bool) -> float:
        if self.twin is not None:
            with self.stopwatch.timed("twin"):
                self.twin.train(use_peers)
        with self.stopwatch.timed("train"):
            guidance = list(self.guidance.values()) if use_peers else []
            loss = train_epoch(self.model, self.optimizer, self.x, self.y, guidance, self.scenario.training, self.generator)
            if self.scheduler is not None:
                self.scheduler.step()
            return loss

    def evaluate(self) -> Evaluation:
        with self.stopwatch.timed("evaluate"):
            by_attack = {key: success_rate(predict(self.model, probe.x).argmax(1), probe.target) for key, probe in self.probes.items()}
            return Evaluation(
                accuracy=accuracy(self.model, self.test.x, self.test.y),
                # One number only where it is unambiguous: with several targeted attacks, each has its own.
                asr=next(iter(by_attack.values())) if len(by_attack) == 1 else None,
                asr_by_attack=by_attack,
                peak_rss_mb=peak_rss_mb(),
            )

    def take_timings(self) -> dict[str, float]:
        return self.stopwatch.take()
