"""Web's own system endpoints: scale and onboarding state in Redis (validated, POST only), and
the rollback procedures' calls (services/web/gates.json) sent with curl as an operator types
them, with and without a Content-Type header."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from shared.keys import Keys

pytestmark = pytest.mark.integration


def _scale_hash(fleet: Fleet) -> dict[str, str]:
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    try:
        return client.hgetall(Keys(fleet.env["TOOLOO_REDIS_PREFIX"]).scale)
    finally:
        client.close()


def test_scale_state_round_trip_and_event(fleet: Fleet) -> None:
    fleet.start("web")
    web = fleet["web"]
    status, body = web.get("/api/v1/system/scale")
    assert status == 200
    assert body["scale"] == {
        "target": None, "hold": False, "paused": False, "learners": 0, "active": 0, "inactive": 0
    }  # fmt: skip

    status, body = web.post("/api/v1/system/scale", {"learners": 25000, "hold": True})
    assert status == 200 and body["ok"] is True
    assert body["scale"] == {
        "target": 25000, "hold": True, "paused": False, "learners": 0, "active": 0, "inactive": 0
    }  # fmt: skip
    assert _scale_hash(fleet) == {"target": "25000", "hold": "1"}
    status, body = web.post("/api/v1/system/scale", {"learners": 10})  # hold defaults to false
    assert body["scale"]["hold"] is False and body["scale"]["target"] == 10

    status, body = web.post("/api/v1/system/pause-onboarding")
    assert status == 200 and body["paused"] is True
    assert _scale_hash(fleet)["paused"] == "1"
    status, body = web.get("/api/v1/system/scale")
    assert body["scale"]["paused"] is True
    status, body = web.post("/api/v1/system/resume-onboarding", {})
    assert status == 200 and body["paused"] is False
    assert _scale_hash(fleet)["paused"] == "0"

    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    events = client.xrange(Keys(fleet.env["TOOLOO_REDIS_PREFIX"]).stream_system)
    client.close()
    changes = [e for _, e in events if e["type"] == "settings_changed"]
    assert [c["setting"] for c in changes] == ["scale", "scale", "onboarding", "onboarding"]
    assert changes[0]["target"] == "25000" and changes[2]["paused"] == "1"
    assert changes[0]["actor"] == "unspecified"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"learners": -1},
        {"learners": 10_000_001},
        {"learners": 1.5},
        {"learners": "100"},
        {"learners": True},
        {"learners": 100, "hold": "yes"},
        {"learners": 100, "extra": 1},
        [1, 2],
    ],
)
def test_scale_validation_changes_nothing(fleet: Fleet, body: object) -> None:
    fleet.start("web")
    web = fleet["web"]
    web.post("/api/v1/system/scale", {"learners": 42, "hold": False})
    status, answer = web.post("/api/v1/system/scale", body)
    assert status == 422 and answer["ok"] is False
    assert answer["error"]["code"] == "validation_error"
    assert _scale_hash(fleet)["target"] == "42"


def test_bad_json_and_extra_fields_on_pause_change_nothing(fleet: Fleet) -> None:
    fleet.start("web")
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{fleet['web'].url}/api/v1/system/scale", "-d", "{nope"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    body = json.loads(out.stdout)
    assert body["error"]["code"] == "invalid_json"
    status, body = fleet["web"].post("/api/v1/system/pause-onboarding", {"paused": True})
    assert status == 422
    assert _scale_hash(fleet) == {}
    # State changes are POST only.
    status, body = fleet["web"].get("/api/v1/system/resume-onboarding")
    assert status == 405


def test_seed_curl_commands_work_as_written(fleet: Fleet) -> None:
    fleet.start("web")
    url = fleet["web"].url
    # Gate 2, level 1 rollback (with a Content-Type header).
    out = subprocess.run(
        [
            "curl", "-s", "-X", "POST", f"{url}/api/v1/system/scale",
            "-H", "Content-Type: application/json",
            "-d", '{"learners": 25000, "hold": true}',
        ],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert json.loads(out.stdout)["scale"]["target"] == 25000
    # Gate 7, level 3 emergency pause (the second call has no Content-Type header).
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{url}/api/v1/system/pause-onboarding"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert json.loads(out.stdout)["paused"] is True
    out = subprocess.run(
        [
            "curl", "-s", "-X", "POST", f"{url}/api/v1/system/scale",
            "-d", '{"learners": 3000000, "hold": true}',
        ],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    body = json.loads(out.stdout)
    assert body["scale"] == {
        "target": 3000000, "hold": True, "paused": True, "learners": 0, "active": 0, "inactive": 0
    }  # fmt: skip


def test_onboarding_follows_the_scale_target_and_pause(fleet: Fleet) -> None:
    fleet.start("training", "web")
    web = fleet["web"]
    web.post("/api/v1/system/pause-onboarding")
    base = web.get("/api/v1/system/scale")[1]["scale"]["learners"]  # training may seed `default`
    web.post("/api/v1/system/scale", {"learners": base + 5})
    time.sleep(1.0)
    assert web.get("/api/v1/system/scale")[1]["scale"]["learners"] == base  # paused: none added
    web.post("/api/v1/system/resume-onboarding")
    learners = 0
    for _ in range(100):  # bounded wait for training's onboarding task
        learners = web.get("/api/v1/system/scale")[1]["scale"]["learners"]
        if learners >= base + 5:
            break
        time.sleep(0.1)
    assert learners == base + 5
