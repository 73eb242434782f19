"""Replicas under the orchestrator, with real processes: `COACH_REPLICAS=2` and
`TRAINING_REPLICAS=2` run two processes of each behind the service's one port, each listed,
probed on its own control port, restarted on its own; a bad replica count stops the
orchestrator before it starts anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import redis as sync_redis
import requests

from harness.fleet import Fleet
from harness.http import probe_json
from harness.polling import wait_for
from harness.processes import ROOT, pid_alive
from harness.redis_server import RedisServer
from shared.keys import Keys

pytestmark = pytest.mark.integration

SYSTEM = "/api/v1/system"


def answering_pids(url: str, attempts: int, want: set[int]) -> set[int]:
    """The pids that answer /health at `url`, each call on a new connection (urllib opens one
    per request), until every pid of `want` was seen or `attempts` calls were made."""
    seen: set[int] = set()
    for _ in range(attempts):  # bounded
        status, body = probe_json("GET", url + "/health", timeout=5.0)
        if status == 200:
            seen.add(body["pid"])
        if want <= seen:
            break
    return seen


def replicas_of(processes: dict[str, dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [p for p in processes.values() if p["service"] == service]


def test_replicas_share_the_port_are_probed_alone_and_restarted_alone(fleet: Fleet) -> None:
    fleet.start(
        "orchestrator",
        env={
            "ORCHESTRATOR_SERVICES": "training,meta,coach",
            "TRAINING_REPLICAS": "2",
            "COACH_REPLICAS": "2",
            # Kept-alive connections closed after 5 answers on average (100 by default), so
            # that one keep-alive client below reconnects often enough to be seen moving.
            "TOOLOO_CONN_RECYCLE": "5",
        },
    )
    orch = fleet["orchestrator"]
    wait_for(lambda: orch.get(f"{SYSTEM}/status")[1]["phase"] == "armed", "armed with replicas", 90)
    table = fleet.process_table()
    assert set(table) == {"training#1", "training#2", "meta", "coach#1", "coach#2"}
    # One process stays what it was: its service's name, probed on its port, no control port.
    assert table["meta"]["replica"] is None and table["meta"]["control_port"] is None
    for service in ("training", "coach"):
        replicas = replicas_of(table, service)
        pids = {p["pid"] for p in replicas}
        controls = {p["control_port"] for p in replicas}
        assert len(pids) == 2 and None not in pids, replicas
        assert len(controls) == 2 and None not in controls, replicas
        assert fleet.ports[service] not in controls
        assert all(p["port"] == fleet.ports[service] for p in replicas)
        assert all(p["state"] == "running" and p["healthy"] for p in replicas)
        # Each control port is answered by its own replica only.
        for p in replicas:
            status, body = probe_json("GET", f"http://127.0.0.1:{p['control_port']}/health")
            assert status == 200 and body["pid"] == p["pid"], (p, body)
            status, body = probe_json("GET", f"http://127.0.0.1:{p['control_port']}/ready")
            assert status == 200 and body["pid"] == p["pid"], (p, body)
            status, _ = probe_json("GET", f"http://127.0.0.1:{p['control_port']}/metrics")
            assert status == 200
        # Both answer on the shared port: new connections reach either.
        seen = answering_pids(fleet.url(service), 400, pids)
        assert seen == pids, (service, seen, pids)

        # The service's status from Redis: one part per live replica, as the table lists them.
        def listed(service: str = service, pids: set[int] = pids) -> dict[str, Any] | None:
            status, body = probe_json("GET", fleet.url(service) + "/replicas")
            live = {r["replica"]: r for r in body.get("replicas", [])} if status == 200 else {}
            return body if {r["pid"] for r in live.values()} == pids else None

        body = wait_for(listed, f"{service} replicas listed from Redis")
        assert body["service"] == service and body["count"] == 2
        by_name = {r["replica"]: r for r in body["replicas"]}
        assert set(by_name) == {p["name"] for p in replicas}
        for p in replicas:
            assert by_name[p["name"]]["pid"] == p["pid"]
            assert by_name[p["name"]]["control_port"] == p["control_port"]

    # The fleet-wide list, from the same heartbeats, on the orchestrator (and its gateway path).
    def fleet_listed() -> dict[str, Any] | None:
        status, body = orch.get(f"{SYSTEM}/replicas")
        assert status == 200, body
        counts = {name: part["count"] for name, part in body["services"].items()}
        return body if counts == {"training": 2, "meta": 1, "coach": 2} else None

    body = wait_for(fleet_listed, "every service's replicas listed by the orchestrator")
    assert {r["pid"] for r in body["services"]["meta"]["replicas"]} == {table["meta"]["pid"]}

    # One keep-alive client is not pinned to the replica that accepted its first connection:
    # the replicas close a kept-alive connection now and then, and its next one may land on
    # the other replica.
    training_pids = {p["pid"] for p in replicas_of(table, "training")}
    with requests.Session() as session:
        seen: set[int] = set()
        for _ in range(1000):  # bounded
            seen.add(session.get(fleet.url("training") + "/health", timeout=5).json()["pid"])
            if seen == training_pids:
                break
    assert seen == training_pids

    # A training round through the shared port works (the replicas share Redis, not memory).
    status, body = fleet.call("training", "POST", "/api/v1/training/round", {"learner": "default"})
    assert status == 200, body

    # kill -9 one coach replica: it alone is restarted, on the same control port; the other
    # keeps serving the shared port meanwhile.
    victim, other = table["coach#2"], table["coach#1"]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim["pid"]), "coach#2 gone")
    # Meanwhile every new connection to the shared port is answered (by the other, or by
    # coach#2 once it is back on a loaded machine), none lost with the killed process.
    answers = [probe_json("GET", fleet.url("coach") + "/health", timeout=5.0) for _ in range(5)]
    assert all(status == 200 for status, _ in answers), answers
    assert other["pid"] in {body["pid"] for _, body in answers}
    assert victim["pid"] not in {body["pid"] for _, body in answers}

    def restarted() -> dict[str, Any] | None:
        entry = fleet.process_table()["coach#2"]
        fresh = entry["pid"] not in (None, victim["pid"]) and entry["state"] == "running"
        return entry if fresh and entry["healthy"] else None

    entry = wait_for(restarted, "coach#2 restarted", 60)
    assert entry["restarts"] == 1 and entry["last_exit"]["code"] == -signal.SIGKILL
    assert entry["control_port"] == victim["control_port"]
    assert not pid_alive(victim["pid"])
    after = fleet.process_table()
    assert after["coach#1"]["pid"] == other["pid"] and after["coach#1"]["restarts"] == 0
    assert all(after[n]["restarts"] == 0 for n in ("training#1", "training#2", "meta"))
    status, body = probe_json("GET", f"http://127.0.0.1:{entry['control_port']}/health")
    assert status == 200 and body["pid"] == entry["pid"]
    assert answering_pids(fleet.url("coach"), 400, {other["pid"], entry["pid"]}) == {
        other["pid"],
        entry["pid"],
    }

    # An operator restart of one replica by its name (`#` encoded in the URL).
    status, body = orch.post(f"{SYSTEM}/services/training%231/restart")
    assert status == 200 and body["done"] is True, body
    assert body["process"]["name"] == "training#1" and body["process"]["restarts"] == 1
    assert fleet.process_table()["training#2"]["restarts"] == 0

    # Stopping the orchestrator stops every replica.
    children = [p["pid"] for p in fleet.process_table().values()]
    assert orch.stop() == 0
    assert not any(pid_alive(pid) for pid in children)


@pytest.mark.parametrize("value", ["0", "abc", "-1", "2.5", "17"])
def test_a_bad_replica_count_stops_the_orchestrator_before_it_starts_anything(
    fleet: Fleet, redis_server: RedisServer, prefix: str, value: str
) -> None:
    env = dict(fleet.env, COACH_REPLICAS=value)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "COACH_REPLICAS" in proc.stderr and "whole number from 1 to 16" in proc.stderr, (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    # Nothing was started, bound or written.
    for name in ("orchestrator", "training", "coach"):
        status, _ = probe_json("GET", fleet.url(name) + "/health", timeout=1.0)
        assert status == 0, name
    with sync_redis.Redis.from_url(redis_server.url) as client:
        assert client.exists(Keys(prefix).stream_system) == 0
        assert list(client.scan_iter(match=f"{prefix}:*", count=1000)) == []
