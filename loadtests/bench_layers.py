"""What each layer of training's single-round path costs, priced under the same load as the
`training-wrk` figure.

    python -m loadtests.bench_layers [--seconds 10]

Starts a private redis-server and ONE training process built from the real app factory
(`services.training.app.create_app`) with a few extra routes that stop the round path at a given
layer, each answering the same JSON shape a round answers:

  /layers/envelope  the fleet's middlewares and JSON envelope around a fixed round answer
  /layers/parse     + validating the body (RoundRequest) and the learner id
  /layers/read      + the per-learner lock and one auto-pipelined Redis read of the learner
  /layers/compute   + decoding the state, the round (learner model), the commit's arguments and
                    the round's answer (presenters.round_answer), without committing
  /api/v1/training/round   the real round: + the atomic commit (commit_rounds) and the cache

Each is driven like the benchmark (wrk when installed, else the aiohttp client; 32 connections,
256 learners) and the table gives requests/s and the training process's CPU per request (from
/proc), so the difference between two rows is what that layer costs. The routes exist only in
this benchmark's process, never in the fleet.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from harness.http import probe_json
from harness.ports import free_port
from harness.redis_server import RedisServer
from loadtests.reference import load_http

LEARNERS = [f"layer-{i:04d}" for i in range(256)]
LAYERS = (
    ("/layers/envelope", "middlewares + JSON envelope, fixed answer"),
    ("/layers/parse", "+ body validation"),
    ("/layers/read", "+ per-learner lock + one Redis read"),
    ("/layers/compute", "+ decode, round, commit args, answer"),
    ("/api/v1/training/round", "+ atomic commit (the real round)"),
)


# ---- the server: the real training app plus the layer routes -----------------------------------


def create_layered_app(settings: Any) -> web.Application:
    from services.training import presenters
    from services.training.app import create_app
    from services.training.app_keys import STORE
    from services.training.models import RoundRequest
    from services.training.store import CommittedRound, LearnerRead, TrainingStore
    from shared.learner_state import decode
    from shared.responses import ok
    from shared.validation import learner_from, parse_body

    app = create_app(settings)
    fixed: dict[str, Any] = {}  # a real round's answer, taken once by /layers/take-fixed

    async def envelope(request: web.Request) -> web.Response:
        await request.read()
        return ok(result=fixed)

    async def parse(request: web.Request) -> web.Response:
        body = await parse_body(request, RoundRequest)
        learner_from(request, body.learner)
        return ok(result=fixed)

    async def locked_read(
        request: web.Request,
    ) -> tuple[TrainingStore, str, LearnerRead, Any, float]:
        """Up to the read: validation, then the learner read from Redis (not the cache) under
        its lock, as the round's own steps do it."""
        started = time.perf_counter()
        body = await parse_body(request, RoundRequest)
        learner = learner_from(request, body.learner)
        store = request.app[STORE]
        async with store.hold(learner):
            read, curriculum = await store.read(learner, cached=False)
        return store, learner, read, curriculum, started

    async def read(request: web.Request) -> web.Response:
        await locked_read(request)
        return ok(result=fixed)

    async def compute(request: web.Request) -> web.Response:
        store, learner, read, curriculum, started = await locked_read(request)
        # Outside the lock, unlike the real round: the lock's cost is the row above either way.
        state = decode(read.encoded)
        prepared = store.compute(learner, read, state, curriculum, started)
        # Answered as if committed (no round id, not ready): the answer's shape and cost.
        return ok(result=presenters.round_answer(CommittedRound(prepared, 0, False, started)))

    async def take_fixed(request: web.Request) -> web.Response:
        body = await parse_body(request, RoundRequest)
        done = await request.app[STORE].run_round(learner_from(request, body.learner))
        fixed.update(presenters.round_answer(done))
        return ok(result=fixed)

    app.router.add_post("/layers/envelope", envelope)
    app.router.add_post("/layers/parse", parse)
    app.router.add_post("/layers/read", read)
    app.router.add_post("/layers/compute", compute)
    app.router.add_post("/layers/take-fixed", take_fixed)
    return app


def serve() -> None:
    from shared.runner import run_service

    run_service("training", create_layered_app)


# ---- the driver ---------------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(seconds: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="tooloo-layers-") as tmp:
        redis = RedisServer(Path(tmp) / "redis").start()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLOO_")}
        env.update(
            REDIS_URL=redis.url,
            TOOLOO_REDIS_PREFIX="layers",
            TOOLOO_LOG_LEVEL="warning",
            TRAINING_PORT=str(port),
        )
        cmd = [sys.executable, "-m", "loadtests.bench_layers", "serve"]
        root = Path(__file__).resolve().parents[1]
        proc = subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while probe_json("GET", base + "/ready", timeout=1.0)[0] != 200:  # bounded
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the layered training process did not start")
                time.sleep(0.1)
            for learner in LEARNERS:
                probe_json("POST", base + "/api/v1/training/start", {"learner": learner})
            probe_json("POST", base + "/layers/take-fixed", {"learner": LEARNERS[0]})
            rows = []
            for path, what in LAYERS:
                cpu0 = _cpu_s(proc.pid)
                result = load_http(base + path, LEARNERS, seconds=seconds)
                cpu_us = (_cpu_s(proc.pid) - cpu0) / max(1, result.requests) * 1e6
                rows.append(
                    {
                        "layer": what,
                        "path": path,
                        "rps": result.rps,
                        "p99_ms": result.p99_ms,
                        "errors": result.errors,
                        "cpu_us": cpu_us,
                        "client": result.client,
                    }
                )
            return rows
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            redis.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "serve"))
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
        return
    rows = run(args.seconds)
    print(f"{'layer':<42} {'req/s':>8} {'p99 ms':>7} {'errors':>6} {'CPU µs/req':>10} {'+µs':>6}")
    previous = 0.0
    for row in rows:
        delta = row["cpu_us"] - previous
        previous = row["cpu_us"]
        print(
            f"{row['layer']:<42} {row['rps']:>8,.0f} {row['p99_ms']:>7.2f} {row['errors']:>6} "
            f"{row['cpu_us']:>10.1f} {delta:>+6.1f}"
        )
    print(f"(client: {rows[0]['client']}; 2 cores shared with the client: CPU per request is the")
    print(" comparable figure, requests/s move with whatever else the machine does)")


if __name__ == "__main__":
    main()
