"""A round is acknowledged only once a Redis replica has it (TOOLOO_COMMIT_WAIT_REPLICAS), against
a real training process on a real master with a real replica: with the replica paused (SIGSTOP)
the round answers 503 with Retry-After, a retry with the same Idempotency-Key is refused too
while the replica still lacks the commit, and answers the round (once) when it has it.

One master and one replica, not the cluster: training's commit script is not cluster-ready yet,
and WAIT behaves the same on a cluster master (tests/integration/test_cluster_pipelining.py)."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from harness.redis_server import RedisServer
from shared.history import decode as decode_history
from shared.keys import Keys

pytestmark = pytest.mark.integration

ROUND = "/api/v1/training/round"


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica").start()
    try:
        client = sync_redis.Redis(port=replica.port)
        client.replicaof("127.0.0.1", master.port)
        client.close()
        watch = sync_redis.Redis(port=master.port, decode_responses=True)

        def attached() -> bool:
            info = watch.info("replication")
            return int(info["connected_slaves"]) == 1 and info["slave0"]["state"] == "online"

        wait_for(attached, timeout_s=20, what="replica attached")
        watch.close()
        yield master, replica
    finally:
        if replica.proc is not None and replica.proc.poll() is None:
            replica.proc.send_signal(signal.SIGCONT)
        replica.stop()
        master.stop()


def _post(port: int, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{ROUND}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_a_round_a_replica_lacks_is_503_and_its_retry_answers_it_once_replicated(
    replicated: tuple[RedisServer, RedisServer], prefix: str, tmp_path: Path
):
    master, replica = replicated
    fleet = Fleet(
        master.url,
        prefix,
        tmp_path / "logs",
        {"TOOLOO_COMMIT_WAIT_REPLICAS": "1", "TOOLOO_COMMIT_WAIT_TIMEOUT_MS": "300"},
    )
    try:
        fleet.start("training")
        training = fleet["training"]
        training.post("/api/v1/training/start", {"learner": "wait-a"})
        status, _, first = _post(training.port, {"learner": "wait-a"}, "wait-test-0001")
        assert status == 200, first  # the replica is there: acknowledged

        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            status, headers, body = _post(training.port, {"learner": "wait-a"}, "wait-test-0002")
            assert status == 503, body
            assert headers.get("Retry-After") == "1"
            assert body["error"]["code"] == "not_replicated"
            # The same key again, the replica still paused, sent to another training process
            # (restarted here: fresh connections, whose own last write is none): the commit is
            # recorded (a replay, writing nothing), but not replicated, so still not acknowledged.
            training = fleet.restart("training")
            training.wait_ready()
            status, _, body = _post(training.port, {"learner": "wait-a"}, "wait-test-0002")
            assert status == 503, body
        finally:
            replica.proc.send_signal(signal.SIGCONT)

        answers: list[tuple[int, dict[str, Any]]] = []

        def acknowledged() -> bool:
            status, _, body = _post(training.port, {"learner": "wait-a"}, "wait-test-0002")
            answers.append((status, body))
            return status == 200

        wait_for(acknowledged, timeout_s=20, every_s=0.2, what="the retry acknowledged")
        body = answers[-1][1]
        assert body["result"]["replayed"] is True
        history = training.get("/api/v1/training/history?learner=wait-a&limit=10")[1]["history"]
        rounds = [h["round"] for h in history]
        # Two rounds: the first, and the one answered 503 and then replayed, once.
        assert rounds == [body["result"]["round"], first["result"]["round"]]
        # And the replica has it.
        time.sleep(0.2)
        mirror = sync_redis.Redis(port=replica.port, decode_responses=True)
        try:
            assert len(decode_history(mirror.get(Keys(prefix).learner_history("wait-a")))) == 2
        finally:
            mirror.close()
    finally:
        fleet.stop_all()
