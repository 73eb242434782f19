"""`tooloo` against a real fleet started by the test: every command's answer, `--json` for scripts,
the fleet's refusals as one line and exit 1, bad usage exit 2, the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from harness.fleet import Fleet

pytestmark = pytest.mark.integration


def run(fleet: Fleet, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "REDIS_URL"))}
    env["TOOLOO_URL"] = fleet.url("web")
    if token:
        env["TOOLOO_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "tooloo_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def ok(fleet: Fleet, *args: str) -> str:
    done = run(fleet, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def js(fleet: Fleet, *args: str) -> Any:
    return json.loads(ok(fleet, "--json", *args))


def refused(fleet: Fleet, *args: str, code: int = 1) -> str:
    done = run(fleet, *args)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tooloo: "), done.stderr
    return lines[0]


def test_cli_drives_a_fleet(fleet: Fleet) -> None:
    fleet.start("training", "meta", "reports", "coach", "web")
    fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})

    assert js(fleet, "status")["phase"] in {"starting", "pre-arming", "armed", "degraded"}
    assert "phase" in ok(fleet, "status")
    names = {p["name"] for p in js(fleet, "processes")["processes"]}
    assert {"training", "coach", "web"} <= names
    assert "training" in ok(fleet, "processes")

    # learners
    created = js(fleet, "learners", "create", "alice", "--region", "eu")
    assert created["learner"]["id"] == "alice" and created["learner"]["region"] == "eu"
    assert "alice" in ok(fleet, "learners", "show", "alice")
    assert "alice" in ok(fleet, "learners", "list")
    listed = js(fleet, "learners", "list", "--limit", "5")
    assert "alice" in [x["id"] for x in listed["learners"]]
    assert "409" in refused(fleet, "learners", "create", "alice")

    # coach: boost, stop/start, fast lane keeps what is not given
    boosted = js(fleet, "coach", "boost", "--rounds", "3", "--learner", "alice")
    rounds = [r["round"] for r in boosted["results"]]
    assert len(rounds) == 3 and rounds == sorted(rounds)
    assert "boosted alice: 3 rounds" in ok(
        fleet, "coach", "boost", "--rounds", "3", "--learner", "alice"
    )
    assert js(fleet, "learners", "show", "alice")["learner"]["rounds"] >= 6  # the coach too
    assert js(fleet, "coach", "stop")["status"]["active"] is False
    assert js(fleet, "coach", "start")["status"]["active"] is True
    fast = js(fleet, "coach", "fast-lane", "on", "--weight", "3", "--interval", "700")
    assert fast["fastLane"]["enabled"] is True and fast["fastLane"]["weight"] == 3
    fast = js(fleet, "coach", "fast-lane", "off")
    assert fast["fastLane"]["enabled"] is False
    assert (fast["fastLane"]["weight"], fast["fastLane"]["intervalMs"]) == (3, 700)
    assert js(fleet, "coach", "pin", "alice")["members"]["pinned"] == ["alice"]
    assert "pinned out alice" in ok(fleet, "coach", "pin", "--out", "alice")
    assert js(fleet, "coach", "unpin", "alice")["fastLane"]["excluded"] == 0
    assert "404 learner_not_found" in refused(fleet, "coach", "pin", "nobody")
    assert "404 learner_not_found" in refused(fleet, "coach", "boost", "--learner", "nobody")
    assert js(fleet, "coach", "status")["status"]["active"] is True

    # onboarding and scale, waiting for the target with a progress bar
    assert js(fleet, "onboarding", "pause")["paused"] is True
    assert js(fleet, "onboarding", "resume")["paused"] is False
    scaled = js(fleet, "scale", "8", "--wait", "--wait-timeout", "90")
    assert scaled["scale"]["learners"] >= 8 and scaled["scale"]["target"] == 8
    assert "learners" in ok(fleet, "scale", "8", "--hold")

    # gates, once and watched
    gates = js(fleet, "gates")
    assert {g["number"] for g in gates["gates"]} >= {1, 2}
    watched = ok(fleet, "--json", "gates", "--watch", "--count", "2", "--interval", "0.5")
    assert watched.count('"gates_passed"') == 2
    assert "verdict" in ok(fleet, "gates")

    # the full pause: onboarding, coach and meta together, recorded with the actor
    paused = js(fleet, "pause", "--actor", "ana", "--note", "drill")
    assert paused["paused"] is True and set(paused["parts"]) == {"onboarding", "coach", "meta"}
    assert js(fleet, "coach", "status")["status"]["active"] is False
    assert "fleet resumed" in ok(fleet, "resume", "--actor", "ana")
    assert js(fleet, "coach", "status")["status"]["active"] is True
    recorded = fleet["web"].get("/api/v1/system/gates/history")[1]["history"]
    assert [(e["type"], e["actor"]) for e in recorded[:2]] == [
        ("full_resume", "ana"),
        ("full_pause", "ana"),
    ]

    # delete, then the learner is gone
    assert js(fleet, "learners", "delete", "alice", "--yes")["deleted"] == "alice"
    assert "404 learner_not_found" in refused(fleet, "learners", "show", "alice")
    assert "Invalid value" in refused(fleet, "scale", "many", code=2)


def test_cli_token(fleet: Fleet) -> None:
    token = "cli-test-token-0123456789"
    guarded = Fleet(fleet.redis_url, fleet.prefix, fleet.log_dir / "guarded", token=token)
    try:
        guarded.start("training", "web")
        line = refused(guarded, "learners", "create", "bob")
        assert "401" in line and "TOOLOO_API_TOKEN" in line
        done = run(guarded, "--json", "learners", "create", "bob", token=token)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["learner"]["id"] == "bob"
        assert "bob" in ok(guarded, "learners", "show", "bob")  # reads need no token
    finally:
        guarded.stop_all()
