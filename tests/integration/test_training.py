"""The training service as a real process against a real redis-server, and against the 3-master
Redis Cluster: the tests run on both backends (rounds, batch and fences, restarts of training,
onboarding and paging on keys spread over the cluster's masters), except the bad-input table,
which runs on the single Redis only to keep the suite's time (its refusals touch no Redis)."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import aiohttp
import orjson
import pytest

from harness.fleet import Fleet
from harness.http import http_json
from shared import fleet_totals
from shared.keys import Keys

pytestmark = [pytest.mark.integration, pytest.mark.backends("single", "cluster")]

ROUND = "/api/v1/training/round"
START = "/api/v1/training/start"


def test_default_learner_exists_before_start_and_round_needs_start(training):
    status, body = training.get("/api/v1/training/overview")
    assert status == 200 and body["ok"] is True
    assert len(body["data"]["domains"]) == 9
    assert body["data"]["untouched"][0] == "dsa"

    status, body = training.post(ROUND, {})
    assert status == 409 and body["error"]["code"] == "training_not_started"
    assert training.get("/api/v1/learners/default")[1]["learner"]["rounds"] == 0

    status, body = training.post(ROUND, {"learner": "nobody"})
    assert status == 404 and body["error"]["code"] == "learner_not_found"

    status, doc = training.get("/openapi.json")
    assert status == 200 and "/api/v1/training/rounds" in doc["paths"]


def test_start_round_and_original_shapes(training):
    status, body = training.post(START, {})
    assert status == 200
    result = body["result"]
    assert result["started"] is True and result["rounds"] == 100 and len(result["topics"]) == 9

    status, body = training.post(ROUND, {})
    assert status == 200
    r = body["result"]
    assert r["success"] is True and r["learner"] == "default" and r["round"] >= 1
    assert r["trained"] == ["dsa", "os"]  # gaps first: two lowest, topic order breaks the tie
    first = r["results"][0]
    assert {"topic", "topicName", "problemsSolved", "avgScore", "results"} <= set(first)
    assert first["results"][0]["difficulty"] == "easy"
    assert set(r["summary"]) == {"dsa", "os"}
    assert r["summary"]["dsa"]["attempts"] == 1

    # Start again without reset keeps progress; with reset clears it.
    training.post(START, {})
    assert training.get("/api/v1/learners/default")[1]["learner"]["rounds"] == 1
    assert training.get("/api/v1/training/status")[1]["status"]["currentRound"] == 1
    training.post(START, {"reset": True})
    detail = training.get("/api/v1/learners/default")[1]["learner"]
    assert detail["domains"] == {}

    status, body = training.get("/api/v1/training/history?limit=5")
    assert status == 200 and body["history"][0]["round"] == r["round"]
    assert body["history"][0]["trained"] == ["dsa", "os"]

    status, body = training.get("/api/v1/training/deep-dive/dsa")
    assert status == 200 and len(body["data"]["problems"]) == 3
    status, body = training.get("/api/v1/training/deep-dive/nope")
    assert status == 404 and body["ok"] is False

    status, body = training.get("/api/v1/next-domain")
    assert status == 200 and "domainsBelow80" in body["next"]["currentMastery"]


async def test_concurrent_rounds_for_one_learner_lose_nothing(training):
    training.post(START, {"learner": "c1"})

    async def one(session: aiohttp.ClientSession) -> dict:
        async with session.post(training.url + ROUND, json={"learner": "c1"}) as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["result"]

    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as session:
        results = await asyncio.gather(*(one(session) for _ in range(200)))
    # What the API promises: ids unique, and increasing for the learner in the order its rounds
    # were committed (its n-th round has its n-th smallest id); not consecutive across calls.
    by_id = sorted(results, key=lambda r: r["round"])
    assert len({r["round"] for r in results}) == 200
    assert [r["learnerRound"] for r in by_id] == list(range(1, 201))
    history = training.get("/api/v1/training/history?learner=c1&limit=1000")[1]["history"]
    newest = [r["round"] for r in reversed(by_id)][: len(history)]  # history is capped (100)
    assert [h["round"] for h in history] == newest
    attempts_from_rounds = sum(len(r["results"]) for r in results)
    detail = training.get("/api/v1/learners/c1")[1]["learner"]
    assert detail["rounds"] == 200
    assert sum(d["attempts"] for d in detail["domains"].values()) == attempts_from_rounds


def test_batch_endpoint_commits_and_reports_per_learner_errors(training):
    for name in ("b1", "b2"):
        training.post(START, {"learner": name})
    training.post("/api/v1/learners", {"id": "idle", "active": False})
    status, body = training.post(
        "/api/v1/training/rounds",
        {"learners": ["b1", "b2", "b1", "ghost", "idle"], "rounds_per_learner": 3},
    )
    assert status == 200, body
    assert body["committed"] == 6
    ids = sorted(r["round"] for r in body["rounds"])
    assert len(set(ids)) == 6
    for learner in ("b1", "b2"):  # one commit per learner: its ids are consecutive
        mine = [r["round"] for r in body["rounds"] if r["learner"] == learner]
        assert mine == list(range(mine[0], mine[0] + 3))
    assert {r["learner"] for r in body["rounds"]} == {"b1", "b2"}
    assert set(body["rounds"][0]) == {"round", "learner", "trained", "avg", "ready", "became_ready"}
    codes = {e["learner"]: e["code"] for e in body["errors"]}
    assert codes == {"ghost": "learner_not_found", "idle": "training_not_started"}
    assert training.get("/api/v1/learners/b1")[1]["learner"]["rounds"] == 3

    status, body = training.post(
        "/api/v1/training/rounds",
        {"learners": [f"x{i}" for i in range(30)], "rounds_per_learner": 50},
    )
    assert status == 422


def test_restart_keeps_every_learner_state(fleet: Fleet, training):
    for name in ("r1", "r2"):
        training.post(START, {"learner": name})
        for _ in range(3):
            assert training.post(ROUND, {"learner": name})[0] == 200
    before = {n: training.get(f"/api/v1/learners/{n}")[1]["learner"] for n in ("r1", "r2")}
    training.stop()
    fleet.start("training")
    after = {n: fleet["training"].get(f"/api/v1/learners/{n}")[1]["learner"] for n in ("r1", "r2")}
    for name in before:
        assert after[name]["rounds"] == 3
        assert {k: v["attempts"] for k, v in after[name]["domains"].items()} == {
            k: v["attempts"] for k, v in before[name]["domains"].items()
        }
    assert fleet["training"].post(ROUND, {"learner": "r1"})[1]["result"]["learnerRound"] == 4


def _raw(method: str, url: str, data: bytes) -> tuple[int, object]:
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def _snapshot(redis, keys: Keys) -> dict:
    return {
        "state": await redis.hgetall(keys.learner_state("default")),
        "totals": await fleet_totals.read_totals(redis, keys),
        "curriculum": await redis.get(keys.curriculum_version),
        "stream": await redis.xlen(keys.stream_rounds(keys.shard_of("default"))),
        "fence": await redis.get(keys.coach_fence(keys.shard_of("default"))),
    }


@pytest.mark.backends("single")  # input checks: nothing Redis-specific
async def test_bad_input_gets_4xx_json_and_changes_nothing(redis, keys, training):
    training.post(START, {})
    training.post(ROUND, {})
    before = await _snapshot(redis, keys)
    u = training.url
    cases = [
        ("POST", ROUND, b"{not json"),
        ("POST", ROUND, b'{"learner": 5}'),
        ("POST", ROUND, b'{"learner": "bad id!"}'),
        ("POST", ROUND, b'{"learner": "' + b"a" * 65 + b'"}'),
        ("POST", ROUND, b'{"learner": "default", "extra": 1}'),
        ("POST", ROUND, b"[1, 2]"),
        ("POST", ROUND, b'{"learner": "' + b"x" * 70_000 + b'"}'),
        ("POST", START, b'{"reset": "yes"}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": [], "rounds_per_learner": 1}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "rounds_per_learner": 0}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "fences": {"16": 1}}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "fences": {"x": 1}}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "fences": {"01": 1}}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "fences": {"1": -1}}'),
        ("POST", "/api/v1/training/rounds", b'{"learners": ["default"], "fences": [1]}'),
        ("GET", "/api/v1/learners?cursor=-1", None),
        (
            "POST",
            "/api/v1/training/rounds",
            b'{"learners": ["default"], "rounds_per_learner": "2"}',
        ),
        ("POST", "/api/v1/training/settings", b'{"maxParallel": 99}'),
        ("POST", "/api/v1/training/settings", b'{"selection": {"targetThreshold": NaN}}'),
        ("POST", "/api/v1/training/settings", b'{"selection": {"bogus": 1}}'),
        ("POST", "/api/v1/training/settings", b'{"gapsCount": 0}'),
        ("POST", "/api/v1/training/new-topic", b'{"key": "foo", "name": "Foo", "problems": []}'),
        ("POST", "/api/v1/training/new-topic", b'{"key": "foo", "name": "Foo", "problems": []}'),
        (
            "POST",
            "/api/v1/training/new-topic",
            b'{"key": "foo", "name": "Foo", "problems": [{"problem": "p", "keywords": []}]}',
        ),
        (
            "POST",
            "/api/v1/training/new-topic",
            b'{"key": "dsa", "name": "Again", "problems": [{"problem": "p", "keywords": ["k"]}]}',
        ),
        ("POST", "/api/v1/learners", b'{"id": "default"}'),
        ("POST", "/api/v1/learners", b'{"region": "no spaces"}'),
        ("GET", "/api/v1/training/history?limit=0", None),
        ("GET", "/api/v1/training/history?limit=abc", None),
        ("GET", "/api/v1/training/overview?learner=bad%20id", None),
        ("GET", "/api/v1/training/overview?unknown=1", None),
        ("GET", "/api/v1/learners?limit=100000", None),
        ("GET", ROUND, None),
        ("DELETE", "/api/v1/learners/ghost", None),
    ]
    for method, path, data in cases:
        status, body = (
            _raw(method, u + path, data) if data is not None else http_json(method, u + path)
        )
        assert 400 <= status < 500, (path, data and data[:80], status, body)
        assert body["ok"] is False and body["error"]["code"], (path, body)
    assert await _snapshot(redis, keys) == before


def test_new_topic_settings_and_learners_crud(training, keys, redis_sync):
    topic = {
        "key": "systems",
        "name": "Systems Design",
        "background": False,
        "problems": [{"problem": "Design a cache", "keywords": ["eviction", "ttl"]}],
    }
    status, body = training.post("/api/v1/training/new-topic", topic)
    assert status == 200 and body["added"]["key"] == "systems"
    assert training.post("/api/v1/training/new-topic", topic)[0] == 409
    status, body = training.post("/api/v1/training/new-topic", {**topic, "force": True})
    assert status == 200 and body["added"]["updated"] is True
    overview = training.get("/api/v1/training/overview")[1]["data"]
    assert overview["domains"][-1]["topic"] == "systems"

    status, body = training.post(
        "/api/v1/training/settings", {"selection": {"gapsCount": 3, "targetThreshold": 70}}
    )
    assert status == 200 and body["settings"]["selection"]["gapsCount"] == 3
    assert (
        training.get("/api/v1/training/settings")[1]["settings"]["selection"]["targetThreshold"]
        == 70
    )

    training.post(START, {})
    assert len(training.post(ROUND, {})[1]["result"]["trained"]) == 3

    status, body = training.post("/api/v1/learners", {"id": "crud-1", "region": "eu"})
    assert status == 201 and body["learner"]["region"] == "eu"
    status, body = training.get("/api/v1/learners?limit=1")
    assert status == 200 and len(body["learners"]) == 1 and body["next_cursor"] is not None
    page2 = training.get(f"/api/v1/learners?limit=10&cursor={body['next_cursor']}")[1]
    assert "crud-1" in [x["id"] for x in page2["learners"]]
    assert training.post(ROUND, {"learner": "crud-1"})[0] == 200
    assert training.delete("/api/v1/learners/crud-1")[0] == 200
    assert training.get("/api/v1/learners/crud-1")[0] == 404
    assert not any(redis_sync.exists(k) for k in keys.learner_keys("crud-1"))


def test_onboarding_ramps_to_target_and_respects_pause(fleet: Fleet, keys, redis_sync):
    r = redis_sync
    r.hset(keys.scale, mapping={"target": 300, "paused": 1, "hold": 0})
    fleet.start("training", env={"TRAINING_ONBOARDING_RATE": "2000"})
    time.sleep(0.6)
    assert fleet_totals.learner_count_sync(r, keys) == 1  # only `default`: paused
    r.hset(keys.scale, "paused", 0)
    deadline = time.monotonic() + 15
    while fleet_totals.learner_count_sync(r, keys) < 300 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet_totals.learner_count_sync(r, keys) == 300
    time.sleep(0.5)
    totals = fleet_totals.read_totals_sync(r, keys)
    assert totals.learners == 300  # stops at the target
    assert len(totals.regions) >= 6 and sum(totals.regions.values()) == 300
    # Onboarded learners are active: a round runs for them.
    assert fleet["training"].post(ROUND, {"learner": "l-1"})[0] == 200


async def test_two_replicas_share_state_without_lost_updates(fleet: Fleet, training, keys):
    """Rounds for one learner through two processes: the per-process lock cannot help, so the
    commit's version check and the recompute-from-returned-state path must keep every round."""
    from harness.ports import free_port
    from harness.processes import ServiceProcess

    env = dict(fleet.env)
    port = free_port()
    env["TRAINING_PORT"] = str(port)
    replica = ServiceProcess("training-2", "services.training", port, env, fleet.log_dir).start()
    try:
        replica.wait_ready()
        training.post(START, {"learner": "shared"})

        async def one(session: aiohttp.ClientSession, url: str) -> dict:
            async with session.post(url + ROUND, json={"learner": "shared"}) as resp:
                assert resp.status == 200, await resp.text()
                return (await resp.json())["result"]

        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(one(session, (training.url, replica.url)[i % 2]) for i in range(120))
            )
        assert sorted(r["learnerRound"] for r in results) == list(range(1, 121))
        assert len({r["round"] for r in results}) == 120
        detail = replica.get("/api/v1/learners/shared")[1]["learner"]
        assert detail["rounds"] == 120
        assert sum(d["attempts"] for d in detail["domains"].values()) == sum(
            len(r["results"]) for r in results
        )
    finally:
        replica.stop()


def test_a_coach_batch_with_fences_commits_only_where_its_token_holds(training, keys, redis_sync):
    """The coach sends its per-shard fencing tokens: a learner of a shard whose fence moved on
    gets the outcome `fenced` and nothing is committed for it; the others commit."""
    learners = [f"fz{i}" for i in range(24)]
    for learner in learners:
        assert training.post(START, {"learner": learner})[0] == 200
    shards = sorted({keys.shard_of(x) for x in learners})
    held, lost = shards[0], shards[1]
    r = redis_sync
    r.set(keys.coach_fence(held), 4)
    r.set(keys.coach_fence(lost), 9)
    status, body = training.post(
        "/api/v1/training/rounds",
        {"learners": learners, "rounds_per_learner": 2, "fences": {str(held): 4, str(lost): 8}},
    )
    assert status == 200, body
    fenced = {x for x in learners if keys.shard_of(x) == lost}
    assert {e["learner"] for e in body["errors"]} == fenced
    assert {e["code"] for e in body["errors"]} == {"fenced"}
    assert {x["learner"] for x in body["rounds"]} == set(learners) - fenced
    for learner in fenced:
        assert training.get(f"/api/v1/learners/{learner}")[1]["learner"]["rounds"] == 0


def test_learner_pages_cover_every_shard_once(training, keys):
    for i in range(45):
        assert training.post("/api/v1/learners", {"id": f"pg{i}"})[0] == 201
    seen: list[str] = []
    cursor: int | None = 0
    for _ in range(100):
        status, body = training.get(f"/api/v1/learners?limit=8&cursor={cursor}")
        assert status == 200 and body["total"] == 46  # with `default`
        rows = body["learners"]
        assert [x["seq"] for x in rows] == sorted(x["seq"] for x in rows)
        seen += [x["id"] for x in rows]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor == rows[-1]["seq"]
    assert sorted(seen) == sorted([*(f"pg{i}" for i in range(45)), "default"])
