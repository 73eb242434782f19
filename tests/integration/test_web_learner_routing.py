"""One learner, one training replica: with two training replicas behind the gateway, every request
of a learner lands on the same replica (the replicas' own request counters say so, not only the
gateway), different learners spread over both, and a learner's rounds go on when its replica is
stopped."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from harness.fleet import Fleet
from harness.http import probe_json
from harness.polling import wait_for

pytestmark = pytest.mark.integration

SYSTEM = "/api/v1/system"
ROUND = "/api/v1/training/round"
REPLICA_HEADER = "X-Upstream-Replica"
ROUND_COUNTER = re.compile(
    r'^tooloo_http_requests_total\{(?=[^}]*route="/api/v1/training/round")'
    r'(?=[^}]*method="POST")[^}]*\} (\S+)$',
    re.M,
)


def rounds_served(control_port: int) -> int:
    """Round requests this one replica handled, from its own /metrics on its control port."""
    response = requests.get(f"http://127.0.0.1:{control_port}/metrics", timeout=5)
    response.raise_for_status()
    return int(sum(float(v) for v in ROUND_COUNTER.findall(response.text)))


def training_replicas(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {n: p for n, p in fleet.process_table().items() if p["service"] == "training"}


def round_via_gateway(fleet: Fleet, learner: str) -> tuple[int, dict[str, Any], str | None]:
    response = requests.post(fleet.url("web") + ROUND, json={"learner": learner}, timeout=10)
    return response.status_code, response.json(), response.headers.get(REPLICA_HEADER)


def test_one_learner_lands_on_one_replica_and_survives_its_stop(fleet: Fleet) -> None:
    fleet.start(
        "orchestrator",
        env={"ORCHESTRATOR_SERVICES": "training,web", "TRAINING_REPLICAS": "2"},
    )
    orch = fleet["orchestrator"]

    def both_announced() -> dict[str, Any] | None:
        status, body = probe_json("GET", fleet.url("training") + "/replicas")
        replicas = body.get("replicas", []) if status == 200 else []
        urls = [r.get("api_url") for r in replicas]
        return body if len(replicas) == 2 and all(urls) and len(set(urls)) == 2 else None

    wait_for(both_announced, "both training replicas announce an API port of their own", 90)
    wait_for(lambda: probe_json("GET", fleet.url("web") + "/health")[0] == 200, "web answers", 60)
    table = training_replicas(fleet)
    assert set(table) == {"training#1", "training#2"}
    controls = {name: p["control_port"] for name, p in table.items()}

    # The gateway learns the replicas from their heartbeats within a second; until it has, the
    # shared port serves (no header). A started learner is needed for rounds.
    learner = "routed-solo"
    status, body = fleet.call("web", "POST", "/api/v1/training/start", {"learner": learner})
    assert status == 200, body
    wait_for(lambda: round_via_gateway(fleet, learner)[2], "the gateway routes by learner", 30)

    before = {name: rounds_served(port) for name, port in controls.items()}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: round_via_gateway(fleet, learner), range(48)))
    assert all(status == 200 for status, _, _ in answers), answers[:3]
    named = {replica for _, _, replica in answers}
    assert len(named) == 1 and None not in named, named
    home = named.pop()
    assert home in controls
    other = next(name for name in controls if name != home)
    after = {name: rounds_served(port) for name, port in controls.items()}
    # The replicas' own counters: every one of the 48 rounds was handled by the learner's home.
    assert after[home] - before[home] == 48, (before, after)
    assert after[other] - before[other] == 0, (before, after)
    ids = {body["result"]["round"] for _, body, _ in answers}
    assert len(ids) == 48  # each request its own round, coalesced or not

    # Other learners spread over both replicas (rendezvous hashing over the two).
    others = [f"routed-{i:02d}" for i in range(16)]
    for name in others:
        status, body = fleet.call("web", "POST", "/api/v1/training/start", {"learner": name})
        assert status == 200, body
    homes = {name: round_via_gateway(fleet, name)[2] for name in others}
    assert set(homes.values()) == set(controls), homes
    # ... and each keeps its replica.
    for name in others[:4]:
        assert round_via_gateway(fleet, name)[2] == homes[name]

    # The learner's replica is stopped by the operator: its rounds go on, on the other replica.
    status, state = fleet.call("web", "GET", f"/api/v1/learners/{learner}")
    assert status == 200, state
    rounds_before = state["learner"]["rounds"]
    status, body = orch.post(f"{SYSTEM}/services/{home.replace('#', '%23')}/stop")
    assert status == 200 and body["done"] is True, body
    for _ in range(10):
        status, body, replica = round_via_gateway(fleet, learner)
        assert status == 200, body
        assert replica in (other, None), replica
    status, state = fleet.call("web", "GET", f"/api/v1/learners/{learner}")
    assert status == 200 and state["learner"]["rounds"] == rounds_before + 10, state
