"""The meta service as a real process against a real redis-server. Learners are created directly
in Redis (create_learner script + an encoded LearnerState with practised domains), as training
would leave them.

Backends: the tests that run phases, batches, boosts and triggers run on the single Redis and on
the 3-master Redis Cluster; the input checks (pause, boost validation, the OpenAPI list) run on the
single Redis only, to keep the suite's time: they touch no Redis behaviour a cluster changes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from harness.fleet import Fleet
from services.meta.packing import unpack
from shared.keys import Keys
from shared.learner_state import DomainState, LearnerState, decode, encode
from shared.scripts import Scripts

pytestmark = [pytest.mark.integration, pytest.mark.backends("single", "cluster")]

BASE = "/api/v4/meta-learning"


def practised_state(learner: str, *, level: float) -> LearnerState:
    """A learner with some practised domains; `level` in (0, 1] scales how far it got."""
    now = time.time()
    doms = {}
    for i, key in enumerate(("dsa", "os", "networks", "ml")[: 1 + int(level * 3)]):
        base = int(30 + 50 * level)
        doms[key] = DomainState(
            skill=0.2 + 0.7 * level,
            half_life=6 * 3600.0 * (1 + 4 * level),
            last=now - 3600 * (1 + i) / level,
            attempts=int(5 + 10 * level),
            completed=3,
            mastery=float(base + 10),
            confidence=40 + 40 * level,
            scores=[base, base + 5, base + 8, base + 12],
        )
    return LearnerState(id=learner, seed=3, region="eu", created=now, active=True, domains=doms)


async def create(redis, scripts: Scripts, keys: Keys, state: LearnerState) -> None:
    await scripts.create_learner(
        keys=keys.create_learner_keys(state.id),
        args=[state.id, encode(state), state.region, 1],
    )


async def read_state(redis, keys: Keys, learner: str) -> tuple[int, LearnerState]:
    v, s = await redis.hmget(keys.learner_state(learner), ["v", "s"])
    return int(v), decode(s)


async def meta_events(redis, keys: Keys) -> list:
    """Every shard's meta stream entries (a learner's events go to its shard's stream)."""
    out = []
    for shard in keys.all_shards():
        out += await redis.xrange(keys.stream_meta(shard))
    return out


@pytest.fixture
def meta(fleet: Fleet):
    fleet.start("meta")
    return fleet["meta"]


async def test_metrics_are_measured_from_each_learners_training_state(meta, redis, scripts, keys):
    await create(redis, scripts, keys, practised_state("hi", level=0.9))
    await create(redis, scripts, keys, practised_state("lo", level=0.2))
    status, hi = meta.get(f"{BASE}/metrics?learner=hi")
    assert status == 200, hi
    _, lo = meta.get(f"{BASE}/metrics?learner=lo")
    assert hi["live"] != lo["live"]
    assert hi["live"]["knowledgeRetention"] > lo["live"]["knowledgeRetention"]
    assert all(0.0 <= v <= 1.0 for v in hi["live"].values())
    # A GET changes nothing: no meta document yet, and the baseline is all zeros.
    assert not await redis.exists(keys.learner_meta("hi"))
    assert set(hi["metrics"]) == {"baseline", "current", "improvements"}

    status, body = meta.post(f"{BASE}/start", {"learner": "hi"})
    assert status == 200 and body["status"]["started"] is True
    baseline = body["status"]["metrics"]["baseline"]
    # The baseline is the measurement (velocity does not depend on the clock; retention does).
    assert baseline["learningVelocity"] == hi["live"]["learningVelocity"] > 0.0
    assert baseline["knowledgeRetention"] == pytest.approx(
        hi["live"]["knowledgeRetention"], abs=0.01
    )
    assert body["status"]["nextRecommendedPhase"] == 1

    status, body = meta.get(f"{BASE}/status?learner=nobody")
    assert status == 404 and body["error"]["code"] == "learner_not_found"


async def test_run_all_runs_four_phases_in_order_once_and_changes_the_learner_model(
    meta, redis, scripts, keys
):
    await create(redis, scripts, keys, practised_state("default", level=0.5))
    v0, before = await read_state(redis, keys, "default")

    status, body = meta.post(f"{BASE}/run-all", {})
    assert status == 200, body
    assert body["ran"] == [1, 2, 3, 4] and "delay_ms" not in body
    report = body["report"]
    assert report["completedPhases"] == 4 and report["nextPhase"] is None
    assert [report["phases"][str(n)]["name"] for n in (1, 2, 3, 4)] == [
        "Learning Analysis",
        "Meta-Learning Algorithms",
        "Adaptive Learning Strategies",
        "Learning Acceleration",
    ]
    for n, payload in ((1, "findings"), (2, "changes"), (3, "strategies"), (4, "results")):
        assert report["phases"][str(n)]["status"] == "completed"
        assert report["phases"][str(n)][payload]

    v1, after = await read_state(redis, keys, "default")
    assert v1 == v0 + 1
    assert after.retention > 1.0 and 0.0 < after.transfer <= 1.0
    assert all(after.domains[k].half_life > d.half_life for k, d in before.domains.items())

    status, again = meta.post(f"{BASE}/run-all", {"learner": "default"})
    assert status == 200 and again["ran"] == []
    assert (await read_state(redis, keys, "default"))[0] == v1  # nothing re-applied

    _, log = meta.get(f"{BASE}/activity-log?limit=200")
    messages = [e["message"] for e in log["log"]]
    done = [m for m in reversed(messages) if m.startswith("Phase") and "completed:" in m]
    assert done == [
        "Phase 1 completed: Learning Analysis",
        "Phase 2 completed: Meta-Learning Algorithms",
        "Phase 3 completed: Adaptive Learning Strategies",
        "Phase 4 completed: Learning Acceleration",
    ]
    assert meta.get(f"{BASE}/activity-log?limit=2")[1]["log"] == log["log"][:2]
    assert meta.get(f"{BASE}/activity-log?limit=0")[0] == 422
    assert meta.get(f"{BASE}/activity-log?limit=100000")[0] == 422

    status, ins = meta.get(f"{BASE}/insights")
    assert status == 200 and 0.0 <= ins["insights"]["readiness"] <= 1.0

    status, phase = meta.get(f"{BASE}/phase/4/report")
    assert status == 200 and phase["report"]["name"] == "Learning Acceleration"
    for bad in ("5", "0", "99999"):
        status, body = meta.get(f"{BASE}/phase/{bad}/report")
        assert status == 404 and body["error"]["message"] == "Phase not found"
    assert meta.get(f"{BASE}/phase/x/report")[0] == 422
    assert meta.get(f"{BASE}/phase/-1/report")[0] == 422


async def test_concurrent_run_all_runs_each_phase_once(meta, redis, scripts, keys):
    await create(redis, scripts, keys, practised_state("c", level=0.6))
    async with aiohttp.ClientSession() as http:

        async def call() -> dict:
            async with http.post(meta.url + f"{BASE}/run-all", json={"learner": "c"}) as resp:
                assert resp.status == 200
                return await resp.json()

        answers = await asyncio.gather(*(call() for _ in range(6)))
    ran = sorted(n for a in answers for n in a["ran"])
    assert ran == [1, 2, 3, 4]
    raw = await redis.lrange(keys.learner_meta_log("c"), 0, -1)
    messages = [unpack(e)["message"] for e in raw]  # stored packed (services/meta/packing.py)
    for n in (1, 2, 3, 4):
        assert sum(1 for m in messages if m.startswith(f"Phase {n} completed")) == 1
    _, metrics = meta.get(f"{BASE}/metrics?learner=c")
    assert [i["phase"] for i in metrics["metrics"]["improvements"]] == [4]
    assert await redis.hget(keys.meta_stats(keys.shard_of("c")), "phasesRun") == "4"
    assert meta.get(f"{BASE}/stats")[1]["stats"]["phasesRun"] == 4
    _, state = await read_state(redis, keys, "c")
    assert state.retention < 1.2  # phase 4's effect applied once (its plan is at most +0.15)
    assert not await redis.exists(keys.learner_meta_lock("c"))  # released


@pytest.mark.backends("single")  # input checks: nothing Redis-specific
async def test_pause_refuses_changes_and_resume_restores(meta, redis, scripts, keys):
    await create(redis, scripts, keys, practised_state("p", level=0.5))
    v0, _ = await read_state(redis, keys, "p")
    assert meta.post(f"{BASE}/pause", {}) == (200, {"ok": True, "paused": True})
    for path, body in (
        ("start", {"learner": "p"}),
        ("run-all", {"learner": "p", "trigger": {"round": 1, "ts": 1}}),
        ("run-batch", {"items": [{"learner": "p", "trigger": {"round": 1, "ts": 1}}]}),
        ("boost-retention", {"learner": "p"}),
        ("boost-retention", {"cohort": "all"}),
    ):
        status, answer = meta.post(f"{BASE}/{path}", body)
        assert status == 409 and answer["error"]["code"] == "meta_paused", (path, answer)
    assert (await read_state(redis, keys, "p"))[0] == v0
    assert not await redis.exists(keys.learner_meta("p"), keys.learner_meta_log("p"))
    assert not await redis.exists(keys.learner_meta_lock("p"))  # run-batch let its lock go
    assert await meta_events(redis, keys) == []
    status, body = meta.get(f"{BASE}/status?learner=p")
    assert status == 200 and body["status"]["paused"] is True
    assert meta.get(f"{BASE}/stats")[1]["stats"]["paused"] is True

    assert meta.post(f"{BASE}/resume", {}) == (200, {"ok": True, "paused": False})
    status, body = meta.post(f"{BASE}/run-all", {"learner": "p"})
    assert status == 200 and body["ran"] == [1, 2, 3, 4]
    assert meta.post(f"{BASE}/pause", {"x": 1})[0] == 422


async def test_run_batch_answers_each_learner_and_refuses_bad_batches(meta, redis, scripts, keys):
    for learner in ("r1", "r2"):
        await create(redis, scripts, keys, practised_state(learner, level=0.6))
    # r1 became ready at round 5 (the record commit_rounds writes); the trigger names it.
    await redis.hset(keys.learner_state("r1"), mapping={"rr": 5, "rt": int(time.time() * 1000)})
    item = {"learner": "r1", "trigger": {"round": 5, "ts": int(time.time() * 1000)}}
    bad = [
        {},
        {"items": []},
        {"items": [{"learner": f"x{i}"} for i in range(101)]},
        {"items": [{"learner": "bad id!"}]},
        {"items": [{"learner": "r1", "trigger": {"round": -1, "ts": 1}}]},
        {"items": [{**item, "extra": 1}]},
    ]
    for body in bad:
        status, answer = meta.post(f"{BASE}/run-batch", body)
        assert status in (400, 422) and answer["ok"] is False, (body, answer)
    assert not await redis.exists(keys.learner_meta("r1"))  # refused batches changed nothing

    status, body = meta.post(
        f"{BASE}/run-batch", {"items": [item, {"learner": "ghost"}, {"learner": "r2"}]}
    )
    assert status == 200
    first, ghost, second = body["results"]
    assert first["learner"] == "r1" and first["status"] == 200 and first["ran"] == [1, 2, 3, 4]
    assert 0 <= first["delay_ms"] < 60_000
    assert ghost == {
        "learner": "ghost",
        "status": 404,
        "error": {
            "code": "learner_not_found",
            "message": "Learner 'ghost' not found",
            "details": {"learner": "ghost"},
        },
    }
    assert second["status"] == 200 and "delay_ms" not in second
    # As stored as run-all would have it: one completed event for the trigger, phase 4 applied.
    report = meta.get(f"{BASE}/report?learner=r1")[1]["report"]
    assert report["completedPhases"] == 4
    events = [f for _, f in await meta_events(redis, keys) if f["type"] == "completed"]
    # Each in its learner's shard's stream: no order between them.
    assert sorted((e["learner"], e.get("round")) for e in events) == [("r1", "5"), ("r2", None)]
    # The same trigger again, and the learner listed twice (it runs once, with its first item):
    # answered once, nothing run twice, no second event.
    status, body = meta.post(f"{BASE}/run-batch", {"items": [item, {"learner": "r1"}]})
    assert status == 200 and len(body["results"]) == 1 and body["results"][0]["ran"] == []
    assert len(await meta_events(redis, keys)) == 2
    for learner in ("r1", "r2", "ghost"):
        assert not await redis.exists(keys.learner_meta_lock(learner))


@pytest.mark.backends("single")  # input checks: nothing Redis-specific
async def test_boost_retention_validates_and_changes_nothing_on_bad_input(
    meta, redis, scripts, keys
):
    await create(redis, scripts, keys, practised_state("b", level=0.5))
    v0, _ = await read_state(redis, keys, "b")
    bad = [
        {"learner": "b", "retentionDelta": -0.1},
        {"learner": "b", "retentionDelta": 0.51},
        {"learner": "b", "transferDelta": 2},
        {"learner": "b", "retentionDelta": "NaN"},
        {"learner": "b", "retentionDelta": "0.1"},
        {"learner": "b", "transferDelta": None},
        {"learner": "b", "extra": 1},
        {"learner": "b", "cohort": "all"},
        {"cohort": "some"},
        {"learner": "bad id!"},
    ]
    for body in bad:
        status, answer = meta.post(f"{BASE}/boost-retention", body)
        assert status == 422 and answer["ok"] is False, (body, answer)
    assert (await read_state(redis, keys, "b"))[0] == v0
    assert not await redis.exists(keys.learner_meta("b"))
    status, answer = meta.post(f"{BASE}/boost-retention", {"learner": "ghost"})
    assert status == 404 and answer["error"]["code"] == "learner_not_found"


async def test_boost_retention_changes_one_learner_model(meta, redis, scripts, keys):
    await create(redis, scripts, keys, practised_state("b", level=0.5))
    _, before = await read_state(redis, keys, "b")
    status, body = meta.post(
        f"{BASE}/boost-retention", {"learner": "b", "retentionDelta": 0.2, "transferDelta": 0.3}
    )
    assert status == 200, body
    booster = body["booster"]
    assert booster["ok"] is True and booster["after"]["kr"] > booster["before"]["kr"]
    assert booster["after"]["te"] > booster["before"]["te"]
    assert body["metrics"]["improvements"][-1]["phase"] == "booster"
    _, after = await read_state(redis, keys, "b")
    assert after.retention == 1.2 and after.transfer == 0.3
    for k, d in before.domains.items():
        assert after.domains[k].half_life == pytest.approx(d.half_life * 1.2, rel=1e-3)
    # Without deltas in the body, the boost adds 0.05 retention and 0.04 transfer.
    meta.post(f"{BASE}/boost-retention", {"learner": "b"})
    _, again = await read_state(redis, keys, "b")
    assert again.retention == 1.25 and again.transfer == 0.34


async def test_boost_retention_for_the_whole_cohort(meta, redis, scripts, keys):
    learners = [f"l{i}" for i in range(24)]
    for i, learner in enumerate(learners):
        await create(redis, scripts, keys, practised_state(learner, level=0.3 + 0.02 * i))
    assert len({keys.shard_of(learner) for learner in learners}) > 8  # many shards
    status, body = meta.post(f"{BASE}/boost-retention", {"cohort": "all", "transferDelta": 0.1})
    assert status == 200, body
    assert body["count"] == 24 and body["booster"]["failedCount"] == 0
    for learner in learners:
        _, state = await read_state(redis, keys, learner)
        assert state.retention == 1.05 and state.transfer == 0.1
    assert meta.get(f"{BASE}/stats")[1]["stats"]["boosts"] == 24  # summed over the shards


async def test_trigger_appends_one_completed_event_with_its_delay(meta, redis, scripts, keys):
    await create(redis, scripts, keys, practised_state("t", level=0.7))
    ts = int(time.time() * 1000) - 40
    # The server's record of the readiness transition (written by commit_rounds): the delay is
    # measured from it whatever the trigger says.
    await redis.hset(keys.learner_state("t"), mapping={"rr": 7, "rt": ts})
    status, body = meta.post(f"{BASE}/run-all", {"learner": "t", "trigger": {"round": 7, "ts": ts}})
    assert status == 200 and body["ran"] == [1, 2, 3, 4]
    assert body["delay_ms"] >= 40
    events = [f for _, f in await redis.xrange(keys.stream_meta(keys.shard_of("t")))]
    assert len(events) == 1
    ev = events[0]
    assert ev["type"] == "completed" and ev["learner"] == "t" and ev["round"] == "7"
    assert int(ev["delay_ms"]) == body["delay_ms"] and int(ev["ts"]) >= ts

    # The same trigger again (a coach retry): answered, no second event.
    status, body = meta.post(f"{BASE}/run-all", {"learner": "t", "trigger": {"round": 7, "ts": ts}})
    assert status == 200 and body["ran"] == [] and "delay_ms" in body
    assert len(await meta_events(redis, keys)) == 1
    # A later readiness transition: phases stay done, the trigger is acknowledged once more.
    await redis.hset(keys.learner_state("t"), mapping={"rr": 9, "rt": ts})
    status, body = meta.post(f"{BASE}/run-all", {"learner": "t", "trigger": {"round": 9, "ts": ts}})
    assert status == 200 and body["ran"] == []
    assert len(await meta_events(redis, keys)) == 2
    stats = meta.get(f"{BASE}/stats")[1]["stats"]
    assert stats["completed"] == 2 and stats["triggerDelayMs"]["count"] == 2

    for bad in (
        {"round": -1, "ts": 1},
        {"round": 1},
        {"round": "1", "ts": 1},
        {"round": 1.5, "ts": 1},
    ):
        status, _ = meta.post(f"{BASE}/run-all", {"learner": "t", "trigger": bad})
        assert status == 422, bad
    status, body = meta.post(f"{BASE}/run-all", {"learner": "ghost"})
    assert status == 404 and body["error"]["code"] == "learner_not_found"


async def test_training_writes_during_boosts_are_not_lost(meta, redis, scripts, keys):
    """A "training" writer bumps the learner state (rounds + 1, version-checked like a round
    commit) while boosts run: both sides' updates must all survive."""
    await create(redis, scripts, keys, practised_state("r", level=0.5))
    writes = 40
    boosts = 8

    async def training() -> None:
        done = 0
        for _ in range(writes * 50):  # bounded retries
            if done == writes:
                return
            v, state = await read_state(redis, keys, "r")
            state.rounds += 1
            res = await scripts.cas_state(
                keys=keys.cas_state_keys("r"),
                args=[str(v), encode(state), "r", "keep"],
            )
            if res[0] == 1:
                done += 1
            await asyncio.sleep(0)
        raise AssertionError("training writer starved")

    async with aiohttp.ClientSession() as http:

        async def boost() -> None:
            # A boost that kept meeting the writer answers 409 busy ("retry"), as meta's
            # contract says; a client retries it. What must hold is that no update is lost.
            body = {"learner": "r", "retentionDelta": 0.01, "transferDelta": 0.01}
            for _ in range(50):  # bounded retries
                async with http.post(meta.url + f"{BASE}/boost-retention", json=body) as resp:
                    if resp.status != 409:
                        assert resp.status == 200, await resp.text()
                        return
                await asyncio.sleep(0.02)
            raise AssertionError("boost kept conflicting")

        await asyncio.gather(training(), *(boost() for _ in range(boosts)))
    _, state = await read_state(redis, keys, "r")
    assert state.rounds == writes
    assert state.retention == pytest.approx(1 + 0.01 * boosts)
    assert state.transfer == pytest.approx(0.01 * boosts)


@pytest.mark.backends("single")  # input checks: nothing Redis-specific
def test_openapi_lists_the_meta_endpoints(meta):
    status, doc = meta.get("/openapi.json")
    assert status == 200
    for path in ("run-all", "boost-retention", "phase/{n}/report", "activity-log", "pause"):
        assert f"{BASE}/{path}" in doc["paths"]
    assert meta.get(f"{BASE}/run-all")[0] == 405
