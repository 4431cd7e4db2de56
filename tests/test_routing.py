"""Under Ray, a message's payload goes from actor to actor through the object store: the driver
routes references and records sizes, and never holds a payload."""

from __future__ import annotations

import ray

from testbed.cluster import RayParties
from testbed.config import parse_scenario


def test_the_driver_holds_references_to_payloads_and_their_sizes_only(ray_local, tiny_raw):
    parties = RayParties(parse_scenario(tiny_raw))
    try:
        [query] = parties.gather("query", [("A", parties["A"].query("B"))])
        assert isinstance(query.wire.data, ray.ObjectRef)
        assert query.nbytes == len(ray.get(query.wire.data)) > 0  # the recorded size is the payload's
        parties.gather("accept", [("B", parties["B"].accept(query))])
        [(answer, truth)] = parties.gather("answer", [("B", parties["B"].answer("A", 1))])
        assert isinstance(answer.wire.data, ray.ObjectRef) and answer.nbytes == len(ray.get(answer.wire.data))
        parties.gather("receive", [("A", parties["A"].receive(answer))])  # the receiver fetched and decoded it
        assert parties.gather("audit", [("A", parties["A"].audit("B", truth))])[0] is not None
    finally:
        parties.close()
