"""Coach capacity with 1, 2 and 4 coach replicas in one run, on a single Redis and on a 3-master
Redis Cluster: rounds/min, the scaling ratio against the one-replica figure of the same backend in
the same run, and where the CPU goes (coach processes, training, Redis) per round, so that a ratio
below the replica count is explained rather than hidden.

    python -m loadtests.bench_coach_scale [--duration 20] [--repeats 3] [--learners 4000]
                                          [--backends single,cluster]

Per backend: a private redis-server, or a private cluster (harness/redis_cluster.py: 3 masters +
3 replicas on free ports; Redis CPU is then the masters' summed), training and 1..4 coach
processes (the first from the fleet, the others on ports of their own, same Redis; every replica
coaches the shards it owns). `--learners` active
learners stay in the coach queues for the whole run (the readiness bar is set out of reach, so
no learner leaves the queue and meta is not needed); the fast lane runs at its minimum interval
(50 ms) with `--micro` × `--batch` learners per tick and replica. For each repeat, each replica
count in turn: wait until the replicas split the shards (each owns some, together all of them),
warm up, then measure over `--duration`:

- rounds/min from the shards' round counters (the sum of `keys.rounds_seq(s)`);
- CPU ms per round of the coach processes together, of training, and of Redis (INFO cpu,
  used_cpu_user + used_cpu_sys), from the deltas over the window.

Each figure is the median of the repeats; the scaling ratio is rounds/min with n replicas over
rounds/min with one, both medians of this run. On a machine with few cores every process competes
for the same CPUs: the coach's CPU per round shows whether replicas add work per round, and
training's and Redis's CPU per round show what a round costs elsewhere whatever the coach does;
CPU "in use" (cores busy over the window) shows which process is the ceiling — a single training
process near one core caps the rounds every coach replica asks for.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis.cluster import RedisCluster

from harness.ports import free_port
from harness.processes import ServiceProcess
from harness.redis_clients import SyncRedis, evalsha_pipelined, sync_client
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from loadtests.bench_coach import print_table, row
from loadtests.fleetctl import BenchFleet
from services.training.round import new_learner_state
from shared.keys import Keys
from shared.learner_state import encode
from shared.scripts import script_source

COACH = "/api/v1/auto-coach"
REPLICAS = (1, 2, 4)
BACKENDS = ("single", "cluster")
WARMUP_S = 3.0
SETTLE_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def redis_cpu_s(r: SyncRedis) -> float:
    """Redis's user + system CPU seconds: a cluster's masters summed (INFO on each)."""
    if isinstance(r, RedisCluster):
        per_node = r.info("cpu", target_nodes=RedisCluster.PRIMARIES)
        infos = list(per_node.values())
    else:
        infos = [r.info("cpu")]
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)


def create_learners(r: SyncRedis, keys: Keys, count: int, tag: str) -> list[str]:
    """Create `count` active learners as training does (its initial state), pipelined by SHA
    (works on a cluster: each call's keys are one shard's)."""
    ids = [f"{tag}-{i:05d}" for i in range(count)]
    source, now = script_source("create_learner"), time.time()
    for start in range(0, count, 1000):
        calls = [
            (
                keys.create_learner_keys(x),
                [x, encode(new_learner_state(x, "bench", True, now)), "bench", 1],
            )
            for x in ids[start : start + 1000]
        ]
        evalsha_pipelined(r, source, calls)
    return ids


@contextlib.contextmanager
def backend_url(backend: str) -> Iterator[str | None]:
    """None for the single Redis (the fleet starts its own), a private cluster's URL else."""
    if backend == "single":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tooloo-coach-scale-") as tmp:
        cluster = LocalCluster(Path(tmp), ports_from(free_cluster_base()))
        try:
            cluster.start()
            yield cluster.url
        finally:
            cluster.stop()


def rounds_total(r: SyncRedis, keys: Keys) -> int:
    """The fleet's rounds: the sum of the shards' counters (one GET per shard: no cross-slot
    MGET, so the same code reads a Redis Cluster)."""
    with r.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.get(keys.rounds_seq(shard))
        return sum(int(v or 0) for v in pipe.execute())


class Coaches:
    """The coach processes of the run: the fleet's first one, plus extras started and stopped
    to reach a replica count."""

    def __init__(self, fleet: BenchFleet) -> None:
        self.fleet = fleet
        self.extra: list[ServiceProcess] = []

    @property
    def all(self) -> list[ServiceProcess]:
        return [self.fleet["coach"], *self.extra]

    def scale(self, n: int) -> None:
        while len(self.all) > n:  # bounded by the replica count
            self.extra.pop().stop()  # a graceful stop releases its leases at once
        while len(self.all) < n:
            port = free_port()
            env = dict(self.fleet.env, COACH_PORT=str(port))
            name = f"coach#{len(self.all) + 1}"
            proc = ServiceProcess(name, "services.coach", port, env, self.fleet.log_dir)
            self.extra.append(proc.start())
            proc.wait_ready()

    def owned(self) -> list[set[int]]:
        out = []
        for proc in self.all:
            status, body = proc.get(f"{COACH}/status")
            out.append(set(body["status"]["replica"]["ownedShards"]) if status == 200 else set())
        return out

    def wait_split(self, shards: int) -> None:
        """Until every replica owns some shards and together they own all (bounded)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            owned = self.owned()
            disjoint = sum(len(o) for o in owned) == len(set().union(*owned))
            if all(owned[:shards]) and disjoint and len(set().union(*owned)) == shards:
                return
            time.sleep(0.2)
        raise RuntimeError(f"coach replicas did not split the shards: {self.owned()}")

    def stop_extra(self) -> None:
        self.scale(1)


def measure(
    fleet: BenchFleet, coaches: Coaches, r: SyncRedis, keys: Keys, duration_s: float
) -> dict[str, float]:
    pids = [p.pid for p in coaches.all]
    training = fleet["training"].pid
    c0, t0, r0 = sum(cpu_s(p) for p in pids), cpu_s(training), redis_cpu_s(r)
    n0 = rounds_total(r, keys)
    start = time.perf_counter()
    time.sleep(duration_s)
    elapsed = time.perf_counter() - start
    n1 = rounds_total(r, keys)
    c1, t1, r1 = sum(cpu_s(p) for p in pids), cpu_s(training), redis_cpu_s(r)
    rounds = max(1, n1 - n0)
    return {
        "rpm": (n1 - n0) / elapsed * 60,
        "coach_ms": (c1 - c0) * 1000 / rounds,
        "training_ms": (t1 - t0) * 1000 / rounds,
        "redis_ms": (r1 - r0) * 1000 / rounds,
        "coach_cores": (c1 - c0) / elapsed,
        "training_cores": (t1 - t0) / elapsed,
        "redis_cores": (r1 - r0) / elapsed,
    }


def run(
    duration_s: float = 20.0,
    repeats: int = 3,
    learners: int = 4000,
    micro: int = 2,
    batch: int = 50,
    backends: tuple[str, ...] = BACKENDS,
) -> list[dict[str, Any]]:
    results = {}
    for backend in backends:
        with backend_url(backend) as url:
            results[backend] = run_backend(url, duration_s, repeats, learners, micro, batch)
    setup = f"{learners:,} learners, 50 ms, {micro}×{batch}, {duration_s:g} s × {repeats}"
    out = [row(f"setup: {setup}", len(REPLICAS) * len(backends), "configs", "-", None)]
    for backend in backends:
        out += rows(backend, results[backend])
    return out


def run_backend(
    url: str | None, duration_s: float, repeats: int, learners: int, micro: int, batch: int
) -> dict[int, list[dict[str, float]]]:
    results: dict[int, list[dict[str, float]]] = {n: [] for n in REPLICAS}
    with BenchFleet(redis_url=url, prefix="benchcoachscale") as fleet:
        fleet.start("training", "coach")
        keys = Keys(fleet.prefix)
        r = sync_client(fleet.redis_url)
        create_learners(r, keys, learners, "scale")
        coaches = Coaches(fleet)
        call = fleet["coach"].post
        # Out of reach: nobody becomes ready, every learner stays in the queues all run long.
        assert call(f"{COACH}/settings", {"minAvgMastery": 100, "maxBelow80": 0})[0] == 200
        fast = {"enable": True, "intervalMs": 50, "microBatchesPerTick": micro, "batchSize": batch}
        assert call(f"{COACH}/fast-lane", fast)[0] == 200
        assert call(f"{COACH}/start")[0] == 200
        try:
            for _ in range(repeats):
                for n in REPLICAS:
                    coaches.scale(n)
                    coaches.wait_split(keys.shards)
                    time.sleep(WARMUP_S)
                    results[n].append(measure(fleet, coaches, r, keys, duration_s))
        finally:
            coaches.stop_extra()
            r.close()
    return results


def rows(backend: str, results: dict[int, list[dict[str, float]]]) -> list[dict[str, Any]]:
    def med(n: int, key: str) -> float:
        return statistics.median(x[key] for x in results[n])

    where = "Redis Cluster, 3 masters" if backend == "cluster" else "single Redis"
    redis_cpu = "all masters summed" if backend == "cluster" else "INFO cpu"
    out = []
    base = med(1, "rpm")
    for n in REPLICAS:
        label = f"{where}, {n} coach replica{'s' if n > 1 else ''}"
        out += [
            row(f"{label}: rounds/min (median)", med(n, "rpm"), "rounds/min", "-", None),
            row(f"{label}: scaling ratio vs 1 replica", med(n, "rpm") / base, "x", "-", None),
            row(f"{label}: coach CPU per round (all replicas)", med(n, "coach_ms"), "ms", "-",
                None),
            row(f"{label}: coach CPU in use", med(n, "coach_cores"), "cores", "-", None),
            row(f"{label}: training CPU per round", med(n, "training_ms"), "ms", "-", None),
            row(f"{label}: training CPU in use (one process)", med(n, "training_cores"), "cores",
                "-", None),
            row(f"{label}: Redis CPU per round ({redis_cpu})", med(n, "redis_ms"), "ms", "-",
                None),
            row(f"{label}: Redis CPU in use", med(n, "redis_cores"), "cores", "-", None),
        ]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per config")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--learners", type=int, default=4000)
    parser.add_argument("--micro", type=int, default=2, help="microBatchesPerTick per replica")
    parser.add_argument("--batch", type=int, default=50, help="batchSize per replica")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="single,cluster or one")
    args = parser.parse_args(argv)
    backends = tuple(b for b in args.backends.split(",") if b)
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"--backends: a comma-separated list of {', '.join(BACKENDS)}")
    print_table(run(args.duration, args.repeats, args.learners, args.micro, args.batch, backends))
    print(f"({os.cpu_count()} cores, shared machine: provisional figures; ratios are same-run)")


if __name__ == "__main__":
    main()
