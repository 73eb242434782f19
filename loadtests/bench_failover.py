"""Failover recovery: the time from kill -9 of a Redis Cluster master under load until training
serves rounds again for learners of every shard, with WAIT on and off, in one run.

    python -m loadtests.bench_failover [--repeats 3] [--node-timeout-ms 1500] [--threads 4]

A private cluster (harness/redis_cluster.py: 3 masters + 3 replicas on free ports, the given
`cluster-node-timeout`) and a training process on it (loadtests/fleetctl.py), one learner per
shard. Client threads post rounds with Idempotency-Keys, retrying a 5xx or a missing answer with
the same key. Each repeat kills -9 a current master, and measures:

- promoted: until the killed master's replica says it is a master (it took over);
- served: until every learner has had a round answered 200 that was sent after the kill.

With WAIT off (TOOLOO_COMMIT_WAIT_REPLICAS=0) rounds are served once the replica took over. With
WAIT on (1, the default on such a cluster) the promoted replica has no replica of its own, so its
shards' rounds answer 503 `not_replicated` until the killed node is back: the benchmark starts it
again as soon as the promotion is seen (as a supervisor restarting the process would), and it
rejoins as the new master's replica. Between repeats the cluster is whole again (every replica
linked). The table gives the medians (and the worst) of the repeats against the target (≤ 10 s);
figures of a shared 2-core machine, with the node timeout they ran with.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from harness.http import probe_json
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from loadtests.fleetctl import BenchFleet
from loadtests.report import format_table
from shared.keys import Keys

ROUND = "/api/v1/training/round"
TARGET_S = 10.0
DEADLINE_S = 120.0  # a repeat that has not recovered by then fails the run


class Load:
    """Threads posting rounds, each retried with its Idempotency-Key until answered 200."""

    def __init__(self, url: str, learners: list[str], threads: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # learner -> completion times of rounds answered 200, with the time each was first sent
        self.served: list[tuple[str, float, float]] = []
        self.threads = [
            threading.Thread(target=self._run, args=(learners[i::threads],), daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=DEADLINE_S)

    def _run(self, mine: list[str]) -> None:
        for n in range(10**7):  # bounded; stops when told
            if self.stop.is_set():
                return
            learner = mine[n % len(mine)]
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            sent = time.monotonic()
            while not self.stop.is_set() and time.monotonic() - sent < DEADLINE_S:  # bounded
                status, _ = probe_json(
                    "POST", self.url + ROUND, {"learner": learner}, timeout=15, headers=headers
                )
                if status == 200:
                    with self.lock:
                        self.served.append((learner, sent, time.monotonic()))
                    break
                if 400 <= status < 500:
                    raise RuntimeError(f"round for {learner} answered {status}")
                time.sleep(0.05)

    def recovered_at(self, learners: list[str], since: float) -> float | None:
        """When the last learner got its first round sent after `since` answered (None if some
        learner has none yet)."""
        first: dict[str, float] = {}
        with self.lock:
            for learner, sent, done in self.served:
                if sent > since and learner not in first:
                    first[learner] = done
        if len(first) < len(learners):
            return None
        return max(first.values())


def masters(cluster: LocalCluster) -> list[int]:
    out = []
    for port in cluster.ports:
        with contextlib.suppress(Exception), contextlib.closing(cluster.admin(port, 1.0)) as node:
            if node.info("replication").get("role") == "master":
                out.append(port)
    return out


def replica_of(cluster: LocalCluster, master: int) -> int:
    """The port of the replica that follows the master on `master`."""
    for port in cluster.ports:
        with contextlib.closing(cluster.admin(port, 1.0)) as node:
            info = node.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                return port
    raise RuntimeError(f"no replica follows {master}")


def is_master(cluster: LocalCluster, port: int) -> bool:
    with contextlib.suppress(Exception), contextlib.closing(cluster.admin(port, 0.5)) as node:
        return bool(node.info("replication").get("role") == "master")
    return False


def wait(check: Any, what: str) -> float:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:  # bounded
        value = check()
        if value:
            return float(value) if not isinstance(value, bool) else time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"{what} not seen within {DEADLINE_S} s")


def one_mode(
    cluster: LocalCluster, wait_replicas: int, repeats: int, threads: int
) -> list[dict[str, float]]:
    out = []
    env = {"TOOLOO_COMMIT_WAIT_REPLICAS": str(wait_replicas)}
    prefix = f"benchfail{uuid.uuid4().hex[:6]}"
    with BenchFleet(redis_url=cluster.url, prefix=prefix, extra_env=env) as fleet:
        fleet.start("training")
        keys = Keys(prefix)
        learners = []
        for shard in keys.all_shards():
            learner = next(
                f"f{i}" for i in range(100_000) if keys.shard_of(f"f{i}") == shard
            )  # bounded: ids spread evenly over the shards
            learners.append(learner)
            status, body = fleet["training"].post("/api/v1/training/start", {"learner": learner})
            if status != 200:
                raise RuntimeError(f"start {learner}: {status} {body}")
        with Load(fleet.url("training"), learners, threads) as load:
            for _ in range(repeats):
                time.sleep(2.0)  # load flowing on a whole cluster
                victim = masters(cluster)[0]
                heir = replica_of(cluster, victim)
                killed = time.monotonic()
                cluster.signal_node(victim, signal.SIGKILL)
                promoted = wait(lambda h=heir: is_master(cluster, h), "promotion")
                if wait_replicas:
                    cluster.start(timeout_s=DEADLINE_S)  # the killed node rejoins as a replica
                served = wait(lambda k=killed: load.recovered_at(learners, k), "rounds served")
                if not wait_replicas:
                    cluster.start(timeout_s=DEADLINE_S)  # whole again for the next repeat
                out.append({"promoted_s": promoted - killed, "served_s": served - killed})
    return out


def run(repeats: int, node_timeout_ms: int, threads: int, modes: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tooloo-failover-") as tmp:
        cluster = LocalCluster(
            Path(tmp), ports_from(free_cluster_base()), node_timeout_ms=node_timeout_ms
        )
        try:
            cluster.start()
            for wait_replicas in modes:
                results = one_mode(cluster, wait_replicas, repeats, threads)
                served = [r["served_s"] for r in results]
                median = statistics.median(served)
                rows.append(
                    {
                        "mode": f"WAIT {wait_replicas}" + (" (on)" if wait_replicas else " (off)"),
                        "node_timeout_ms": node_timeout_ms,
                        "repeats": repeats,
                        "promoted_s": statistics.median(r["promoted_s"] for r in results),
                        "served_s": median,
                        "worst_s": max(served),
                        "target_s": f"≤ {TARGET_S:g}",
                        "result": "PASS" if median <= TARGET_S else "FAIL",
                    }
                )
        finally:
            cluster.stop()
    return rows


COLUMNS = [
    ("mode", "commit WAIT"),
    ("node_timeout_ms", "node timeout ms"),
    ("repeats", "repeats"),
    ("promoted_s", "promoted s (median)"),
    ("served_s", "served again s (median)"),
    ("worst_s", "worst s"),
    ("target_s", "target s"),
    ("result", "result"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--node-timeout-ms", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=4, help="client threads posting rounds")
    parser.add_argument(
        "--wait", choices=["both", "on", "off"], default="both", help="commit WAIT modes to run"
    )
    args = parser.parse_args(argv)
    modes = {"both": [1, 0], "on": [1], "off": [0]}[args.wait]
    rows = run(args.repeats, args.node_timeout_ms, args.threads, modes)
    print(format_table(rows, COLUMNS))
    print("(shared 2-core machine: one training process, 3 masters + 3 replicas on loopback)")


if __name__ == "__main__":
    main()
