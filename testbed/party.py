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

import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from testbed.config import Scenario
from testbed.filters import FILTERS, Filter, PredictionView, combined_weights, rewritten
from testbed.messages import Message
from testbed.metrics import Harm, answer_harm, filter_quality, kl_divergence, softmax, success_rate
from testbed.models import MODELS
from testbed.population import load_data, manipulation, party_data, seeded_rng, success_probe
from testbed.schemes.base import SCHEMES, LogitMap, SecureInferenceScheme
from testbed.training import PeerGuidance, accuracy, make_optimizer, predict, train_epoch

T = TypeVar("T")


@dataclass(frozen=True)
class AnswerTruth:
    """Simulator ground truth about one answer, for the querier's audit only."""

    manipulated: np.ndarray  # bool (n,): the responder's manipulation touched these answers
    twin_logits: np.ndarray | None  # the clean twin's answer; None for an honest responder
    target: int | None  # the responder's attack target, if its attack has one


def clean_twin_scenario(scenario: Scenario, name: str) -> Scenario:
    """``scenario`` with party ``name``'s attacks removed: the world of its clean twin."""
    party = scenario.parties[name].model_copy(update={"attacks": []})
    return scenario.model_copy(update={"parties": {**scenario.parties, name: party}})


class Party:
    def __init__(self, scenario: Scenario, name: str, with_twin: bool = True):
        self.scenario = scenario
        self.name = name
        self.config = scenario.parties[name]
        loaded = self._loaded = load_data(scenario)
        data = party_data(scenario, loaded, only=name)[name]
        self.x, self.y = data.train.x, data.train.y
        self.test = loaded.test
        self.probe = success_probe(scenario, loaded)
        self.classes = loaded.classes
        seed = zlib.crc32(f"{scenario.seed}/{name}".encode())
        torch.manual_seed(seed)
        self.model = MODELS.create(self.config.model).build(loaded.input_shape, loaded.classes)
        self.optimizer = make_optimizer(self.model, scenario.training)
        self.generator = torch.Generator().manual_seed(seed)
        self.manipulation = manipulation(scenario, name)
        self.querying: dict[str, SecureInferenceScheme] = {}  # peer -> our scheme side as querier
        self.answering: dict[str, SecureInferenceScheme] = {}  # peer -> our scheme side as responder
        self.guidance: dict[str, PeerGuidance] = {}
        self.filters: dict[str, list[Filter]] = {}  # peer -> this party's filters on that peer's answers
        self.received: dict[str, PredictionView] = {}  # peer -> its last answer as received, for the audit
        self.seconds: dict[str, float] = defaultdict(float)
        # A party whose attacks all have rate 0 is its own clean twin.
        active = any(getattr(spec.params, "rate", 1) > 0 for spec in self.config.attacks)
        needs_twin = with_twin and active and scenario.protocol.kind == "smule"
        self.twin = Party(clean_twin_scenario(scenario, name), name, with_twin=False) if needs_twin else None
        self.target = next((spec.params.target for spec in self.config.attacks if getattr(spec.params, "target", None) is not None), None)
        self._peer_samples: dict[str, np.ndarray] = {}

    def _scheme(self, peer: str) -> SecureInferenceScheme:
        return SCHEMES.create(self.scenario.scheme, self.classes, zlib.crc32(f"{self.scenario.seed}/{self.name}/{peer}".encode()))

    # -- setup ---------------------------------------------------------------------------
    def query(self, peer: str) -> Message:
        """As querier: make keys for ``peer`` and the one-time payload with our samples."""
        start = time.perf_counter()
        scheme = self.querying[peer] = self._scheme(peer)
        wire = scheme.setup(self.x)
        self._add_timings(scheme, time.perf_counter() - start, "setup")
        return Message(self.name, peer, "query", 0, wire)

    def accept(self, message: Message) -> None:
        """As responder: keep the querier's (encrypted) samples for every later answer."""
        start = time.perf_counter()
        scheme = self.answering[message.sender] = self._scheme(message.sender)
        scheme.load(message.wire)
        self._add_timings(scheme, time.perf_counter() - start, "setup")

    # -- every exchange epoch ------------------------------------------------------------
    def answer(self, peer: str, epoch: int) -> tuple[Message, AnswerTruth]:
        """As responder: our model's (possibly manipulated) logits on ``peer``'s samples.

        Returns the message and the simulator's ground truth: which answers were manipulated and
        what the clean twin would have answered.
        """
        start = time.perf_counter()
        scheme = self.answering[peer]
        n = scheme.sample_count
        logit_map = self._logit_map(peer, epoch, n)
        wire = scheme.answer(self.model, logit_map)
        self._add_timings(scheme, time.perf_counter() - start, "answer")
        manipulated = logit_map.selected.copy() if logit_map is not None else np.zeros(n, dtype=bool)
        return Message(self.name, peer, "answer", epoch, wire), AnswerTruth(manipulated, self._twin_answer(peer), self.target)

    def _twin_answer(self, peer: str) -> np.ndarray | None:
        if self.twin is None:
            return None
        start = time.perf_counter()
        if peer not in self._peer_samples:  # the simulator may read the querier's plaintext samples
            self._peer_samples[peer] = party_data(self.scenario, self._loaded, only=peer)[peer].train.x
        logits = predict(self.twin.model, self._peer_samples[peer])
        self.seconds["twin"] += time.perf_counter() - start
        return logits

    def _logit_map(self, peer: str, epoch: int, n: int) -> LogitMap | None:
        if self.manipulation is None:
            return None
        return self.manipulation.logit_map(n, self.classes, seeded_rng(self.scenario.seed, "manipulate", self.name, peer, epoch))

    def receive(self, message: Message) -> None:
        """As querier: decode ``message.sender``'s logits on our samples and filter them."""
        start = time.perf_counter()
        peer = message.sender
        scheme = self.querying[peer]
        logits = scheme.decode(message.wire)
        self._add_timings(scheme, time.perf_counter() - start, "decode")
        start = time.perf_counter()
        filters = self.filters.setdefault(peer, [FILTERS.create(spec) for spec in self.config.filters])
        own = predict(self.model, self.x) if filters else logits  # only filters read our own prediction
        view = self.received[peer] = PredictionView(logits, own, self.y, self.scenario.training.temperature)
        self.guidance[peer] = PeerGuidance(rewritten(filters, view), combined_weights(filters, view))
        if self.twin is not None:  # the twin is guided exactly as we are
            self.twin.guidance[peer] = self.guidance[peer]
        self.seconds["filter"] += time.perf_counter() - start

    def audit(self, peer: str, truth: AnswerTruth) -> dict[str, float]:
        """Simulator only: how our filters treated ``peer``'s last answer, against its clean twin.

        The truth arrives here from the driver after filtering and never reaches ``receive`` or ``train``.
        """
        view, guidance, filters = self.received[peer], self.guidance[peer], self.filters[peer]
        if truth.twin_logits is None:
            harm, distilled = Harm.none(len(self.y)), np.zeros(len(self.y))
        else:
            harm = answer_harm(view.peer_logits, truth.twin_logits, view.temperature, truth.target)
            twin_distilled = rewritten(filters, PredictionView(truth.twin_logits, view.own_logits, self.y, view.temperature))
            distilled = kl_divergence(softmax(guidance.logits, view.temperature), softmax(twin_distilled, view.temperature))
        quality = filter_quality(guidance.weights, harm, distilled)
        for f in filters:
            quality.update(f.state())
        return quality

    def _add_timings(self, scheme: SecureInferenceScheme, total: float, phase: str) -> None:
        detail = scheme.timings()
        for key, seconds in detail.items():
            self.seconds[key] += seconds
        self.seconds[phase] += total - sum(detail.values())

    def apply(self, step: Callable[..., T], *args: Any) -> T:
        """Run ``step(self, *args)`` where this party lives: a protocol's own step (FedAvg's
        averaging, the joint union) keeps its code in the protocol and works on the party's state."""
        return step(self, *args)

    # -- local work ----------------------------------------------------------------------
    def train(self, use_peers: bool) -> float:
        if self.twin is not None:
            start = time.perf_counter()
            self.twin.train(use_peers)
            self.seconds["twin"] += time.perf_counter() - start
        start = time.perf_counter()
        guidance = list(self.guidance.values()) if use_peers else []
        loss = train_epoch(self.model, self.optimizer, self.x, self.y, guidance, self.scenario.training, self.generator)
        self.seconds["train"] += time.perf_counter() - start
        return loss

    def evaluate(self) -> dict[str, float | None]:
        start = time.perf_counter()
        result = {
            "accuracy": accuracy(self.model, self.test.x, self.test.y),
            "asr": None if self.probe is None else success_rate(predict(self.model, self.probe.x).argmax(1), self.probe.target),
        }
        self.seconds["evaluate"] += time.perf_counter() - start
        return result

    def take_timings(self) -> dict[str, float]:
        """Seconds per phase since the last call."""
        out, self.seconds = dict(self.seconds), defaultdict(float)
        return out
