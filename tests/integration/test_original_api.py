"""The original fleet's API, endpoint by endpoint, called as its clients call it: the request
shapes its Control Room pages, scripts and own integration tests send, and the response fields
they read. What the original did wrong stays refused: a GET that changed state answers 405 naming
the POST, a field outside the documented list is still a 422, and bad input is a 4xx envelope
that changes nothing (docs/COMPAT.md lists every endpoint and what became of it)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from harness.fleet import Fleet
from harness.processes import ServiceProcess

pytestmark = pytest.mark.integration

TRAINING_BASE = "/api/v1/training"


def _refused(status: int, body: Any, code: str | None = None) -> None:
    """A 4xx in the fleet's envelope (with `code` when given)."""
    assert 400 <= status < 500, (status, body)
    assert body["ok"] is False and set(body["error"]) == {"code", "message", "details"}
    if code is not None:
        assert body["error"]["code"] == code, body


def _method_not_allowed(proc: ServiceProcess, path: str) -> None:
    req = urllib.request.Request(proc.url + path, method="GET")
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 405, path
        assert exc.headers["Allow"] == "POST", path
        body = json.loads(exc.read())
        _refused(405, body, "method_not_allowed")
        assert body["error"]["details"] == {"allowed": ["POST"]}
        return
    raise AssertionError(f"GET {path} was served")


def _raw_post(proc: ServiceProcess, path: str, data: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(
        proc.url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _started(training: ServiceProcess, learner: str = "default", rounds: int = 0) -> None:
    status, _ = training.post(f"{TRAINING_BASE}/start", {"learner": learner})
    assert status == 200
    for _ in range(rounds):
        status, _ = training.post(f"{TRAINING_BASE}/round", {"learner": learner})
        assert status == 200


def _overview(training: ServiceProcess, learner: str = "default") -> dict[str, Any]:
    status, body = training.get(f"{TRAINING_BASE}/overview?learner={learner}")
    assert status == 200
    data: dict[str, Any] = body["data"]
    return data


def _rounds(training: ServiceProcess, learner: str = "default") -> int:
    status, body = training.get(f"{TRAINING_BASE}/status?learner={learner}")
    assert status == 200
    rounds: int = body["status"]["currentRound"]
    return rounds


# ---- training ----------------------------------------------------------------------------------


def test_training_active_reads_only_and_deep_dive(training: ServiceProcess) -> None:
    _started(training, rounds=3)
    before = _overview(training)
    status, body = training.get(f"{TRAINING_BASE}/active")
    assert status == 200 and body["ok"] is True
    domains = body["data"]["activeDomains"]
    assert domains, body
    for d in domains:
        assert {
            "topic",
            "name",
            "mastery",
            "confidence",
            "uncertaintyBand",
            "attempts",
            "problems",
            "recentScores",
        } <= set(d)
        assert {"id", "topic", "difficulty", "attempted", "lastScore"} <= set(d["problems"][0])
        assert len(d["recentScores"]) <= 5
    # The original's `active` moved the selection state (locked batch, cursor); this one reads.
    assert [d["topic"] for d in domains] == [t["topic"] for t in before["nextUpTargets"]]
    training.get(f"{TRAINING_BASE}/active")
    assert _overview(training) == before

    status, body = training.get(f"{TRAINING_BASE}/deep-dive/dsa")
    assert status == 200
    assert {"topic", "name", "mastery", "confidence", "uncertaintyBand", "attempts"} <= set(
        body["data"]
    )
    assert {"lastPracticed", "nextReview", "timeUntilReview", "problems", "scoreHistory"} <= set(
        body["data"]
    )
    # The original answered 200 with {data: {error: "Invalid topic"}}; an unknown topic is a 404.
    status, body = training.get(f"{TRAINING_BASE}/deep-dive/javascript")
    _refused(status, body, "invalid_topic")
    assert status == 404


def test_training_calibrate_and_force_masteries(training: ServiceProcess) -> None:
    _started(training, rounds=4)
    status, body = training.post(f"{TRAINING_BASE}/calibrate", {"threshold": 95, "delta": 2})
    assert status == 200
    cal = body["calibration"]
    assert cal == {
        "adjusted": cal["adjusted"],
        "threshold": 95,
        "minAttempts": 2,
        "delta": 2,
        "force": False,
    }
    assert {"domains", "selection"} <= set(body["overview"])

    status, body = training.post(f"{TRAINING_BASE}/calibrate", {"threshold": 95, "force": True})
    assert status == 200
    adjusted = body["calibration"]["adjusted"]
    assert adjusted and all(a["to"] == 95 and a["from"] < 95 for a in adjusted)
    shown = {d["topic"]: d["mastery"] for d in body["overview"]["domains"]}
    assert all(shown[a["topic"]] == 95 for a in adjusted)
    assert _overview(training)["domains"] == body["overview"]["domains"]
    # Nothing left below the threshold: a second call adjusts nothing.
    status, body = training.post(f"{TRAINING_BASE}/calibrate", {"threshold": 95, "force": True})
    assert status == 200 and body["calibration"]["adjusted"] == []

    status, _ = training.post("/api/v1/learners", {"id": "fm"})
    assert status == 201
    _started(training, "fm")
    status, body = training.post(
        f"{TRAINING_BASE}/force-masteries", {"learner": "fm", "threshold": 90}
    )
    assert status == 200 and body["threshold"] == 90
    assert {a["to"] for a in body["adjusted"]} == {90}
    assert all(d["mastery"] == 90 for d in _overview(training, "fm")["domains"])
    # Default threshold: the learner's targetThreshold (80); nothing is below it now.
    status, body = training.post(f"{TRAINING_BASE}/force-masteries", {"learner": "fm"})
    assert status == 200 and body["threshold"] == 80 and body["adjusted"] == []

    # Bad input changes nothing.
    before = _overview(training)
    for bad in ({"threshold": 500}, {"threshold": "90"}, {"masteryLevel": 75}, {"force": "true"}):
        status, body = training.post(f"{TRAINING_BASE}/calibrate", bad)
        _refused(status, body, "validation_error")
    status, body = training.post(f"{TRAINING_BASE}/force-masteries", {"masteries": {"x": 1}})
    _refused(status, body, "validation_error")
    status, body = training.post(f"{TRAINING_BASE}/force-masteries", {"learner": "nobody"})
    _refused(status, body)
    assert status == 404
    assert _overview(training) == before


def test_training_state_changing_gets_answer_405(training: ServiceProcess) -> None:
    for path in ("calibrate", "force-masteries", "new-topic", "settings/update"):
        _method_not_allowed(training, f"{TRAINING_BASE}/{path}")
    for path in ("start", "micro-batch", "turbo-round"):
        _method_not_allowed(training, f"{TRAINING_BASE}/hyper-speed/{path}")
    # The POST twin of the original's GET settings/update takes the settings body.
    _started(training)
    status, body = training.post(
        f"{TRAINING_BASE}/settings/update", {"selection": {"gapsCount": 4}}
    )
    assert status == 200 and body["settings"]["selection"]["gapsCount"] == 4


def test_training_hyper_speed_runs_the_learners_rounds(training: ServiceProcess) -> None:
    _started(training, rounds=1)
    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/start?rounds=2")
    assert status == 200, body
    assert body["message"].startswith("Completed 2 cycles in ")
    eff = body["summary"]["efficiency"]
    assert eff["cyclesCompleted"] == 2 and eff["questionsProcessed"] >= 2
    assert {"totalTime", "averageSpeedup"} <= set(eff)
    assert _rounds(training) == 3

    status, body = training.post(
        f"{TRAINING_BASE}/hyper-speed/micro-batch",
        {"domain": "dsa", "question": {"domain": "dsa"}},
    )
    assert status == 200 and body["endpoint"] == "micro-batch"
    assert body["successful"] == 1 and body["questionsProcessed"] >= 1 and body["domains"]
    assert [w.split(":")[0] for w in body["warnings"]] == ["domain", "question"]
    assert _rounds(training) == 4

    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/turbo-round")
    assert status == 200
    result = body["result"]
    assert result["successful"] == 3 and len(result["rounds"]) == 3
    assert result["round"] == result["rounds"][-1]
    assert {"totalTime", "questionsProcessed", "speedup", "domains", "providersUsed"} <= set(result)
    assert _rounds(training) == 7

    status, body = training.get(f"{TRAINING_BASE}/hyper-speed/stats")
    assert status == 200
    stats = body["hyperStats"]
    assert stats["isHyperMode"] is True and stats["roundsCompleted"] == 7
    assert stats["fleetRounds"] >= 7 and stats["questionsProcessed"] >= 7

    # No hang and no crash on input the original choked on; nothing runs.
    for bad in ({"rounds": 0}, {"rounds": 11}, {"rounds": "NaN"}, {"duration": 60}):
        status, body = training.post(f"{TRAINING_BASE}/hyper-speed/start", bad)
        _refused(status, body, "validation_error")
    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/start?rounds=abc")
    _refused(status, body, "validation_error")
    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/micro-batch", {"batchSize": 5})
    _refused(status, body, "validation_error")
    assert _rounds(training) == 7
    status, _ = training.post("/api/v1/learners", {"id": "idle", "active": False})
    assert status == 201
    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/turbo-round", {"learner": "idle"})
    _refused(status, body, "training_not_started")
    status, body = training.post(f"{TRAINING_BASE}/hyper-speed/turbo-round", {"learner": "nobody"})
    _refused(status, body, "learner_not_found")


def test_training_accepts_the_original_clients_fields(training: ServiceProcess) -> None:
    _started(training)
    status, body = training.post(
        f"{TRAINING_BASE}/new-topic",
        {"topic": "test-topic", "description": "Test topic for QA", "difficulty": "intermediate"},
    )
    assert status == 200, body
    assert body["added"] == {"ok": True, "key": "test-topic", "background": True}
    assert len(body["topic"]["problems"]) == 3
    assert [w.split(":")[0] for w in body["warnings"]] == ["description", "difficulty", "problems"]
    status, body = training.get(f"{TRAINING_BASE}/deep-dive/test-topic")
    assert status == 200 and body["data"]["name"] == "test-topic"

    status, body = training.post(
        f"{TRAINING_BASE}/settings", {"targetThreshold": 85, "autoFillGaps": True, "gapsCount": 3}
    )
    assert status == 200, body
    sel = body["settings"]["selection"]
    assert sel["targetThreshold"] == 85 and sel["gapsCount"] == 3 and sel["autoFillGaps"] is True
    assert len(body["warnings"]) == 3

    # Everything else is still refused, and changes nothing.
    for path, bad in (
        ("new-topic", {"topic": "t2", "bogus": 1}),
        ("new-topic", {"description": "no key"}),
        ("new-topic", {"key": "a", "topic": "b"}),
        ("settings", {"targetThreshold": 85, "selection": {"targetThreshold": 80}}),
        ("settings", {"targetThreshold": 0}),
        ("settings", {"bogus": True}),
    ):
        status, body = training.post(f"{TRAINING_BASE}/{path}", bad)
        _refused(status, body, "validation_error")
    status, body = training.get(f"{TRAINING_BASE}/settings")
    assert body["settings"]["selection"]["targetThreshold"] == 85
    status, body = training.get(f"{TRAINING_BASE}/deep-dive/t2")
    assert status == 404
    # The original's "invalid JSON" case: a 400, as there.
    status, body = _raw_post(training, f"{TRAINING_BASE}/new-topic", b"{not json")
    _refused(status, body, "invalid_json")
    assert status == 400


# ---- meta --------------------------------------------------------------------------------------


def test_meta_knowledge_and_boost_fields(fleet: Fleet) -> None:
    fleet.start("training", "meta")
    _started(fleet["training"], rounds=2)
    meta = fleet["meta"]
    status, body = meta.get("/api/v4/meta-learning/knowledge")
    assert status == 200 and body["ok"] is True
    assert body["sources"] == [] and body["note"]
    assert {"strongest", "weakest", "fading", "practised"} <= set(body["knowledge"]["domains"])
    assert {"learningVelocity", "knowledgeRetention"} <= set(body["knowledge"]["metrics"])

    for targets in (["javascript", "design patterns"], []):
        status, body = meta.post(
            "/api/v4/meta-learning/boost-retention", {"targetAreas": targets, "intensity": "high"}
        )
        assert status == 200, body
        assert body["booster"]["ok"] is True and {"kr", "te"} <= set(body["booster"]["after"])
        assert [w.split(":")[0] for w in body["warnings"]] == ["targetAreas", "intensity"]
    status, body = meta.post("/api/v4/meta-learning/boost-retention", {})
    assert status == 200 and "warnings" not in body
    for bad in ({"targetAreas": "all"}, {"retentionDelta": 2}, {"bogus": 1}):
        status, body = meta.post("/api/v4/meta-learning/boost-retention", bad)
        _refused(status, body, "validation_error")
    status, body = meta.get("/api/v4/meta-learning/phase/999/report")
    _refused(status, body, "phase_not_found")
    status, body = meta.get("/api/v4/meta-learning/knowledge?learner=nobody")
    _refused(status, body)
    assert status == 404


# ---- coach -------------------------------------------------------------------------------------


def test_coach_accepts_the_original_clients_fields(fleet: Fleet) -> None:
    fleet.start("training", "coach")
    _started(fleet["training"])
    coach = fleet["coach"]
    for intensity in ("high", "invalid-level"):
        status, body = coach.post(
            "/api/v1/auto-coach/boost", {"target": "training", "intensity": intensity}
        )
        assert status == 200, body
        assert body["boosted"] == 5 and len(body["results"]) == 5 and body["batchSize"] == 3
        assert [w.split(":")[0] for w in body["warnings"]] == ["target", "intensity"]

    _, before = coach.get("/api/v1/auto-coach/settings")
    for sent in (
        {"autoBoostEnabled": True, "boostInterval": 300, "targetMastery": 85},
        {"boostInterval": -100},
    ):
        status, body = coach.post("/api/v1/auto-coach/settings", sent)
        assert status == 200, body
        assert body["changed"] == [] and body["settings"] == before["settings"]
        assert [w.split(":")[0] for w in body["warnings"]] == list(sent)
    status, body = coach.post(
        "/api/v1/auto-coach/settings", {"targetMastery": 85, "minAvgMastery": 70}
    )
    assert status == 200 and body["changed"] == ["minAvgMastery"]

    for path, bad in (
        ("boost", {"target": "training", "rounds": "5"}),
        ("boost", {"batchSize": -1}),
        ("boost", {"bogus": 1}),
        ("settings", {"targetMastery": 500}),
        ("settings", {"parallelDomains": 6}),
    ):
        status, body = coach.post(f"/api/v1/auto-coach/{path}", bad)
        _refused(status, body, "validation_error")
    for path in ("boost", "hyper-boost"):
        _method_not_allowed(coach, f"/api/v1/auto-coach/{path}")
    status, body = coach.post("/api/v1/auto-coach/hyper-boost", {"rounds": 2})
    assert status == 200 and body["hyperBoosted"] == 2 and body["totalBatches"] == 1


# ---- reports -----------------------------------------------------------------------------------


def test_reports_comprehensive_over_the_fleets_data(fleet: Fleet) -> None:
    fleet.start("training", "reports")
    _started(fleet["training"], rounds=3)
    reports = fleet["reports"]
    deadline = time.monotonic() + 20
    while True:
        status, body = reports.get("/api/v1/reports/comprehensive")
        assert status == 200, body
        if body["data"]["training"]["roundsTotal"] >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    summary = body["summary"]
    assert summary["title"] and summary["generated"]
    assert set(summary["milestones"]) == {
        "trainingMastery",
        "metaLearning",
        "segmentationEngine",
        "advancedReporting",
    }
    assert summary["milestones"]["segmentationEngine"] is None
    assert summary["milestones"]["trainingMastery"] in ("not_started", "in_progress", "achieved")
    assert summary["overallHealth"] in ("excellent", "good", "degraded", "unknown")
    data = body["data"]
    assert data["training"]["roundsTotal"] == 3 and data["training"]["learners"] == 1
    assert {"completed", "failed", "readyEvents"} <= set(data["meta"])
    assert {"throughputRoundsPerMin", "coverage"} <= set(data["coach"])
    assert data["segmentation"] is None and data["budget"] is None and data["capabilities"] is None
    assert body["outOfScope"] == ["segmentation", "budget", "capabilities"]
    assert all(isinstance(x, str) for x in body["insights"]) and body["insights"]
    assert len(body["recommendations"]) == 3
    assert "services" not in data

    status, body = reports.get("/api/v1/reports/comprehensive?format=json&details=true")
    assert status == 200 and "services" in body["data"]
    for bad in ("format=csv", "window=5", "bogus=1"):
        status, body = reports.get(f"/api/v1/reports/comprehensive?{bad}")
        _refused(status, body, "validation_error")
    # The original's AI-comparison and capabilities reports are out of scope here.
    for path in ("delta", "performance", "ai-comparison", "capabilities"):
        status, body = reports.get(f"/api/v1/reports/{path}")
        _refused(status, body, "not_found")


# ---- web ---------------------------------------------------------------------------------------


def test_web_system_status_priority_and_favicon(fleet: Fleet) -> None:
    fleet.start("training", "coach", "web")
    web = fleet["web"]
    status, body = web.get("/system/status")
    assert status == 200 and body["ok"] is True
    assert body["services"]["coach"] is True and body["services"]["training"] is True
    assert body["services"]["reports"] is False  # not started in this test
    assert body["orchestrator"] == {"running": False, "pid": None}
    assert body["status"]["healthy"] is False and "reports" in body["status"]["down"]
    assert body["ports"]["web"] == int(web.url.rsplit(":", 1)[1])
    assert isinstance(body["autoCoach"]["active"], bool) and body["time"]

    with urllib.request.urlopen(web.url + "/favicon.ico", timeout=10) as resp:
        assert resp.status == 204 and resp.read() == b""

    status, body = web.post("/api/v1/system/priority/background", {})
    assert status == 200 and body["mode"] == "background-priority"
    assert body["coach"]["fastLane"]["enabled"] is True and body["coach"]["active"] is True
    status, body = web.post("/api/v1/system/priority/chat", {})
    assert status == 200 and body["mode"] == "chat-priority"
    assert body["coach"]["fastLane"]["enabled"] is False
    _, lane = fleet["coach"].get("/api/v1/auto-coach/fast-lane")
    assert lane["fastLane"]["enabled"] is False
    _, coach_status = fleet["coach"].get("/api/v1/auto-coach/status")
    assert coach_status["status"]["active"] is True  # chat priority slows the coach, never stops it

    status, body = web.post("/api/v1/system/priority/chat", {"mode": "x"})
    _refused(status, body, "validation_error")
    _method_not_allowed(web, "/api/v1/system/priority/chat")
    fleet.stop("coach")
    status, body = web.post("/api/v1/system/priority/background", {})
    assert status == 502 and body["ok"] is False and body["error"]["code"] == "upstream_unavailable"
