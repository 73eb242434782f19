"""Training rounds with 1 and 2 training replicas behind one port, and how the load spreads.

    python -m loadtests.bench_replicas [--seconds 8] [--connections 32]

For each setup it starts a private redis-server and the orchestrator with training and web
(`TRAINING_REPLICAS=1`, `=2`, and `=2` with `TOOLOO_CONN_RECYCLE=0`, i.e. kept-alive connections
never closed by the server), onboards 256 learners, then drives `POST /api/v1/training/round`
from `--connections` pooled aiohttp connections, once straight at training's port and once
through the gateway (web, itself one process with its own pool). Per run: rounds/s, p99, each
replica's share of the rounds (from its own /metrics on its control port), the CPU of the
training processes and of redis-server per round (from /proc and INFO), and the CPU left idle on
the machine (so that on a small machine one can see when the cores, not the design, are the
limit). The first row (1 replica, direct) is the same-run reference of the others.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as sync_redis

from harness.fleet import Fleet
from harness.http import probe_json
from harness.polling import wait_for
from harness.redis_server import RedisServer
from loadtests.reference import load_http
from loadtests.report import format_table

LEARNERS = [f"rep-{i:03d}" for i in range(256)]
ROUND = "/api/v1/training/round"
SETUPS = (
    ("1 replica", {"TRAINING_REPLICAS": "1"}),
    ("2 replicas", {"TRAINING_REPLICAS": "2"}),
    ("2 replicas, no recycle", {"TRAINING_REPLICAS": "2", "TOOLOO_CONN_RECYCLE": "0"}),
)
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _machine_idle_s() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / TICKS  # idle + iowait, all cores


def _redis_cpu_s(client: sync_redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _training(fleet: Fleet) -> list[dict[str, Any]]:
    _, body = fleet["orchestrator"].get("/api/v1/system/processes")
    return [p for p in body["processes"] if p["service"] == "training"]


def _rounds_of(process: dict[str, Any], fleet: Fleet) -> float:
    """Rounds this process answered so far, from its own /metrics (its control port when it is
    a replica; a single process answers on the service port)."""
    port = process["control_port"] or fleet.ports["training"]
    _, text = probe_json("GET", f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    pattern = r'^tooloo_http_requests_total\{[^}]*route="[^"]*round"[^}]*\} (\S+)'
    return sum(float(v) for v in re.findall(pattern, str(text), re.M))


def run_setup(name: str, env: dict[str, str], seconds: float, conns: int) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    fleet = Fleet(redis_server.url, "bench", tmp / "logs")
    rows = []
    try:
        fleet.start("orchestrator", env={"ORCHESTRATOR_SERVICES": "training,web", **env})
        wait_for(
            lambda: fleet["orchestrator"].get("/api/v1/system/status")[1]["phase"] == "armed",
            f"{name} armed",
            120,
        )
        for learner in LEARNERS:
            status, body = fleet.call(
                "training", "POST", "/api/v1/training/start", {"learner": learner}
            )
            assert status == 200, body
        client = sync_redis.Redis.from_url(redis_server.url)
        for target in ("training", "web"):
            procs = _training(fleet)
            before = {p["name"]: (_rounds_of(p, fleet), _cpu_s(p["pid"])) for p in procs}
            redis_before, idle_before, t0 = _redis_cpu_s(client), _machine_idle_s(), time.time()
            result = load_http(
                fleet.url(target) + ROUND,
                LEARNERS,
                seconds=seconds,
                connections=conns,
                client="aiohttp",
            )
            wall = time.time() - t0
            redis_cpu = _redis_cpu_s(client) - redis_before
            idle = (_machine_idle_s() - idle_before) / wall
            served = {p["name"]: _rounds_of(p, fleet) - before[p["name"]][0] for p in procs}
            cpu = sum(_cpu_s(p["pid"]) - before[p["name"]][1] for p in procs)
            total = sum(served.values()) or 1.0
            rows.append(
                {
                    "setup": name,
                    "client": "direct" if target == "training" else "via gateway",
                    "rps": result.rps,
                    "p99": result.p99_ms,
                    "errors": result.errors,
                    "shares": " / ".join(f"{100 * v / total:.0f}%" for v in served.values()),
                    "cpu_ms": 1000 * cpu / total,
                    "redis_ms": 1000 * redis_cpu / total,
                    "idle": idle,
                }
            )
            print(f"  {name}, {rows[-1]['client']}: {result.rps:,.0f} rounds/s", flush=True)
        client.close()
    finally:
        fleet.stop_all()
        redis_server.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    rows = []
    for name, env in SETUPS:
        rows += run_setup(name, env, args.seconds, args.connections)
    reference = rows[0]["rps"] or 1.0
    for row in rows:
        row["ratio"] = row["rps"] / reference
    print(
        f"\nTraining rounds, {args.connections} connections, {args.seconds:g} s per run, "
        f"{os.cpu_count()} CPUs; reference: the first row, same run"
    )
    print(
        format_table(
            rows,
            [
                ("setup", "setup"),
                ("client", "client"),
                ("rps", "rounds/s"),
                ("ratio", "vs ref"),
                ("p99", "p99 ms"),
                ("errors", "errors"),
                ("shares", "share per replica"),
                ("cpu_ms", "training CPU ms/round"),
                ("redis_ms", "redis CPU ms/round"),
                ("idle", "idle CPUs"),
            ],
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
