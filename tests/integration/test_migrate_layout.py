"""A real `python -m shared.migrate_layout` killed (SIGKILL) while it moves learners, then run
again: every learner is in its shard once, with its state, and the counters are whole."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from harness.processes import ROOT
from harness.redis_server import RedisServer
from shared import fleet_totals
from shared.keys import Keys, LegacyKeys
from shared.learner_state import LearnerState, encode
from tests.unit.test_migrate_layout import REGIONS, Legacy

pytestmark = pytest.mark.integration


def test_a_killed_migration_process_resumes(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    old = LegacyKeys(prefix)
    total = 20_000

    async def fill() -> None:
        r = Redis.from_url(redis_server.url, decode_responses=True)
        legacy = Legacy(r, prefix)
        for start in range(0, total, 1000):
            async with r.pipeline(transaction=False) as pipe:
                for i in range(start, start + 1000):
                    learner = f"k{i}"
                    state = LearnerState(
                        id=learner, seed=i, region=REGIONS[i % 3], created=1.0, active=True
                    )
                    await legacy.create(
                        keys=[old.learner_state(learner), old.learners_index, old.learners_seq,
                              old.learners_regions, old.coach("queue")],
                        args=[learner, encode(state), REGIONS[i % 3], 1],
                        client=pipe,
                    )  # fmt: skip
                await pipe.execute()
        await r.set(old.rounds_seq, 777)
        await r.aclose()

    asyncio.run(fill())
    env = {**os.environ, "REDIS_URL": redis_server.url, "TOOLOO_REDIS_PREFIX": prefix}
    cmd = [sys.executable, "-m", "shared.migrate_layout"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if client.zcard(old.learners_index) < total - 2000:  # some batches moved
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = client.zcard(old.learners_index)
    assert 0 < left < total, f"the kill did not land half-way ({left} of {total} left)"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migrated" in done.stdout
    keys = Keys(prefix)
    totals = fleet_totals.read_totals_sync(client, keys)
    assert totals.learners == total and totals.rounds == 777
    assert totals.regions == {
        r: total // 3 + (1 if i < total % 3 else 0) for i, r in enumerate(REGIONS)
    }
    ids = fleet_totals.learner_ids_sync(client, keys)
    assert len(ids) == len(set(ids)) == total
    for i in range(0, total, 997):
        assert orjson.loads(client.hget(keys.learner_state(f"k{i}"), "s"))["sd"] == i
    assert client.zcard(old.learners_index) == 0 and not client.exists(old.rounds_seq)
    client.close()
