"""Replicas without processes: the replica counts and their refusals, the records the
orchestrator keeps for them, the sockets it hands down, and the replica list in a real Redis."""

from __future__ import annotations

import os
import socket

import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from orchestrator.app import _records
from orchestrator.fleet_state import FleetState, ProcState
from orchestrator.listeners import Listeners
from orchestrator.service_table import DEFAULT_TABLE
from orchestrator.settings import OrchestratorSettings, settings_error
from shared.clock import now_ms
from shared.keys import Keys
from shared.replicas import (
    PRUNE_AFTER_TTLS,
    PRUNE_EVERY_BEATS,
    ReplicaRecord,
    ReplicaRegistry,
    inherited_listener,
)


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> OrchestratorSettings:
    for name in ("TRAINING", "META", "COACH", "REPORTS", "WEB"):
        monkeypatch.delenv(f"{name}_REPLICAS", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CONTROL_PORT_BASE", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_MANAGE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return OrchestratorSettings()


def test_replica_counts_default_to_one_and_accept_whole_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings(monkeypatch, COACH_REPLICAS="3", TRAINING_REPLICAS=" 16 ")
    assert [s.replicas_of(n) for n in ("training", "meta", "coach", "reports", "web")] == [
        16,
        1,
        3,
        1,
        1,
    ]
    assert s.replicas_of("orchestrator") == 1  # not replicated


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "2.0", "1e1", "true", "17", "+2"])
def test_a_bad_replica_count_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(monkeypatch, WEB_REPLICAS=value)
    message = settings_error(caught.value)
    assert message.startswith("WEB_REPLICAS=")
    assert "whole number from 1 to 16" in message


def test_control_ports_are_chosen_by_the_os_or_laid_out_per_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings(monkeypatch).control_port_for("coach", 2) == 0
    s = settings(monkeypatch, ORCHESTRATOR_CONTROL_PORT_BASE="9100")
    assert s.control_port_for("training", 1) == 9100
    assert s.control_port_for("training", 16) == 9115
    assert s.control_port_for("coach", 2) == 9100 + 2 * 16 + 1
    with pytest.raises(ValidationError):
        settings(monkeypatch, ORCHESTRATOR_CONTROL_PORT_BASE="65500")


def test_records_name_replicas_only_when_there_are_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings(monkeypatch, COACH_REPLICAS="2")
    records = _records(s, DEFAULT_TABLE)
    names = [r.name for r in records]
    assert names == ["training", "meta", "coach#1", "coach#2", "reports", "web"]
    assert all(r.port == s.port_of(r.service) for r in records)
    state = FleetState("manage", records, [])
    coach = state.replicas_of("coach")
    assert [r.replica for r in coach] == [1, 2]
    # The service answers while any replica does; it is given up only when all are.
    coach[0].state = ProcState.RUNNING
    coach[1].state = ProcState.FAILED
    assert state.service_up("coach") and not state.service_given_up("coach")
    coach[0].state = ProcState.STOPPED
    assert not state.service_up("coach") and state.service_given_up("coach")
    view = coach[1].view()
    assert view["name"] == "coach#2" and view["service"] == "coach" and view["replica"] == 2
    # In observe mode the platform runs the replicas: one record per service, as before.
    observe = _records(
        settings(monkeypatch, COACH_REPLICAS="2", ORCHESTRATOR_MANAGE="false"), DEFAULT_TABLE
    )
    assert [r.name for r in observe] == ["training", "meta", "coach", "reports", "web"]


def test_listeners_bind_once_and_refuse_a_taken_port() -> None:
    listeners = Listeners("127.0.0.1")
    try:
        first = listeners.get("coach", 0)
        assert listeners.get("coach", 0) is first  # kept, not bound again
        port = Listeners.port_of(first)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            Listeners("127.0.0.1").get("coach", port)
        # What a replica does with the descriptor it inherits.
        dup = os.dup(first.fileno())
        inherited = inherited_listener(dup, "TOOLOO_LISTEN_FD")
        assert inherited.getsockname()[1] == port
        inherited.close()
    finally:
        listeners.close_all()


def test_a_descriptor_that_is_not_a_listening_socket_is_refused(tmp_path: object) -> None:
    with socket.socket() as plain, pytest.raises(SystemExit, match="not a listening TCP socket"):
        inherited_listener(os.dup(plain.fileno()), "TOOLOO_LISTEN_FD")
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(SystemExit, match="TOOLOO_CONTROL_FD"):
            inherited_listener(read_end, "TOOLOO_CONTROL_FD")
    finally:
        os.close(write_end)


def registry(redis: Redis, keys: Keys, name: str, pid: int) -> ReplicaRegistry:
    me = ReplicaRecord(replica=name, pid=pid, host="h", control_port=9000 + pid, started_ms=1)
    return ReplicaRegistry(redis, keys, "coach", me, heartbeat_s=1.0, ttl_s=5.0)


async def test_live_replicas_are_listed_and_the_dead_age_out(redis: Redis, keys: Keys) -> None:
    one, two = registry(redis, keys, "coach#1", 1), registry(redis, keys, "coach#2", 2)
    await one.beat()
    await two.beat()
    live = await one.live()
    assert [(r["replica"], r["pid"], r["control_port"]) for r in live] == [
        ("coach#1", 1, 9001),
        ("coach#2", 2, 9002),
    ]
    assert all(r["age_ms"] >= 0 for r in live)
    # A replica killed 6 s ago (its last heartbeat) is past the 5 s TTL: not listed.
    stale = {"replica": "coach#3", "pid": 3, "last_seen_ms": now_ms() - 6_000}
    await redis.hset(keys.replicas("coach"), "coach#3", orjson.dumps(stale))
    await redis.hset(keys.replicas("coach"), "junk", "not json")
    assert [r["replica"] for r in await two.live()] == ["coach#1", "coach#2"]
    # One stopped cleanly leaves at once.
    await two.leave()
    assert [r["replica"] for r in await one.live()] == ["coach#1"]
    assert 0 < await redis.pttl(keys.replicas("coach")) <= 5_000 * PRUNE_AFTER_TTLS


async def test_long_dead_records_are_pruned_by_the_heartbeat(redis: Redis, keys: Keys) -> None:
    key = keys.replicas("coach")
    long_dead = {
        "replica": "old",
        "pid": 7,
        "last_seen_ms": now_ms() - 5_000 * PRUNE_AFTER_TTLS - 1,
    }
    recent = {"replica": "recent", "pid": 8, "last_seen_ms": now_ms() - 6_000}
    await redis.hset(key, mapping={"old": orjson.dumps(long_dead), "recent": orjson.dumps(recent)})
    one = registry(redis, keys, "coach#1", 1)
    for _ in range(PRUNE_EVERY_BEATS):
        await one.beat()
    assert sorted(await redis.hkeys(key)) == ["coach#1", "recent"]


def test_compose_scales_every_service_and_has_a_cluster_profile() -> None:
    import yaml

    from harness.processes import ROOT

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    # Only web publishes to the host (a range, so that web scales too): nothing else clashes.
    assert [name for name, s in services.items() if s.get("ports")] == ["web"]
    nodes = [n for n, s in services.items() if "cluster" in s.get("profiles", [])]
    assert nodes == ["redis-node-1", "redis-node-2", "redis-node-3", "redis-cluster-init"]
    for node in nodes[:3]:
        assert "--cluster-enabled yes" in services[node]["command"][-1]
    init = services["redis-cluster-init"]
    assert (
        "--cluster create" in init["command"][-1] and "--cluster-replicas 0" in init["command"][-1]
    )
    assert set(init["depends_on"]) == set(nodes[:3])
    # The fleet's services do not depend on the profile's containers (absent without it).
    for name in ("training", "meta", "coach", "reports", "orchestrator", "web"):
        assert not set(services[name].get("depends_on", {})) & set(nodes), name


def test_reports_replicas_read_the_streams_under_names_of_their_own() -> None:
    from services.reports.consumer import consumer_name

    host = socket.gethostname()
    assert consumer_name(3008) == f"{host}:3008"  # a single process: as before
    assert consumer_name(3008, "reports#1") == f"{host}:3008:reports#1"
    assert consumer_name(3008, "reports#1") != consumer_name(3008, "reports#2")
