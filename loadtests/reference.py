"""The references the benchmarks are compared with, measured in the same run on the same machine.

- The framework's ceiling for the HTTP round path: a minimal aiohttp+uvloop endpoint that reads
  the request and answers a precomputed JSON body of the same size as a real round response,
  driven by the same load client and concurrency as the training single-round figure
  (`load_http`: wrk when installed, else an aiohttp client; 32 connections).
- The store's ceiling for the round commit: a pipelined redis-py client running the fleet's own
  `commit_rounds` Lua script (shared/lua/commit_rounds.lua) with realistic arguments against a
  private redis-server (`redis_commit_ceiling`).
- The fleet's coach throughput requirement: 215 rounds/min at the pre-arm defaults, a fixed
  figure rather than a measurement.

    python -m loadtests.reference bare  [--seconds 10] [--size 2500]
    python -m loadtests.reference redis [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SEED_THROUGHPUT_RPM = 215.0  # the coach throughput the fleet is required to sustain
DEFAULT_CONNECTIONS = 32


@dataclass(slots=True)
class LoadResult:
    """What one load run measured."""

    client: str
    seconds: float
    connections: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the load client (shared by the reference and the training single-round figure) ----------


def wrk_path() -> str | None:
    return shutil.which("wrk")


def load_http(
    url: str,
    learners: list[str],
    *,
    seconds: float = 10.0,
    connections: int = DEFAULT_CONNECTIONS,
    token: str | None = None,
    client: str = "auto",
) -> LoadResult:
    """POST `{"learner": <random one of learners>}` to `url` from `connections` connections for
    `seconds`. `client`: "wrk", "aiohttp" or "auto" (wrk when installed)."""
    if client == "auto":
        client = "wrk" if wrk_path() else "aiohttp"
    if client == "wrk":
        return _load_wrk(url, learners, seconds, connections, token)
    return asyncio.run(_load_aiohttp(url, learners, seconds, connections, token))


def _load_wrk(
    url: str, learners: list[str], seconds: float, connections: int, token: str | None
) -> LoadResult:
    binary = wrk_path()
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk), use client='aiohttp'")
    # Learner ids are [A-Za-z0-9_.-], so they are safe inside a Lua string literal.
    ids = ",".join(f'"{x}"' for x in learners)
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{auth}"
        f"local learners = {{{ids}}}\n"
        "request = function()\n"
        "  local id = learners[math.random(#learners)]\n"
        "  return wrk.format(nil, nil, nil, '{\"learner\":\"' .. id .. '\"}')\n"
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        script_path = fh.name
    try:
        threads = max(1, min(connections, os.cpu_count() or 1))
        out = subprocess.run(
            [
                binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "--timeout",
                "5s",
                "-s",
                script_path,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script_path)
    return parse_wrk(out, seconds, connections)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(out: str, seconds: float, connections: int) -> LoadResult:
    def grab(pattern: str) -> str | None:
        match = re.search(pattern, out, re.MULTILINE)
        return match.group(1) if match else None

    requests = int(grab(r"^\s*(\d+) requests in") or 0)
    non_2xx = int(grab(r"Non-2xx or 3xx responses:\s*(\d+)") or 0)
    socket_errors = grab(r"Socket errors:\s*(.*)$")
    sock = sum(int(n) for n in re.findall(r"\d+", socket_errors or ""))
    return LoadResult(
        client="wrk",
        seconds=seconds,
        connections=connections,
        requests=requests,
        errors=non_2xx + sock,
        rps=float(grab(r"Requests/sec:\s*([\d.]+)") or 0.0),
        p50_ms=_ms(grab(r"^\s*50%\s+(\S+)") or "0ms"),
        p99_ms=_ms(grab(r"^\s*99%\s+(\S+)") or "0ms"),
        notes={"socket_errors": socket_errors or "none", "non_2xx": non_2xx},
    )


async def _load_aiohttp(
    url: str, learners: list[str], seconds: float, connections: int, token: str | None
) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    bodies = [json.dumps({"learner": x}).encode() for x in learners]
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:  # bounded by the run's duration
            started = time.perf_counter()
            try:
                async with session.post(url, data=random.choice(bodies), headers=headers) as r:
                    await r.read()
                    if r.status >= 300:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=5)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return LoadResult(
        client="aiohttp",
        seconds=elapsed,
        connections=connections,
        requests=len(latencies),
        errors=errors,
        rps=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least pct % of the values at or below it.
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[index]


# ---- (a) the bare aiohttp+uvloop endpoint -----------------------------------------------------


def serve_bare(port: int, size: int) -> None:
    """Run the bare endpoint in this process until killed."""
    import uvloop
    from aiohttp import web

    filler = max(0, size - len('{"ok":true,"pad":""}'))
    body = json.dumps({"ok": True, "pad": "x" * filler}, separators=(",", ":")).encode()

    async def round_handler(request: web.Request) -> web.Response:
        await request.read()  # the real endpoint reads its body too
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/training/round", round_handler)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


class BareEndpoint:
    """The bare endpoint as a child process on a free port (a context manager)."""

    def __init__(self, size: int) -> None:
        from harness.ports import free_port

        self.size = size
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/training/round"

    def __enter__(self) -> BareEndpoint:
        from harness.http import probe_json

        root = Path(__file__).resolve().parents[1]
        cmd = [sys.executable, "-m", "loadtests.reference", "serve"]
        cmd += ["--port", str(self.port), "--size", str(self.size)]
        self.proc = subprocess.Popen(cmd, cwd=root, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded wait for the port to answer
            status, _ = probe_json("POST", self.url, {"learner": "x"}, timeout=1.0)
            if status == 200:
                return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("bare endpoint did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def bare_ceiling(
    size: int,
    *,
    seconds: float = 10.0,
    connections: int = DEFAULT_CONNECTIONS,
    client: str = "auto",
) -> LoadResult:
    with BareEndpoint(size) as bare:
        learners = [f"load-{i:05d}" for i in range(100)]
        result = load_http(
            bare.url, learners, seconds=seconds, connections=connections, client=client
        )
    result.notes["body_bytes"] = size
    return result


# ---- (b) the Redis commit ceiling -------------------------------------------------------------


@dataclass(slots=True)
class CommitResult:
    seconds: float
    commits: int
    rounds: int
    conflicts: int
    commits_per_s: float
    rounds_per_min: float
    redis_cpu_pct: float  # redis-server CPU over the run: ~100 means Redis was the bottleneck
    pipeline: int
    rounds_per_commit: int
    state_bytes: int
    clients: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def realistic_state(learner: str, seed: int) -> str:
    """An encoded learner that has trained every built-in domain for a while (about the size a
    coached learner reaches)."""
    from shared.learner_state import DomainState, LearnerState, encode

    rng = random.Random(seed)
    now = time.time()
    domains = {
        key: DomainState(
            skill=rng.random(),
            half_life=rng.uniform(20_000, 90_000),
            last=now - rng.uniform(0, 3600),
            attempts=rng.randint(5, 60),
            completed=rng.randint(0, 5),
            mastery=rng.uniform(40, 95),
            confidence=rng.uniform(40, 90),
            next_review=now + rng.uniform(0, 7200),
            scores=[rng.randint(30, 100) for _ in range(10)],
        )
        for key in ("dsa os networks compilers databases ml security theory distributed".split())
    }
    state = LearnerState(
        id=learner, seed=seed, region="local", created=now, active=True, rounds=200, domains=domains
    )
    return encode(state)


def redis_commit_ceiling(
    *,
    seconds: float = 10.0,
    learners: int = 2000,
    pipeline: int = 200,
    rounds_per_commit: int = 1,
    clients: int = 2,
    redis_url: str | None = None,
    appendonly: bool = False,
    fsync: str = "everysec",
) -> CommitResult:
    """Commits per second that Redis sustains running `commit_rounds`, from `clients` pipelined
    client processes (one Python client cannot keep Redis busy: it spends more time building
    arguments than Redis spends running the script; `redis_cpu_pct` near 100 says Redis, not
    the client, was the limit).

    Runs against a private redis-server unless `redis_url` is given. Each pipeline commits
    distinct learners of its own, so the expected version of every call is known. With
    `appendonly`, the private server writes an append-only file fsynced as `fsync` says
    (`everysec` or `always`, TOOLOO_FSYNC): what durability across a power loss costs.
    """
    from harness.redis_server import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="tooloo-ref-redis-"))
    server = None
    try:
        if redis_url is None:
            server = RedisServer(tmp, appendonly=appendonly, fsync=fsync).start()
            redis_url = server.url
        return _commit_clients(redis_url, clients, seconds, learners, pipeline, rounds_per_commit)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _commit_clients(
    redis_url: str,
    clients: int,
    seconds: float,
    learners: int,
    pipeline: int,
    rounds_per_commit: int,
) -> CommitResult:
    import multiprocessing

    import redis

    probe = redis.Redis.from_url(redis_url)
    cpu_before = _redis_cpu(probe)
    started = time.perf_counter()
    args = [(redis_url, seconds, learners, pipeline, rounds_per_commit)] * max(1, clients)
    # spawn, not fork: the children must not inherit this process's sockets or locks.
    with multiprocessing.get_context("spawn").Pool(len(args)) as pool:
        parts = pool.starmap(_commit_loop, args)
    elapsed = time.perf_counter() - started
    cpu = (_redis_cpu(probe) - cpu_before) / elapsed * 100
    probe.close()
    commits = sum(p.commits for p in parts)
    run_s = max(p.seconds for p in parts)
    return CommitResult(
        seconds=run_s,
        commits=commits,
        rounds=sum(p.rounds for p in parts),
        conflicts=sum(p.conflicts for p in parts),
        commits_per_s=sum(p.commits_per_s for p in parts),
        rounds_per_min=sum(p.rounds_per_min for p in parts),
        redis_cpu_pct=round(cpu, 1),
        pipeline=pipeline,
        rounds_per_commit=rounds_per_commit,
        state_bytes=parts[0].state_bytes,
        clients=len(parts),
    )


def _commit_loop(
    redis_url: str, seconds: float, learners: int, pipeline: int, rounds_per_commit: int
) -> CommitResult:
    import redis

    from shared import history
    from shared.commit_rounds import CommitHeader, commit_rounds_args
    from shared.keys import Keys, round_id_base
    from shared.scripts import script_source

    keys = Keys(f"ref{os.getpid()}")  # one prefix per client process: disjoint learners
    client = redis.Redis.from_url(redis_url)
    script = client.register_script(script_source("commit_rounds"))
    ids = [f"ref-{i:05d}" for i in range(learners)]
    states = {x: realistic_state(x, i) for i, x in enumerate(ids)}
    setup = client.pipeline(transaction=False)
    for x in ids:
        setup.hset(keys.learner_state(x), mapping={"v": 1, "s": states[x], "r": 0})
    setup.execute()
    versions = dict.fromkeys(ids, 1)
    # A history record as training sends it: a packed body and the anchor it steps from.
    anchor = history.Anchor()
    (entry,) = history.encode_entries(
        anchor,
        [
            {
                "n": 1,
                "ts": int(time.time() * 1000),
                "trained": ["dsa", "os", "ml"],
                "scores": {"dsa": 80, "os": 70, "ml": 100},
                "avg": 70.5,
                "ms": 0.8,
            }
        ],
    )

    def commit_keys(x: str) -> list[str]:
        return keys.commit_rounds_keys(x)

    key_lists = {x: commit_keys(x) for x in ids}
    commits = conflicts = 0
    cursor = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:  # bounded by the run's duration
        pipe = client.pipeline(transaction=False)
        batch = []
        for _ in range(min(pipeline, learners)):
            x = ids[cursor % learners]
            cursor += 1
            batch.append(x)
            now_ms = int(time.time() * 1000)
            header = CommitHeader(
                str(versions[x]),
                states[x],
                x,
                "local",
                70.5,
                4,
                now_ms + 60_000,
                100,
                round_base=round_id_base(keys.shard_of(x)),
                history_anchor=anchor.encode(),
            )
            args = commit_rounds_args(header, [(entry, 0.8)] * rounds_per_commit)
            script(keys=key_lists[x], args=args, client=pipe)
        for x, res in zip(batch, pipe.execute(), strict=True):
            if int(res[0]) == 1:
                versions[x] += 1
                commits += 1
            else:
                conflicts += 1
    elapsed = time.perf_counter() - started
    # Leave nothing behind in a shared Redis.
    for pattern in (f"{keys.prefix}:*",):
        batch_keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch_keys), 1000):
            client.delete(*batch_keys[i : i + 1000])
    client.close()
    return CommitResult(
        seconds=elapsed,
        commits=commits,
        rounds=commits * rounds_per_commit,
        conflicts=conflicts,
        commits_per_s=commits / elapsed,
        rounds_per_min=commits * rounds_per_commit / elapsed * 60,
        redis_cpu_pct=0.0,  # measured by the parent over all clients
        pipeline=pipeline,
        rounds_per_commit=rounds_per_commit,
        state_bytes=len(states[ids[0]]),
    )


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reference measurements")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the bare endpoint (used by BareEndpoint)")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--size", type=int, required=True)
    bare = sub.add_parser("bare", help="measure the bare endpoint's ceiling")
    bare.add_argument("--seconds", type=float, default=10.0)
    bare.add_argument("--size", type=int, default=2500)
    bare.add_argument("--client", choices=("auto", "wrk", "aiohttp"), default="auto")
    red = sub.add_parser("redis", help="measure the Redis commit ceiling")
    red.add_argument("--seconds", type=float, default=10.0)
    red.add_argument("--rounds-per-commit", type=int, default=1)
    red.add_argument("--clients", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve_bare(args.port, args.size)
    elif args.cmd == "bare":
        print(
            json.dumps(bare_ceiling(args.size, seconds=args.seconds, client=args.client).as_dict())
        )
    else:
        result = redis_commit_ceiling(
            seconds=args.seconds, rounds_per_commit=args.rounds_per_commit, clients=args.clients
        )
        print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
