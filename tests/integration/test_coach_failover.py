"""Coach replicas as real processes on one Redis: two replicas split the shards and both coach;
a replica killed with SIGKILL has all its shards owned and coached again by the other; a replica
stalled (SIGSTOP) past its leases loses its shards and, resumed, cannot commit for them (its
fencing tokens are refused); and a training outage is reported and recovers by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
import redis as sync_redis

from harness.polling import wait_for
from harness.ports import free_port
from harness.processes import ServiceProcess
from shared.keys import Keys
from tests.integration.test_coach import COACH, create_learners, status

pytestmark = pytest.mark.integration

ROUNDS = "/api/v1/training/rounds"


def coach_status(proc: ServiceProcess) -> dict[str, Any]:
    code, body = proc.get(f"{COACH}/status")
    assert code == 200, body
    return body["status"]


def owned(proc: ServiceProcess) -> set[int]:
    return set(coach_status(proc)["replica"]["ownedShards"])


def second_coach(fleet) -> ServiceProcess:
    """Another coach process on a port of its own, same Redis (the orchestrator's replicas are
    not needed to run two)."""
    port = free_port()
    proc = ServiceProcess(
        "coach-2", "services.coach", port, dict(fleet.env, COACH_PORT=str(port)), fleet.log_dir
    )
    fleet.procs["coach-2"] = proc.start()
    proc.wait_ready()
    return proc


def coached_since(fleet, keys: Keys, shards: set[int], since_ms: int) -> set[int]:
    """The shards among `shards` with a learner coached since `since_ms`."""
    with sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True) as client:
        return {s for s in shards if client.zcount(keys.coach_coached(s), since_ms, "+inf")}


def start_two_coaches(fleet, keys: Keys) -> tuple[ServiceProcess, ServiceProcess, list[str]]:
    fleet.start("training", "coach")
    learners = learners_by_shard(keys, 96)
    create_learners(fleet, learners)
    first = fleet["coach"]
    # Nobody becomes ready (a learner that is ready leaves the queue): every shard keeps
    # coaching to do for the whole test.
    code, body = first.post(f"{COACH}/settings", {"minAvgMastery": 100, "maxBelow80": 0})
    assert code == 200, body
    first.post(f"{COACH}/fast-lane", {"intervalMs": 100, "batchSize": 50})
    first.post(f"{COACH}/start")
    return first, second_coach(fleet), learners


def learners_by_shard(keys: Keys, count: int) -> list[str]:
    """`count` learner ids, at least two in every shard (so every shard has coaching to do)."""
    ids = [f"k{i}" for i in range(count)]
    per_shard = {keys.shard_of(x) for x in ids}
    assert per_shard == set(keys.all_shards())
    return ids


def test_two_replicas_coach_and_a_killed_ones_shards_are_coached_again(fleet, keys):
    first, second, _ = start_two_coaches(fleet, keys)
    everything = set(keys.all_shards())

    # Both coach: the shards split between them, each coaching its own.
    wait_for(lambda: owned(first) and owned(second), timeout_s=20)
    split = wait_for(
        lambda: (a := owned(first)) | (b := owned(second)) == everything and not a & b and (a, b),
        timeout_s=20,
    )
    started = int(time.time() * 1000)
    for shards in split:
        wait_for(lambda s=shards: coached_since(fleet, keys, s, started) == s, timeout_s=30)
    assert coach_status(second)["replicas"] == 2

    # SIGKILL the first: no release, its leases lapse; the second owns and coaches them all.
    lost = owned(first)
    first.kill()
    wait_for(lambda: owned(second) == everything, timeout_s=20)
    after = int(time.time() * 1000)
    wait_for(lambda: coached_since(fleet, keys, lost, after) == lost, timeout_s=30)
    assert coach_status(second)["active"] is True


async def test_a_stalled_replica_cannot_commit_for_the_shards_it_lost(fleet, redis, keys):
    first, second, learners = start_two_coaches(fleet, keys)
    everything = set(keys.all_shards())
    wait_for(lambda: owned(first) and owned(first) | owned(second) == everything, timeout_s=20)

    stalled = coach_status(first)["replica"]["fences"]  # its tokens, shard -> token
    assert stalled
    os.kill(first.pid, signal.SIGSTOP)
    try:
        # Its leases lapse and the second takes every shard, each with a newer token.
        wait_for(lambda: owned(second) == everything, timeout_s=20)
        for shard, token in stalled.items():
            assert int(await redis.get(keys.coach_fence(int(shard)))) > token
    finally:
        os.kill(first.pid, signal.SIGCONT)

    # A commit carrying a token of the stalled tenure is refused, learner by learner, and
    # commits nothing: what the resumed replica's calls in flight get for the shards it lost
    # (the other replica goes on coaching the learner meanwhile, with its own token).
    shard, token = next(iter(stalled.items()))
    learner = next(x for x in learners if keys.shard_of(x) == int(shard))
    code, body = fleet["training"].post(
        ROUNDS, {"learners": [learner], "rounds_per_learner": 1, "fences": {shard: token}}
    )
    assert code == 200, body
    assert [(e["learner"], e["code"]) for e in body["errors"]] == [(learner, "fenced")]
    assert body["rounds"] == []
    # The current token commits (coaching stopped first, so that no tick races the learner).
    second.post(f"{COACH}/stop")
    await asyncio.sleep(1.0)
    current = int(await redis.get(keys.coach_fence(int(shard))))
    code, body = fleet["training"].post(
        ROUNDS, {"learners": [learner], "rounds_per_learner": 1, "fences": {shard: current}}
    )
    assert code == 200 and body["errors"] == [] and len(body["rounds"]) == 1, body

    # Resumed, it rejoins and takes a fair share again, with new tokens.
    second.post(f"{COACH}/start")
    wait_for(lambda: owned(first) and owned(first) | owned(second) == everything, timeout_s=20)
    regained = coach_status(first)["replica"]["fences"]
    for s, t in regained.items():
        assert s not in stalled or t > stalled[s]


async def test_training_outage_is_reported_and_coaching_resumes(fleet):
    fleet.start("training", "coach")
    create_learners(fleet, [f"o{i}" for i in range(40)])
    fleet["coach"].post(f"{COACH}/fast-lane", {"intervalMs": 100})
    fleet["coach"].post(f"{COACH}/start")
    wait_for(lambda: status(fleet)["roundsRun"] > 0)

    fleet["training"].stop()
    down = wait_for(lambda: (s := status(fleet))["outage"]["training"] and s)
    assert "training unavailable" in down["lastAction"]
    assert down["outage"]["training"]["since"] > 0
    assert fleet["coach"].alive and down["active"] is True
    # Boost during the outage: a clear upstream error, not a hang or a 500.
    code, body = fleet["coach"].post(f"{COACH}/boost", {"learner": "o1", "rounds": 2})
    assert code in (502, 504) and body["error"]["code"].startswith("upstream")

    fleet.start("training")
    back = wait_for(lambda: (s := status(fleet))["outage"]["training"] is None and s, timeout_s=20)
    wait_for(lambda: status(fleet)["roundsRun"] > back["roundsRun"])
