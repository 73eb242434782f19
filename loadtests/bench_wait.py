"""The cost of acknowledging a round only once a replica has it (`WAIT 1` after each pipelined
batch, TOOLOO_COMMIT_WAIT_REPLICAS), on a real Redis Cluster, in one run.

    python -m loadtests.bench_wait [--seconds 2] [--repeats 7] [--url REDIS_URL]

Without --url it starts a private cluster (harness/redis_cluster.py: 3 masters + 3 replicas on
free ports) and stops it after. Rounds are commits through training's auto-pipeline
(services/training/pipelining.py) of a stand-in script with a commit's shape (a counter, the
learner's history), each learner's rounds one after another as training's per-learner lock makes
them, with 64 learners at once (batched: one WAIT covers a batch) and with 1 (every round its own
batch and its own WAIT). Modes alternate within each repeat; the table gives the medians of the
repeats: rounds/s, per-round latency p50/p99, and rounds/s relative to the same concurrency
without WAIT. Figures of a shared 2-core machine are relative, not absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from loadtests.reference import percentile
from loadtests.report import format_table
from services.training.pipelining import AutoPipeline
from shared.redis_conn import connect_fleet

COMMIT = """
local id = redis.call('INCR', KEYS[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, 99)
return id
"""
WAIT_TIMEOUT_MS = 500


async def run_mode(url: str, learners: int, wait: int, seconds: float) -> dict[str, Any]:
    redis = await connect_fleet(url)
    pipe = AutoPipeline(redis, connections=2, wait_replicas=wait, wait_timeout_ms=WAIT_TIMEOUT_MS)
    script = redis.register_script(COMMIT)
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def learner(i: int) -> None:
        nonlocal failures
        tag = f"bench-wait-{run}-{i}"
        keys = [f"{{{tag}}}:seq", f"{{{tag}}}:history"]
        n = 0
        while time.perf_counter() < deadline:  # bounded by the run's length
            t0 = time.perf_counter()
            try:
                await pipe.evalsha(script, keys, [n])
            except Exception:
                failures += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            n += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(learner(i) for i in range(learners)))
    finally:
        elapsed = time.perf_counter() - started
        await pipe.aclose()
        await redis.aclose()
    return {
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "failures": failures,
        "batching": pipe.commands / max(pipe.batches, 1),
    }


def bench(url: str, seconds: float, repeats: int) -> list[dict[str, Any]]:
    modes = [(learners, wait) for learners in (64, 1) for wait in (0, 1)]
    samples: dict[tuple[int, int], list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(repeats):  # alternating, so drift on a shared machine hits every mode alike
        for learners, wait in modes:
            samples[(learners, wait)].append(asyncio.run(run_mode(url, learners, wait, seconds)))
    rows = []
    for learners, wait in modes:
        runs = samples[(learners, wait)]
        row: dict[str, Any] = {
            "mode": f"{learners} learners, " + (f"WAIT {wait}" if wait else "no WAIT"),
            "rps": statistics.median(r["rps"] for r in runs),
            "p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs),
            "batching": statistics.median(r["batching"] for r in runs),
            "failures": sum(r["failures"] for r in runs),
        }
        rows.append(row)
    reference = {row["mode"].split(",")[0]: row["rps"] for row in rows if "no WAIT" in row["mode"]}
    for row in rows:
        row["ratio"] = row["rps"] / reference[row["mode"].split(",")[0]]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--url", default="", help="REDIS_URL of a running cluster")
    args = parser.parse_args(argv)
    cluster = None
    url = args.url
    if not url:
        root = Path(tempfile.mkdtemp(prefix="bench-wait-"))
        cluster = LocalCluster(root, ports_from(free_cluster_base())).start()
        url = cluster.url
    try:
        rows = bench(url, args.seconds, args.repeats)
    finally:
        if cluster is not None:
            cluster.stop()
    print(
        f"WAIT cost on a 3-master cluster, {args.repeats} alternating repeats of {args.seconds:g} s,"
        f" medians (WAIT timeout {WAIT_TIMEOUT_MS} ms)"
    )
    print(
        format_table(
            rows,
            [
                ("mode", "mode"),
                ("rps", "rounds/s"),
                ("ratio", "vs no WAIT"),
                ("p50", "p50 ms"),
                ("p99", "p99 ms"),
                ("batching", "rounds/batch"),
                ("failures", "failed"),
            ],
        )
    )


if __name__ == "__main__":
    main()
