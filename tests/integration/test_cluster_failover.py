"""kill -9 of a Redis Cluster master under load: the fleet (training, meta, coach, reports) keeps
every acknowledged round and counts each exactly once.

The test runs on a cluster of its own (3 masters + 3 replicas in its tmp dir, on free ports), not
the session's `redis_cluster`: a cluster left broken by a failed failover cannot then affect other
tests, at the price of one more cluster start (a few seconds).

Learners in every shard get rounds from client threads, each round with an Idempotency-Key and
retried with the same key on a 5xx or no answer (bounded), while the coach coaches them too. One
master is killed -9. With WAIT on (the fleet's default on a cluster whose masters all have a
replica) the promoted replica has no replica of its own, so rounds of its shards answer 503
`not_replicated` until the killed node is started again and rejoins as its replica: by design.
Then rounds are served again for every learner, every round answered 200 is in its learner's
history exactly once, and reports' rounds total equals the sum of the shards' round counters once
it has caught up. The only bounds are generous deadlines, no timing is asserted.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.fleet import Fleet
from harness.http import probe_json
from harness.polling import wait_for
from harness.redis_clients import SyncRedis, sync_client
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from shared import history
from shared.keys import Keys

pytestmark = pytest.mark.integration

ROUND = "/api/v1/training/round"
COACH = "/api/v1/auto-coach"
THREADS = 4
RETRY_FOR_S = 90.0  # a retried round gives up after this (a failover plus a node restart)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", ports_from(free_cluster_base()))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def learners_in_every_shard(keys: Keys) -> list[str]:
    """One learner id per shard (the first `f<i>` that lands in it)."""
    by_shard: dict[int, str] = {}
    for i in range(100_000):  # bounded: crc32 spreads ids evenly, a few dozen suffice
        by_shard.setdefault(keys.shard_of(f"f{i}"), f"f{i}")
        if len(by_shard) == keys.shards:
            break
    return [by_shard[s] for s in sorted(by_shard)]


class Rounds:
    """Client threads posting rounds for their learners until told to stop."""

    def __init__(self, fleet: Fleet, learners: list[str]) -> None:
        self.fleet = fleet
        self.learners = learners
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, float]] = []  # (learner, round id, monotonic time)
        self.refused: dict[int, int] = {}  # status -> answers retried
        self.gave_up = 0
        self.threads = [
            threading.Thread(target=self._run, args=(learners[i::THREADS],), daemon=True)
            for i in range(THREADS)
        ]

    def __enter__(self) -> Rounds:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=RETRY_FOR_S + 30)

    def _run(self, mine: list[str]) -> None:
        for n in range(100_000):  # bounded; stops when told
            if self.stop.is_set():
                return
            self._one(mine[n % len(mine)])

    def _one(self, learner: str) -> None:
        """One round, retried with the same Idempotency-Key until answered 200 (or a 4xx, or
        the bound)."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + RETRY_FOR_S
        while time.monotonic() < deadline:  # bounded
            status, body = probe_json(
                "POST",
                self.fleet.url("training") + ROUND,
                {"learner": learner},
                timeout=15,
                headers=headers,
            )
            if status == 200:
                with self.lock:
                    self.acked.append((learner, int(body["result"]["round"]), time.monotonic()))
                return
            if 400 <= status < 500:
                raise AssertionError(f"round for {learner} answered {status}: {body}")
            with self.lock:
                self.refused[status] = self.refused.get(status, 0) + 1
            time.sleep(0.1)
        with self.lock:
            self.gave_up += 1

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def served_since(self, since: float) -> set[str]:
        with self.lock:
            return {learner for learner, _, at in self.acked if at > since}


def history_ids(r: SyncRedis, keys: Keys, learner: str) -> list[int]:
    return [int(e["round"]) for e in history.decode(r.get(keys.learner_history(learner)))]


def committed(r: SyncRedis, keys: Keys) -> int:
    return sum(int(r.get(keys.rounds_seq(s)) or 0) for s in keys.all_shards())


def reports_total(fleet: Fleet) -> int:
    status, body = fleet["reports"].get("/api/v1/reports/status")
    assert status == 200, body
    return int(body["status"]["rounds_total"])


def master_ports(cluster: LocalCluster) -> list[int]:
    masters = []
    for port in cluster.ports:
        with contextlib.suppress(Exception), contextlib.closing(cluster.admin(port, 1.0)) as node:
            if node.info("replication").get("role") == "master":
                masters.append(port)
    return masters


def test_a_master_killed_under_load_loses_and_repeats_no_acknowledged_round(
    own_cluster: LocalCluster, prefix: str, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    # Histories long enough to hold every round of the run (the client's and the coach's).
    fleet = Fleet(own_cluster.url, prefix, tmp_path / "logs", {"TRAINING_HISTORY_LIMIT": "10000"})
    r = sync_client(own_cluster.url)
    try:
        fleet.start("training", "meta", "coach", "reports")
        learners = learners_in_every_shard(keys)
        for learner in learners:
            status, body = fleet["training"].post("/api/v1/training/start", {"learner": learner})
            assert status == 200, body
        coach = fleet["coach"]
        assert coach.post(f"{COACH}/fast-lane", {"enable": True, "intervalMs": 200})[0] == 200
        assert coach.post(f"{COACH}/start")[0] == 200

        with Rounds(fleet, learners) as rounds:
            wait_for(lambda: rounds.count() >= 100, timeout_s=60, what="rounds flowing")
            victim = master_ports(own_cluster)[0]
            own_cluster.signal_node(victim, signal.SIGKILL)
            # The replica takes over; its shards answer 503 not_replicated until it has a
            # replica again: the killed node, started again, rejoins as one.
            wait_for(
                lambda: len(master_ports(own_cluster)) == own_cluster.masters,
                timeout_s=60,
                what="a replica promoted",
            )
            own_cluster.start(timeout_s=90)
            back = time.monotonic()
            wait_for(
                lambda: rounds.served_since(back) == set(learners),
                timeout_s=90,
                what="rounds served again for every learner",
            )
        assert rounds.gave_up == 0, rounds.refused
        assert all(not t.is_alive() for t in rounds.threads)

        # Every acknowledged round is in its learner's history exactly once, and no round id
        # appears twice in any history (the coach's rounds included).
        for learner in learners:
            ids = history_ids(r, keys, learner)
            assert len(ids) == len(set(ids)), learner
            mine = [rid for who, rid, _ in rounds.acked if who == learner]
            assert len(mine) == len(set(mine)), learner
            assert set(mine) <= set(ids), (learner, sorted(set(mine) - set(ids))[:10])

        wait_for(
            lambda: reports_total(fleet) == committed(r, keys),
            timeout_s=90,
            what="reports' total == the sum of the shards' round counters",
        )
        # Histories are not capped here: together they hold every committed round.
        everyone = [*learners, "default"]
        assert sum(len(history_ids(r, keys, x)) for x in everyone) == committed(r, keys)
        print(f"acknowledged {rounds.count()}, retried answers by status {rounds.refused}")
    except BaseException:
        for proc in fleet.procs.values():
            print(f"----- {proc.name} log -----\n{proc.logs()[-6000:]}")
        raise
    finally:
        fleet.stop_all()
        r.close()
