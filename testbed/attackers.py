"""What each malicious party does: its attacks, fitted once per process on its clean share, the
manipulation it applies to its answers, and every targeted attack's success probe.

Everything here is a pure function of the scenario and its seed, so every process that needs an
attack (the attacker, and each party measuring the attack's success) rebuilds the same one.
"""

from __future__ import annotations

import functools

from attacks.base import Attack, PredictionManipulation, SuccessProbe
from testbed.config import Scenario
from testbed.datasets import LoadedData, load_data
from testbed.registry import ATTACKS
from testbed.seeding import seeded_rng
from testbed.splits import party_rows


def party_attacks(scenario: Scenario, name: str) -> list[Attack]:
    """Party ``name``'s attacks, each fitted on the party's clean share (:meth:`Attack.fit`)."""
    return _fitted_attacks(scenario.model_dump_json(), name)


# A fitted attack may have optimised a trigger for seconds; every process that needs it (the
# attacker, and each party measuring the attack's success) fits it once per scenario.
@functools.lru_cache(maxsize=8)
def _fitted_attacks(scenario_json: str, name: str) -> list[Attack]:
    scenario = Scenario.model_validate_json(scenario_json)
    specs = scenario.parties[name].attacks
    if not specs:
        return []
    loaded = load_data(scenario)
    index = party_rows(scenario, loaded)[name]
    attacks = [ATTACKS.create(spec) for spec in specs]
    for i, attack in enumerate(attacks):
        attack.fit(loaded.train.x[index], loaded.train.y[index], loaded.classes, seeded_rng(scenario.seed, "fit", name, i))
    return attacks


def manipulation(scenario: Scenario, party: str) -> PredictionManipulation | None:
    """The party's prediction manipulation, if any (validation allows at most one)."""
    return next((a for a in party_attacks(scenario, party) if isinstance(a, PredictionManipulation)), None)


def success_probe(scenario: Scenario, loaded: LoadedData) -> SuccessProbe | None:
    """The scenario's attack target: the first targeted attack of any malicious party."""
    return next(iter(success_probes(scenario, loaded).values()), None)


def success_probes(scenario: Scenario, loaded: LoadedData) -> dict[str, SuccessProbe]:
    """Every targeted attack's probe, keyed ``<attacker>/<attack kind>`` in the scenario's order
    (``#2``, ``#3`` mark a party's second and third attack of one kind): the keys of
    ``asr_by_attack`` in the results."""
    probes: dict[str, SuccessProbe] = {}
    for name in scenario.parties:
        for attack in party_attacks(scenario, name):
            probe = attack.success_probe(loaded.test.x, loaded.test.y)
            if probe is not None:
                key, n = f"{name}/{attack.kind}", 1
                while (key if n == 1 else f"{key}#{n}") in probes:
                    n += 1
                probes[key if n == 1 else f"{key}#{n}"] = probe
    return probes
