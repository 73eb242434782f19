"""How long `tooloo backup` pauses the fleet's writers, per 10,000 learners, and what a restore
costs, with same-run references on the same Redis: a bare SCAN of the prefix (the floor of any
key-by-key snapshot) and Redis's own fork-based BGSAVE of the whole database.

    python -m loadtests.bench_backup                    # 10,000 learners, 5 rounds each
    python -m loadtests.bench_backup --learners 50000

A private redis-server and training process: onboarding fills the population, then every learner
gets rounds (histories, the rounds stream), then the backup's snapshot is timed under its write
pause, written to a file, and restored into another prefix.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from harness.redis_server import RedisServer
from tooloo_cli import snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    server = RedisServer(tmp / "redis")
    server.start()
    fleet = Fleet(server.url, "bench", tmp / "logs", {"TRAINING_ONBOARDING_RATE": "50000"})
    client = sync_redis.Redis.from_url(server.url)
    try:
        fleet.start("training")
        fleet.call("training", "GET", "/health")
        client.hset("bench:scale", mapping={"target": args.learners, "hold": 0, "paused": 0})
        wait_for(
            lambda: client.zcard("bench:learners") >= args.learners, "onboarding", timeout_s=600
        )
        ids = [m.decode() for m in client.zrange("bench:learners", 0, -1)]
        per_call = max(1, 1000 // args.rounds)
        for i in range(0, len(ids), per_call):
            status, body = fleet.call(
                "training",
                "POST",
                "/api/v1/training/rounds",
                {"learners": ids[i : i + per_call], "rounds_per_learner": args.rounds},
                timeout=60,
            )
            assert status == 200, body
        fleet.stop_all()
        keys = client.dbsize()
        memory = int(client.info("memory")["used_memory"])

        target = snapshot.connect(server.url)
        started = time.perf_counter()
        scanned = sum(len(page) for page in snapshot.scan_names(target.nodes[0], "bench"))
        scan_s = time.perf_counter() - started
        snap = snapshot.take(target, "bench", pause_ms=600_000)
        file = tmp / "bench.tlb"
        started = time.perf_counter()
        snapshot.write(snap, file, "bench", "bench")
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        backup = snapshot.read(file)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        snapshot.restore(target, backup, "copy")
        restore_s = time.perf_counter() - started
        target.close()

        before = client.lastsave()
        started = time.perf_counter()
        client.bgsave()
        wait_for(lambda: client.lastsave() != before, "bgsave", timeout_s=600, every_s=0.01)
        bgsave_s = time.perf_counter() - started

        per_10k = snap.paused_ms * 10_000 / args.learners
        print(f"learners {args.learners}, rounds each {args.rounds}, keys {keys} ({scanned} under")
        print(f"  the prefix), Redis memory {memory / 1e6:.1f} MB")
        print(f"writes paused (SCAN + DUMP)   {snap.paused_ms:8.0f} ms  ({per_10k:.0f} ms / 10k)")
        print(f"  reference: SCAN alone       {scan_s * 1000:8.0f} ms")
        print(f"  reference: BGSAVE (fork)    {bgsave_s * 1000:8.0f} ms  (writes not paused)")
        print(
            f"file write (gzip)             {write_s * 1000:8.0f} ms  {file.stat().st_size / 1e6:.1f} MB"
        )
        print(f"file read and check           {read_s * 1000:8.0f} ms")
        print(f"restore into an empty prefix  {restore_s * 1000:8.0f} ms")
    finally:
        fleet.stop_all()
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
