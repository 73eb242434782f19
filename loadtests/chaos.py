"""Chaos under load: kill -9 every service in turn, then Redis, then restart the whole fleet,
while Locust and a round client of our own drive it; measure recovery and check that nothing an
acknowledged client was told is lost or counted twice.

    python -m loadtests.chaos --minutes 5 --fault-gap-s 25

The fleet is started exactly as the README's run command does (`honcho start`, via
`harness.honcho.HonchoFleet`: free ports, the embedded Redis with its append-only file,
everysec, in a temporary directory). During the whole run:

- Locust (subprocess, headless, `TrainingClient` + `ControlRoomOperator` of
  `loadtests/locustfile.py`) drives the gateway;
- a `RoundWriter` (aiohttp, in a thread) posts `POST /api/v1/training/round` to the gateway for
  learners of its own and records every (learner, round id) it got a 2xx for.

Faults, `--fault-gap-s` apart after a warm-up: kill -9 of training, meta, coach, reports, web
(the orchestrator restarts each), kill -9 of the embedded redis-server (its wrapper,
`shared/embedded_redis.py`, restarts it from the append-only file), then — after the load has
stopped and the coach was stopped so the state is still — SIGTERM to honcho and `honcho start`
again on the same data directory.

Per fault it prints the seconds until the orchestrator says `armed` again (with a new process
for the killed service), until the round client gets a 2xx again, and the requests that failed
in the fault window (Locust's and the round client's). At the end: the error rate over the whole
run and the invariants (see `check_rounds`, `compare_states`): every acknowledged round is in
its learner's history exactly once and reports' total equals the fleet's round counter; after
the Redis kill only rounds acknowledged within ~1 s before it may be missing; every learner's
state after the full restart equals its state before; nothing of the fleet is left running
after SIGTERM; the coach coaches again after the restart (no stale lease). Results go to
`loadtests/results/chaos-<time>.json`.

The helpers (RoundWriter, kill_and_recover, kill_redis, check_rounds, snapshots) are also what
the short versions in the test suite use (tests/integration/test_chaos.py, test_durability.py).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.honcho import HonchoFleet
from harness.http import http_json
from harness.processes import ROOT, pid_alive
from shared import history
from shared.fleet import SUPERVISED
from shared.fleet_totals import learner_ids_sync

SERVICES = SUPERVISED
RESULTS = ROOT / "loadtests" / "results"
ARMED_TARGET_S = 3.0
ERROR_RATE_TARGET_PCT = 0.5
# AOF everysec: a round acknowledged this long before a Redis crash must have survived it.
CRASH_WINDOW_S = 1.0
# The run's history must hold every round of a learner, so the check is complete.
HISTORY_LIMIT = 10_000
HISTORY_API_MAX = 1000  # GET /api/v1/training/history?limit= is capped at 1000
WINDOW_TAIL_S = 2.0


# ---- the round client ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack:
    learner: str
    round: int
    n: int  # the learner's own round number
    t: float  # wall clock when the 2xx arrived
    sent: float  # wall clock when the request was sent


@dataclass
class RoundWriter:
    """POST /api/v1/training/round for its learners from `concurrency` workers, in a thread of
    its own (its own event loop), recording every acknowledged round and every failure.

    A failed request is followed by a 0.1 s pause, as a client that retries would; so a fault
    window counts failed attempts at that pace, not a hot loop's."""

    base_url: str
    learners: list[str]
    concurrency: int = 4
    per_worker_rps: float = 0.0  # 0 = as fast as the fleet answers
    timeout_s: float = 10.0
    acked: list[Ack] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_learners(self) -> None:
        """Start every learner (creates it; never resets), through the same URL."""
        for learner in self.learners:
            status, body = http_json(
                "POST", f"{self.base_url}/api/v1/training/start", {"learner": learner}
            )
            if status != 200:
                raise RuntimeError(f"start {learner}: {status} {body}")

    def start(self) -> RoundWriter:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)

    def last_ack_time(self) -> float:
        return self.acked[-1].t if self.acked else 0.0

    def acks_after(self, t: float) -> int:
        return sum(1 for a in reversed(self.acked) if a.t > t) if self.acked else 0

    def failures_between(self, t0: float, t1: float) -> int:
        return sum(1 for t, _ in self.failures if t0 <= t <= t1)

    async def _main(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._worker(session, i) for i in range(self.concurrency)))

    async def _worker(self, session: Any, index: int) -> None:
        rng = random.Random(index)
        gap = 1.0 / self.per_worker_rps if self.per_worker_rps > 0 else 0.0
        url = f"{self.base_url}/api/v1/training/round"
        while not self._stop.is_set():  # bounded by stop()
            learner = rng.choice(self.learners)
            t0, sent = time.monotonic(), time.time()
            self.requests += 1
            try:
                async with session.post(url, json={"learner": learner}) as resp:
                    body = await resp.json(content_type=None)
                    if 200 <= resp.status < 300:
                        result = body["result"]
                        self.acked.append(
                            Ack(
                                learner,
                                int(result["round"]),
                                int(result["learnerRound"]),
                                time.time(),
                                sent,
                            )
                        )
                    else:
                        code = (
                            (body or {}).get("error", {}).get("code")
                            if isinstance(body, dict)
                            else None
                        )
                        self.failures.append((time.time(), f"HTTP {resp.status} {code}"))
                        await asyncio.sleep(0.1)
            except Exception as exc:  # connection refused/reset, timeout, bad body: a failure
                self.failures.append((time.time(), exc.__class__.__name__))
                await asyncio.sleep(0.1)
            if gap:
                await asyncio.sleep(max(0.0, gap - (time.monotonic() - t0)))


# ---- faults --------------------------------------------------------------------------------
def armed_with_new(fleet: HonchoFleet, name: str, old_pid: int) -> bool:
    entry = fleet.processes().get(name) or {}
    if entry.get("pid") in (None, old_pid) or entry.get("state") != "running":
        return False
    status = fleet.status() or {}
    return status.get("phase") == "armed"


def wait_rounds_flowing(writer: RoundWriter | None, since: float, timeout_s: float) -> float | None:
    """Seconds from `since` (wall clock) to the first 2xx of a request sent after it."""
    if writer is None:
        return None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded poll
        after = [a.t for a in writer.acked[-500:] if a.sent > since]
        if after:
            return min(after) - since
        time.sleep(0.02)
    return None


def kill_and_recover(
    fleet: HonchoFleet, name: str, writer: RoundWriter | None = None, timeout_s: float = 30.0
) -> dict[str, Any]:
    """kill -9 one service; seconds until the fleet is armed with a new process for it, and
    until the round client is answered again."""
    old = fleet.processes()[name]["pid"]
    t_kill_wall, t_kill = time.time(), time.monotonic()
    os.kill(old, signal.SIGKILL)
    fleet.wait_for(lambda: armed_with_new(fleet, name, old), timeout_s, f"{name} back", 0.02)
    armed_s = time.monotonic() - t_kill
    flowing = wait_rounds_flowing(writer, t_kill_wall, timeout_s)
    return {
        "fault": f"kill -9 {name}",
        "pid": old,
        "t_kill": t_kill_wall,
        "armed_s": round(armed_s, 3),
        "rounds_again_s": None if flowing is None else round(flowing, 3),
        "t_recovered": time.time(),
    }


def redis_server_pid(fleet: HonchoFleet) -> int:
    with fleet.redis() as client:
        return int(client.info("server")["process_id"])


def redis_answers(fleet: HonchoFleet) -> bool:
    import redis as sync_redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        # No retries: the client's default back-off would blur the moment Redis is back.
        with sync_redis.Redis.from_url(
            fleet.redis_url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        ) as client:
            return bool(client.ping())
    except sync_redis.RedisError:  # refused, or still loading the append-only file
        return False


def kill_redis(
    fleet: HonchoFleet, writer: RoundWriter | None = None, timeout_s: float = 30.0
) -> dict[str, Any]:
    """kill -9 the embedded redis-server (not its wrapper); seconds until it answers again (the
    wrapper restarted it and it replayed its append-only file), until the fleet is armed and
    until rounds are acknowledged again."""
    pid = redis_server_pid(fleet)
    t_kill_wall, t_kill = time.time(), time.monotonic()
    os.kill(pid, signal.SIGKILL)
    fleet.wait_for(lambda: not pid_alive(pid), 5, "redis-server gone", 0.01)
    fleet.wait_for(lambda: redis_answers(fleet), timeout_s, "redis-server back", 0.02)
    redis_s = time.monotonic() - t_kill
    new_pid = redis_server_pid(fleet)
    fleet.wait_armed(timeout_s)
    armed_s = time.monotonic() - t_kill
    flowing = wait_rounds_flowing(writer, t_kill_wall, timeout_s)
    return {
        "fault": "kill -9 redis-server",
        "pid": pid,
        "new_pid": new_pid,
        "t_kill": t_kill_wall,
        "redis_back_s": round(redis_s, 3),
        "armed_s": round(armed_s, 3),
        "rounds_again_s": None if flowing is None else round(flowing, 3),
        "t_recovered": time.time(),
    }


# ---- quiet fleet, checks -------------------------------------------------------------------
def quiesce(fleet: HonchoFleet, timeout_s: float = 30.0) -> None:
    """Stop the coach (nothing else writes rounds once the clients stopped) and wait until the
    round counter, meta's triggers and reports have settled: reports' total = the counter."""
    status, body = fleet.post("coach", "/api/v1/auto-coach/stop", {})
    if status != 200:
        raise RuntimeError(f"coach stop: {status} {body}")

    def settled() -> bool:
        seq = fleet.rounds_committed()
        time.sleep(0.3)
        with fleet.redis() as client:
            pending = 0
            for shard in fleet.keys.all_shards():
                try:
                    pending += int(
                        client.xpending(fleet.keys.stream_meta(shard), "coach")["pending"]
                    )
                except Exception:  # no group yet: nothing pending
                    pass
        return seq == fleet.rounds_committed() and pending == 0 and reports_total(fleet) == seq

    fleet.wait_for(settled, timeout_s, "rounds, meta triggers and reports settled", 0.2)


def reports_total(fleet: HonchoFleet) -> int | None:
    status, body = fleet.get("reports", "/api/v1/reports/status")
    return int(body["status"]["rounds_total"]) if status == 200 else None


def learner_history(fleet: HonchoFleet, learner: str) -> tuple[list[dict[str, Any]], str]:
    """The learner's whole history: through the API, or (when it holds more than the API's page
    of 1000) straight from Redis. Returns the entries and where they came from."""
    status, body = fleet.get(
        "training", f"/api/v1/training/history?learner={learner}&limit={HISTORY_API_MAX}"
    )
    if status != 200:
        raise RuntimeError(f"history {learner}: {status} {body}")
    if len(body["history"]) < HISTORY_API_MAX:
        return body["history"], "api"
    with fleet.redis() as client:
        raw = client.get(fleet.keys.learner_history(learner))
    return history.decode(raw), "redis"


def check_rounds(
    fleet: HonchoFleet,
    acked: list[Ack],
    crash_times: list[float] = (),  # type: ignore[assignment]
    crash_window_s: float = CRASH_WINDOW_S,
) -> dict[str, Any]:
    """Every acknowledged round in its learner's history exactly once; the learners' histories
    complete (length = the learner's round count) and their round ids unique fleet-wide;
    reports' total = the round counter. An acknowledged round missing only counts as allowed
    when it was acknowledged within `crash_window_s` before a Redis crash."""
    learners = sorted({a.learner for a in acked})
    ids: dict[int, str] = {}
    duplicates: list[int] = []
    by_learner: dict[str, dict[int, dict[str, Any]]] = {}
    sources: dict[str, int] = {}
    incomplete: list[str] = []
    for learner in learners:
        history, source = learner_history(fleet, learner)
        sources[source] = sources.get(source, 0) + 1
        entries: dict[int, dict[str, Any]] = {}
        for entry in history:
            rid = int(entry["round"])
            if rid in entries or rid in ids:
                duplicates.append(rid)
            entries[rid] = entry
            ids[rid] = learner
        by_learner[learner] = entries
        status, body = fleet.get("training", f"/api/v1/learners/{learner}")
        if status != 200 or int(body["learner"]["rounds"]) != len(history):
            incomplete.append(learner)
    missing_allowed, missing, wrong = [], [], []
    seen: set[tuple[str, int]] = set()
    acked_twice = 0
    for ack in acked:
        if (ack.learner, ack.round) in seen:
            acked_twice += 1
        seen.add((ack.learner, ack.round))
        entry = by_learner[ack.learner].get(ack.round)
        if entry is None:
            in_window = any(c - crash_window_s <= ack.t <= c for c in crash_times)
            (missing_allowed if in_window else missing).append(asdict(ack))
        elif int(entry.get("n", -1)) != ack.n:
            wrong.append(asdict(ack))
    seq = fleet.rounds_committed()
    total = reports_total(fleet)
    return {
        "acknowledged": len(acked),
        "learners": len(learners),
        "history_source": sources,
        "missing": len(missing),
        "missing_examples": missing[:10],
        "missing_in_crash_window": len(missing_allowed),
        "missing_in_crash_window_examples": missing_allowed[:10],
        "wrong_learner_round": len(wrong),
        "duplicate_round_ids": len(duplicates),
        "acknowledged_twice": acked_twice,
        "histories_incomplete": incomplete,
        "rounds_seq": seq,
        "reports_total": total,
        "reports_equal_seq": total == seq,
        "ok": not missing and not wrong and not duplicates and not acked_twice
        and not incomplete and total == seq,
    }  # fmt: skip


def raw_states(fleet: HonchoFleet) -> dict[str, dict[str, str]]:
    """Every learner's stored state hash (`v`, `s`, `r`), read from Redis."""
    with fleet.redis() as client:
        learners = learner_ids_sync(client, fleet.keys)
        pipe = client.pipeline(transaction=False)
        for learner in learners:
            pipe.hgetall(fleet.keys.learner_state(learner))
        return dict(zip(learners, pipe.execute(), strict=True))


# What GET /api/v1/learners/{id} answers that does not move with the clock (mastery and skill
# are displayed with forgetting applied at the time of the request).
STABLE_FIELDS = ("id", "region", "active", "created", "rounds", "retention", "transfer", "ready")
STABLE_DOMAIN_FIELDS = ("attempts", "half_life_s", "last_practised")


def api_state(fleet: HonchoFleet, learner: str) -> dict[str, Any]:
    status, body = fleet.get("training", f"/api/v1/learners/{learner}")
    if status != 200:
        raise RuntimeError(f"learner {learner}: {status} {body}")
    doc = body["learner"]
    return {
        **{k: doc.get(k) for k in STABLE_FIELDS},
        "domains": {
            key: {k: d.get(k) for k in STABLE_DOMAIN_FIELDS} for key, d in doc["domains"].items()
        },
    }


def compare_states(
    before_raw: dict[str, dict[str, str]],
    after_raw: dict[str, dict[str, str]],
    before_api: dict[str, dict[str, Any]],
    after_api: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    raw_diff = sorted(k for k in before_raw if after_raw.get(k) != before_raw[k])
    api_diff = sorted(k for k in before_api if k in after_api and after_api[k] != before_api[k])
    return {
        "learners": len(before_raw),
        "stored_state_different": raw_diff[:20],
        "stored_state_different_count": len(raw_diff),
        "extra_after": sorted(set(after_raw) - set(before_raw))[:20],
        "api_compared": len(after_api),
        "api_different": api_diff[:20],
        "ok": not raw_diff and not api_diff and set(after_raw) == set(before_raw),
    }


def full_restart(fleet: HonchoFleet, timeout_s: float = 60.0) -> dict[str, Any]:
    """SIGTERM honcho, check nothing of the fleet is left, `honcho start` again on the same data
    directory. The stored state is read the moment Redis answers (before any service has
    connected), and through the API once training is back, for every learner whose stored
    state has not changed since (the coach resumes at once). Returns figures and snapshots."""
    before_raw = raw_states(fleet)
    learners = sorted(before_raw)
    before_api = {learner: api_state(fleet, learner) for learner in learners}
    seq_before = fleet.rounds_committed()
    fleet.record_pids()
    pids = set(fleet.pids_seen)
    t0 = time.monotonic()
    code = fleet.stop(timeout_s=30)
    stop_s = time.monotonic() - t0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):  # bounded
        time.sleep(0.05)
    left = sorted(p for p in pids if pid_alive(p))

    t_start = time.monotonic()
    fleet.start()
    fleet.wait_for(lambda: redis_answers(fleet), timeout_s, "redis after restart", 0.005)
    after_raw = raw_states(fleet)  # before the services are up: exactly what was persisted
    # Read with it, not after the fleet is armed: pre-arm starts the coach again, and its first
    # rounds would count as if they had survived the restart.
    seq_after = fleet.rounds_committed()
    fleet.wait_armed(timeout_s)
    armed_s = time.monotonic() - t_start
    after_api = {}
    stored_now = raw_states(fleet)
    for learner in learners:
        if stored_now.get(learner) == after_raw.get(learner):  # untouched since the restart
            after_api[learner] = api_state(fleet, learner)
    states = compare_states(before_raw, after_raw, before_api, after_api)
    return {
        "fault": "SIGTERM fleet + honcho start",
        "honcho_exit": code,
        "stop_s": round(stop_s, 3),
        "pids_checked": len(pids),
        "pids_left": left,
        "armed_s": round(armed_s, 3),
        "rounds_seq_before": seq_before,
        "rounds_seq_at_restart": seq_after,
        "states": states,
    }


def coaching_resumes(fleet: HonchoFleet, timeout_s: float = 15.0) -> dict[str, Any]:
    """After a restart: the coach leads (no lease left by the previous instance blocks it) and
    coaches. A learner started now needs coaching (after a long run the others may all be
    ready, leaving the coach nothing to do), so it must get rounds from the coach alone."""
    t0 = time.monotonic()
    learner = f"after-restart-{int(time.time() * 1000)}"
    status, body = fleet.post("training", "/api/v1/training/start", {"learner": learner})
    if status != 200:
        raise RuntimeError(f"start {learner}: {status} {body}")

    def leading() -> bool:
        status, body = fleet.get("coach", "/api/v1/auto-coach/status")
        return status == 200 and body["status"]["leader"] and body["status"]["active"]

    def coached() -> bool:
        status, body = fleet.get("training", f"/api/v1/learners/{learner}")
        return status == 200 and int(body["learner"]["rounds"]) > 0

    fleet.wait_for(leading, timeout_s, "coach leading and active", 0.05)
    fleet.wait_for(coached, timeout_s, f"coach rounds for {learner}", 0.05)
    return {"coach_rounds_again_s": round(time.monotonic() - t0, 3), "coached_learner": learner}


# ---- Locust --------------------------------------------------------------------------------
def start_locust(
    host: str, seconds: int, csv_prefix: Path, users: int, population: int
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
    cmd = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
        "--headless", "--host", host, "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{seconds}s", "--stop-timeout", "3", "--csv", str(csv_prefix),
        "--only-summary", "--loglevel", "ERROR",
        "--population", str(population), "--learners-per-user", "10",
        "TrainingClient", "ControlRoomOperator",
    ]  # fmt: skip
    log = csv_prefix.with_suffix(".locust.log").open("wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def locust_history(csv_prefix: Path) -> list[tuple[float, int, int]]:
    """(time, cumulative requests, cumulative failures) of Locust's aggregated history."""
    rows = []
    path = Path(f"{csv_prefix}_stats_history.csv")
    if not path.exists():
        return rows
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") == "Aggregated":
                rows.append(
                    (
                        float(row["Timestamp"]),
                        int(row["Total Request Count"]),
                        int(row["Total Failure Count"]),
                    )
                )
    return rows


def locust_failures_between(history: list[tuple[float, int, int]], t0: float, t1: float) -> int:
    """Failures in [t0, t1], at the history's one-second resolution (widened to whole rows).

    Locust stamps a row with int(time.time()) when it writes it, so a row stamped T counts
    failures up to some moment in [T, T+1): only rows stamped T <= t0 - 1 are surely before t0.
    """
    before = [f for t, _, f in history if t + 1 <= t0]
    after = [f for t, _, f in history if t >= t1]
    start = before[-1] if before else 0
    end = after[0] if after else (history[-1][2] if history else 0)
    return max(0, end - start)


def locust_totals(csv_prefix: Path) -> dict[str, Any]:
    path = Path(f"{csv_prefix}_stats.csv")
    if not path.exists():
        return {"requests": 0, "failures": 0}
    with path.open(newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    agg = rows.get("Aggregated") or {}
    return {
        "requests": int(agg.get("Request Count") or 0),
        "failures": int(agg.get("Failure Count") or 0),
        "by_name": {
            n: {"requests": int(r["Request Count"]), "failures": int(r["Failure Count"])}
            for n, r in rows.items()
            if n != "Aggregated"
        },
    }


# ---- the run -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv_prefix = RESULTS / f"chaos-{stamp}-locust"
    faults_before_restart = len(SERVICES) + 1
    total_s = int(args.minutes * 60)
    fault_phase_s = args.warmup_s + faults_before_restart * args.fault_gap_s
    if total_s < fault_phase_s:
        raise SystemExit(
            f"--minutes {args.minutes} is shorter than the faults need ({fault_phase_s:.0f} s: "
            f"warm-up {args.warmup_s} s + {faults_before_restart} faults x {args.fault_gap_s} s)"
        )
    fleet = HonchoFleet(
        extra_env={"TRAINING_HISTORY_LIMIT": str(HISTORY_LIMIT)}, log_dir=RESULTS / f"chaos-{stamp}"
    )
    out: dict[str, Any] = {
        "started": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": vars(args),
        "faults": [],
    }
    writer: RoundWriter | None = None
    locust: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        fleet.start()
        fleet.wait_armed(60)
        out["honcho_start_to_armed_s"] = round(time.monotonic() - t0, 3)
        print(f"fleet armed in {out['honcho_start_to_armed_s']} s (logs: {fleet.log_path})")
        web = fleet.url("web")
        learners = [f"chaos-{i:03d}" for i in range(args.learners)]
        writer = RoundWriter(web, learners, args.writer_concurrency, args.writer_rps)
        writer.start_learners()
        # Locust until the final restart; the restart is judged on a quiet fleet.
        locust = start_locust(web, int(total_s), csv_prefix, args.users, args.population)
        writer.start()
        run_t0 = time.time()
        time.sleep(args.warmup_s)
        crash_times: list[float] = []
        for name in (*SERVICES, "redis"):
            if name == "redis":
                fault = kill_redis(fleet, writer)
                crash_times.append(fault["t_kill"])
            else:
                fault = kill_and_recover(fleet, name, writer)
            out["faults"].append(fault)
            print(_fault_line(fault), flush=True)
            time.sleep(max(0.0, args.fault_gap_s - (time.time() - fault["t_kill"])))
        remaining = total_s - (time.time() - run_t0)
        if remaining > 0:
            time.sleep(remaining)
        writer.stop()
        if locust.poll() is None:
            locust.wait(timeout=60)
        run_t1 = time.time()
        history = locust_history(csv_prefix)
        totals = locust_totals(csv_prefix)
        for fault in out["faults"]:
            # The fault window: from the kill until WINDOW_TAIL_S after the fleet was armed and
            # the round client answered again (Locust's history has a one-second resolution).
            window = (fault["t_kill"], fault["t_recovered"] + WINDOW_TAIL_S)
            fault["window_s"] = round(window[1] - window[0], 3)
            fault["failed_locust"] = locust_failures_between(history, *window)
            fault["failed_round_client"] = writer.failures_between(*window)
        in_windows = sum(f["failed_round_client"] for f in out["faults"])
        locust_in_windows = sum(f["failed_locust"] for f in out["faults"])
        requests = totals["requests"] + writer.requests
        failures = totals["failures"] + len(writer.failures)
        out["load"] = {
            "duration_s": round(run_t1 - run_t0, 1),
            "locust": {
                **totals,
                "failures_outside_fault_windows": max(0, totals["failures"] - locust_in_windows),
            },
            "round_client": {
                "requests": writer.requests,
                "acknowledged": len(writer.acked),
                "failures": len(writer.failures),
                "failures_outside_fault_windows": len(writer.failures) - in_windows,
            },
            "requests": requests,
            "failures": failures,
            "error_rate_pct": round(failures / requests * 100, 4) if requests else None,
        }
        quiesce(fleet)
        rounds = check_rounds(fleet, writer.acked, crash_times)
        out["rounds"] = rounds
        restart = full_restart(fleet)
        restart.update(coaching_resumes(fleet))
        restart["round_ids_continue"] = restart["rounds_seq_at_restart"] >= rounds["rounds_seq"]
        out["restart"] = restart
        print(_fault_line({**restart, "t_kill": 0}), flush=True)
    finally:
        if writer is not None:
            writer.stop()
        if locust is not None and locust.poll() is None:
            locust.send_signal(signal.SIGINT)
            try:
                locust.wait(timeout=20)
            except subprocess.TimeoutExpired:
                locust.kill()
        fleet.stop()
        fleet.cleanup()
    out["verdict"] = verdict(out)
    path = RESULTS / f"chaos-{stamp}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print_summary(out)
    print(f"results: {path}")
    return out


def verdict(out: dict[str, Any]) -> dict[str, bool]:
    service_faults = [f for f in out["faults"] if f["fault"] != "kill -9 redis-server"]
    restart = out["restart"]
    return {
        "armed_within_3s_after_each_service_kill": all(
            f["armed_s"] <= ARMED_TARGET_S for f in service_faults
        ),
        "error_rate_below_0.5pct": (out["load"]["error_rate_pct"] or 0) < ERROR_RATE_TARGET_PCT,
        "acknowledged_rounds_all_present_once": out["rounds"]["ok"],
        "state_equal_after_restart": restart["states"]["ok"],
        "nothing_left_after_sigterm": not restart["pids_left"],
        "coach_resumes_after_restart": restart.get("coach_rounds_again_s") is not None,
        "round_ids_continue": restart["round_ids_continue"],
    }


def _fault_line(f: dict[str, Any]) -> str:
    parts = [f"{f['fault']:<30}", f"armed again {f['armed_s']:.3f} s"]
    if f.get("rounds_again_s") is not None:
        parts.append(f"rounds again {f['rounds_again_s']:.3f} s")
    if "redis_back_s" in f:
        parts.append(f"redis answering {f['redis_back_s']:.3f} s")
    if "stop_s" in f:
        parts.append(f"stopped in {f['stop_s']:.3f} s, left running {len(f['pids_left'])}")
    return "  ".join(parts)


def print_summary(out: dict[str, Any]) -> None:
    print("\nfault                           armed_s  rounds_again_s  failed(locust/client)")
    for f in out["faults"]:
        again = "-" if f.get("rounds_again_s") is None else f"{f['rounds_again_s']:.3f}"
        print(
            f"{f['fault']:<30} {f['armed_s']:>8.3f} {again:>15}  "
            f"{f.get('failed_locust', '-')}/{f.get('failed_round_client', '-')}"
        )
    if "restart" in out:
        r = out["restart"]
        print(
            f"{'SIGTERM + honcho start':<30} {r['armed_s']:>8.3f} {'-':>15}  (stop {r['stop_s']} s,"
            f" coach rounds again {r.get('coach_rounds_again_s')} s after armed)"
        )
    if "load" in out:
        load = out["load"]
        print(
            f"\nrequests {load['requests']}, failed {load['failures']}, error rate "
            f"{load['error_rate_pct']} % over {load['duration_s']} s (Locust "
            f"{load['locust']['requests']}/{load['locust']['failures']}, round client "
            f"{load['round_client']['requests']}/{load['round_client']['failures']}; "
            f"failures outside the fault windows: Locust "
            f"{load['locust']['failures_outside_fault_windows']}, round client "
            f"{load['round_client']['failures_outside_fault_windows']})"
        )
    if "rounds" in out:
        r = out["rounds"]
        print(
            f"acknowledged rounds {r['acknowledged']}: missing {r['missing']}, missing within "
            f"{CRASH_WINDOW_S:g} s before the Redis kill {r['missing_in_crash_window']}, "
            f"duplicate ids {r['duplicate_round_ids']}, reports total {r['reports_total']} vs "
            f"rounds_seq {r['rounds_seq']}"
        )
    if "restart" in out:
        s = out["restart"]["states"]
        print(
            f"state after restart: {s['learners']} learners stored, different "
            f"{s['stored_state_different_count']}; {s['api_compared']} compared through the API,"
            f" different {len(s['api_different'])}; processes left {out['restart']['pids_left']}"
        )
    for name, passed in (out.get("verdict") or {}).items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the loaded run")
    parser.add_argument("--fault-gap-s", type=float, default=25.0, help="seconds between faults")
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--users", type=int, default=6, help="Locust users")
    parser.add_argument("--population", type=int, default=200, help="Locust learner population")
    parser.add_argument("--learners", type=int, default=40, help="round client's learners")
    parser.add_argument("--writer-concurrency", type=int, default=4)
    parser.add_argument("--writer-rps", type=float, default=25.0, help="per worker; 0 = max")
    args = parser.parse_args(argv)
    out = run(args)
    sys.exit(0 if all(out["verdict"].values()) else 1)


if __name__ == "__main__":
    main()
