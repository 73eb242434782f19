"""Benchmark of the training service: single rounds, the batch endpoint, onboarding memory.

    python -m loadtests.bench_training --duration 20

Starts its own redis-server (free port, temporary directory, no persistence) and one training
process, then measures:
  1. POST /api/v1/training/round with 32 concurrent connections for `duration` seconds, spread over
     256 learners (rounds/s, p50/p99 latency);
  2. POST /api/v1/training/rounds (100 learners × 10 rounds per call, 2 concurrent callers on
     disjoint learners) for `duration / 2` seconds (rounds/s);
  3. onboarding of 100,000 learners, then INFO memory: used_memory delta per learner.
Prints a table with the targets and PASS/MISS. The client runs on the same machine as the server,
so the figures are a lower bound of what the service does on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis as sync_redis

from harness.ports import free_port
from shared.embedded_redis import find_redis_server, server_args
from shared.fleet_totals import learner_count_sync
from shared.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 32
SINGLE_LEARNERS = 256
BATCH_LEARNERS = 100
BATCH_ROUNDS = 10
BATCH_CALLERS = 2
ONBOARD = 100_000
PREFIX = "bench"


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded poll
        if proc.poll() is not None:
            raise RuntimeError(f"training exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def _single(base: str, duration_s: float) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=conn) as session:
        starts = [
            session.post(f"{base}/api/v1/training/start", json={"learner": f"s-{i}"})
            for i in range(SINGLE_LEARNERS)
        ]
        for i in range(0, len(starts), CONNECTIONS):
            for resp in await asyncio.gather(*starts[i : i + CONNECTIONS]):
                resp.release()
        deadline = time.perf_counter() + duration_s

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.perf_counter() < deadline:  # bounded by the deadline
                body = {"learner": f"s-{i % SINGLE_LEARNERS}"}
                t0 = time.perf_counter()
                async with session.post(f"{base}/api/v1/training/round", json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)
                i += CONNECTIONS

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    ok = len(latencies) - errors
    return ok / elapsed, _pct(latencies, 0.5), _pct(latencies, 0.99), errors


async def _batch(base: str, duration_s: float) -> tuple[float, int]:
    committed = 0
    errors = 0
    async with aiohttp.ClientSession() as session:
        groups = [[f"b-{c}-{i}" for i in range(BATCH_LEARNERS)] for c in range(BATCH_CALLERS)]
        for group in groups:
            for learner in group:
                async with session.post(
                    f"{base}/api/v1/training/start", json={"learner": learner}
                ) as resp:
                    await resp.read()
        deadline = time.perf_counter() + duration_s

        async def caller(group: list[str]) -> None:
            nonlocal committed, errors
            while time.perf_counter() < deadline:  # bounded by the deadline
                async with session.post(
                    f"{base}/api/v1/training/rounds",
                    json={"learners": group, "rounds_per_learner": BATCH_ROUNDS},
                ) as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        errors += 1
                        continue
                    committed += body["committed"]
                    errors += len(body["errors"])

        t0 = time.perf_counter()
        await asyncio.gather(*(caller(g) for g in groups))
        elapsed = time.perf_counter() - t0
    return committed / elapsed, errors


def _onboarding(redis_url: str, timeout_s: float = 180.0) -> tuple[float, float, int]:
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(PREFIX)
    before_n = learner_count_sync(r, keys)
    before_mem = int(r.info("memory")["used_memory"])
    target = before_n + ONBOARD
    t0 = time.perf_counter()
    r.hset(keys.scale, mapping={"target": target, "paused": 0, "hold": 0})
    deadline = time.monotonic() + timeout_s
    while learner_count_sync(r, keys) < target and time.monotonic() < deadline:
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    created = learner_count_sync(r, keys) - before_n
    after_mem = int(r.info("memory")["used_memory"])
    per = (after_mem - before_mem) / created if created else float("nan")
    return per, created / elapsed if elapsed else 0.0, created


def run(duration_s: float) -> list[dict[str, Any]]:
    """Run every measurement; rows {figure, measured, unit, target, passed}."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    redis_port, http_port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        [find_redis_server(), *server_args(redis_port, tmp, appendonly=False)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOOLOO_")},
        "REDIS_URL": redis_url,
        "TOOLOO_REDIS_PREFIX": PREFIX,
        "TRAINING_PORT": str(http_port),
        "TOOLOO_LOG_LEVEL": "warning",
        "TRAINING_ONBOARDING_RATE": "100000",
        "TRAINING_ONBOARDING_BATCH": "5000",
        "TRAINING_ONBOARDING_TICK": "0.05",
    }
    log = (tmp / "training.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.training"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{http_port}"
    rows: list[dict[str, Any]] = []
    try:
        _wait_http(base + "/ready", 20, proc)
        rps, p50, p99, errs = asyncio.run(_single(base, duration_s))
        rows += [
            _row("single round throughput", rps, "rounds/s", ">= 3000", rps >= 3000),
            _row("single round p50", p50, "ms", "-", True),
            _row("single round p99", p99, "ms", "<= 25", p99 <= 25),
            _row("single round errors", errs, "count", "0", errs == 0),
        ]
        brps, berrs = asyncio.run(_batch(base, max(1.0, duration_s / 2)))
        rows += [
            _row("batch throughput", brps, "rounds/s", ">= 10000", brps >= 10000),
            _row("batch per-learner errors", berrs, "count", "0", berrs == 0),
        ]
        per, rate, created = _onboarding(redis_url)
        rows += [
            _row("learners onboarded", created, "learners", str(ONBOARD), created >= ONBOARD),
            _row("onboarding rate", rate, "learners/s", "-", True),
            _row("redis memory per learner", per, "bytes", "<= 1024", per <= 1024),
        ]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        log.close()
    return rows


def _row(figure: str, measured: float, unit: str, target: str, passed: bool) -> dict[str, Any]:
    return {
        "figure": figure,
        "measured": round(float(measured), 2),
        "unit": unit,
        "target": target,
        "passed": bool(passed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of single rounds")
    args = parser.parse_args()
    rows = run(args.duration)
    print(f"{'figure':<28} {'measured':>12} {'unit':<11} {'target':<10} result")
    for row in rows:
        verdict = "PASS" if row["passed"] else "MISS"
        print(
            f"{row['figure']:<28} {row['measured']:>12} {row['unit']:<11} {row['target']:<10} "
            f"{verdict}"
        )


if __name__ == "__main__":
    main()
