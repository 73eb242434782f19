"""Redis memory per learner at steady state: every key of one learner (state, history, meta state,
meta log), measured with `MEMORY USAGE` on learners that ran rounds through the real HTTP round
path and had meta-learning run, against the 2 KiB target.

    python -m loadtests.bench_memory                      # 20 learners, 200 rounds each
    python -m loadtests.bench_memory --learners 40 --rounds 250

A private redis-server, training and meta process. Each learner is started, gets its rounds one
`POST /api/v1/training/round` at a time (several learners in parallel), has meta-learning started
halfway and `run-all` after its last round (the coach's trigger). Then every learner's keys are
measured; the medians and spreads (min, max) per key and of the total are printed and written as
JSON under loadtests/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.fleet import Fleet
from harness.redis_server import RedisServer
from shared.keys import Keys

TARGET_BYTES = 2048
RESULTS = Path(__file__).parent / "results"


def learner_memory(client: Any, keys: Keys, learner: str) -> dict[str, int]:
    """`MEMORY USAGE` (SAMPLES 0: every element) of each of the learner's keys, 0 when absent."""
    named = {
        "state": keys.learner_state(learner),
        "history": keys.learner_history(learner),
        "meta": keys.learner_meta(learner),
        "meta_log": keys.learner_meta_log(learner),
    }
    return {name: int(client.memory_usage(key, samples=0) or 0) for name, key in named.items()}


def drive(fleet: Fleet, learner: str, rounds: int) -> None:
    def call(service: str, path: str, body: dict[str, Any]) -> None:
        status, answer = fleet.call(service, "POST", path, body, timeout=30)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {answer}")

    call("training", "/api/v1/training/start", {"learner": learner})
    for i in range(rounds):
        call("training", "/api/v1/training/round", {"learner": learner})
        if i == rounds // 2:
            call("meta", "/api/v4/meta-learning/start", {"learner": learner})
    call("meta", "/api/v4/meta-learning/run-all", {"learner": learner})


def spread(values: list[int]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--label", default="", help="a name for this run in the JSON file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    server = RedisServer(tmp / "redis")
    server.start()
    fleet = Fleet(server.url, "bench", tmp / "logs", {"TRAINING_ONBOARDING_RATE": "1"})
    learners = [f"mem-{i}" for i in range(args.learners)]
    try:
        fleet.start("training", "meta")
        started = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(lambda x: drive(fleet, x, args.rounds), learners))
        drive_s = time.perf_counter() - started
        client = fleet.redis()
        keys = Keys("bench")
        per = [learner_memory(client, keys, x) for x in learners]
        client.close()
    finally:
        fleet.stop_all()
        server.stop()
    names = list(per[0])
    figures = {name: spread([p[name] for p in per]) for name in names}
    totals = [sum(p.values()) for p in per]
    figures["total"] = spread(totals)
    print(f"{args.learners} learners, {args.rounds} rounds each, meta run ({drive_s:.1f} s)")
    print(f"{'key':10} {'median':>8} {'min':>8} {'max':>8}   (bytes of MEMORY USAGE)")
    for name, f in figures.items():
        print(f"{name:10} {f['median']:8.0f} {f['min']:8.0f} {f['max']:8.0f}")
    verdict = "meets" if figures["total"]["median"] <= TARGET_BYTES else "misses"
    print(f"total median {figures['total']['median']:.0f} B vs target {TARGET_BYTES} B: {verdict}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_memory-{time.strftime('%Y%m%dT%H%M%S')}.json"
    doc = {
        "bench": "memory",
        "label": args.label,
        "learners": args.learners,
        "rounds": args.rounds,
        "target_bytes": TARGET_BYTES,
        "figures": figures,
        "per_learner": per,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
