"""The orchestrator against real processes, on the session's redis-server (a partial fleet,
chosen by configuration): a service that crashes on start ends `failed` without a restart
storm; the operator endpoints; observe mode."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.http import http_json
from harness.polling import wait_for
from harness.processes import pid_alive
from harness.redis_server import RedisServer
from shared.keys import Keys

pytestmark = pytest.mark.integration

SYSTEM = "/api/v1/system"


def fleet_status(fleet: Fleet) -> dict[str, Any]:
    status, body = fleet["orchestrator"].get(f"{SYSTEM}/status")
    assert status == 200, body
    return body


def steps(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in fleet_status(fleet)["prearm"]["steps"]}


def events(redis_server: RedisServer, prefix: str, kind: str, service: str) -> list[dict]:
    with sync_redis.Redis.from_url(redis_server.url, decode_responses=True) as client:
        entries = client.xrange(Keys(prefix).stream_system)
    return [f for _, f in entries if f.get("type") == kind and f.get("service") == service]


def test_crash_on_start_ends_failed_and_operator_controls(
    fleet: Fleet, redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    # "meta" points at a module that exits at once: configuration, not a hook in the service.
    (tmp_path / "tooloo_crash_on_start.py").write_text(
        "import sys\nsys.stderr.write('crashing on start\\n')\nsys.exit(3)\n"
    )
    fleet.start(
        "orchestrator",
        env={
            "ORCHESTRATOR_SERVICES": "training,meta",
            "ORCHESTRATOR_MODULE_META": "tooloo_crash_on_start",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])
            ),
            "ORCHESTRATOR_RESTART_BUDGET": "3",
            "ORCHESTRATOR_BACKOFF_MAX": "0.4",
        },
    )
    orch = fleet["orchestrator"]
    meta = wait_for(
        lambda: (
            fleet.process_table()["meta"]["state"] == "failed" and fleet.process_table()["meta"]
        ),
        "meta failed",
    )
    assert meta["restarts"] == 3 and meta["pid"] is None
    assert meta["last_exit"]["code"] == 3
    assert "3 restarts within" in meta["error"]
    status = fleet_status(fleet)
    assert status["phase"] == "degraded" and status["armed"] is False
    assert status["services"]["meta"]["state"] == "failed"
    # meta's three restarts can all happen while training is still starting on a loaded machine.
    wait_for(lambda: fleet.process_table()["training"]["state"] == "running", "training running")
    wait_for(lambda: steps(fleet)["meta"]["ok"] is False, "meta step failed")
    assert steps(fleet)["training"]["ok"] is True
    assert "coach" not in steps(fleet)  # not supervised here, so not required
    # One start and three restarts, then nothing more: no restart storm.
    assert len(events(redis_server, prefix, "process_started", "meta")) == 4
    assert len(events(redis_server, prefix, "process_failed", "meta")) == 1
    time.sleep(1.0)
    assert len(events(redis_server, prefix, "process_started", "meta")) == 4

    # Bad requests change nothing.
    status_code, body = orch.post(f"{SYSTEM}/services/nope/restart")
    assert status_code == 404 and body["error"]["code"] == "unknown_service"
    status_code, body = orch.post(f"{SYSTEM}/services/training/restart", {"force": True})
    assert status_code == 422
    status_code, body = orch.post(f"{SYSTEM}/prearm", {"steps": ["bogus"]})
    assert status_code == 422
    status_code, body = orch.post(f"{SYSTEM}/prearm", {"steps": ["coach"]})
    assert status_code == 409 and body["error"]["code"] == "step_not_supervised"
    status_code, body = orch.get(f"{SYSTEM}/services/training/restart")
    assert status_code == 405

    # Operator stop / start / restart of training: by pid, pre-arm step rerun after each start.
    old_pid = fleet.process_table()["training"]["pid"]
    status_code, body = orch.post(f"{SYSTEM}/services/training/stop")
    assert status_code == 200 and body["process"]["state"] == "stopped"
    assert body["process"]["pid"] is None and not pid_alive(old_pid)
    assert steps(fleet)["training"]["valid"] is False
    status_code, body = orch.post(f"{SYSTEM}/services/training/start")
    assert status_code == 200 and body["done"] is True
    assert body["process"]["state"] == "running" and body["process"]["pid"] not in (None, old_pid)
    assert steps(fleet)["training"]["runs"] == 2 and steps(fleet)["training"]["ok"] is True
    started_pid = body["process"]["pid"]
    status_code, body = orch.post(f"{SYSTEM}/services/training/restart")
    assert status_code == 200 and body["done"] is True
    assert body["process"]["restarts"] == 1 and body["process"]["pid"] != started_pid
    assert not pid_alive(started_pid)
    assert len(events(redis_server, prefix, "process_restarted", "training")) == 1
    status_code, body = orch.post(f"{SYSTEM}/prearm", {"steps": ["training"]})
    assert status_code == 200 and body["done"] is True

    # A hung service (stopped: alive, not answering) is replaced after its failed health
    # checks; SIGTERM cannot end a stopped process, so the SIGKILL after the grace period does.
    hung = fleet.process_table()["training"]["pid"]
    os.kill(hung, signal.SIGSTOP)

    def replaced() -> dict[str, Any] | None:
        entry = fleet.process_table()["training"]
        return entry if entry["pid"] not in (None, hung) and entry["state"] == "running" else None

    entry = wait_for(replaced, "hung training replaced")
    assert entry["last_exit"]["code"] == -signal.SIGKILL and not pid_alive(hung)
    exits = events(redis_server, prefix, "process_exited", "training")
    assert exits[-1]["pid"] == str(hung)

    # Stopping the orchestrator stops its children.
    child = fleet.process_table()["training"]["pid"]
    assert orch.stop() == 0
    assert not pid_alive(child)


def test_observe_mode_prearms_and_rearms_external_services(fleet: Fleet) -> None:
    fleet.start("training")
    fleet.start(
        "orchestrator",
        env={"ORCHESTRATOR_MANAGE": "false", "ORCHESTRATOR_SERVICES": "training"},
    )
    orch = fleet["orchestrator"]
    wait_for(lambda: fleet_status(fleet)["phase"] == "armed", "armed")
    status_code, body = orch.get(f"{SYSTEM}/processes")
    assert body["orchestrator"]["mode"] == "observe"
    (training,) = body["processes"]
    assert training["state"] == "external" and training["pid"] is None and training["healthy"]
    status_code, learner = fleet["training"].get("/api/v1/learners/default")
    assert status_code == 200 and learner["learner"]["active"] is True
    status_code, body = orch.post(f"{SYSTEM}/services/training/restart")
    assert status_code == 409 and body["error"]["code"] == "not_managed"

    # The platform restarts training: the orchestrator notices and pre-arms it again.
    fleet["training"].kill()
    fleet.start("training")
    wait_for(lambda: steps(fleet)["training"]["runs"] >= 2, "training step rerun")
    wait_for(lambda: fleet_status(fleet)["phase"] == "armed", "armed again")
    assert steps(fleet)["training"]["ok"] is True
    # ... and records it as a restart, so "zero crashes" sees a crash in observe mode too.
    r = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    system = Keys(fleet.env["TOOLOO_REDIS_PREFIX"]).stream_system
    try:
        wait_for(
            lambda: any(
                f.get("type") == "process_restarted" and f.get("service") == "training"
                for _, f in r.xrange(system)
            ),
            "process_restarted event",
        )
    finally:
        r.close()


def test_sigterm_during_start_up_stops_the_children_and_exits_0(fleet: Fleet) -> None:
    fleet.start("orchestrator", env={"ORCHESTRATOR_SERVICES": "training,meta"})

    def spawning() -> list[int]:
        table = fleet.process_table()
        pids = [p["pid"] for p in table.values() if p["pid"]]
        # Caught while a child is still starting (not yet answering /ready).
        return pids if any(p["state"] == "starting" and p["pid"] for p in table.values()) else []

    pids = wait_for(spawning, "a child starting", timeout_s=20)
    assert fleet["orchestrator"].stop() == 0
    assert [p for p in pids if pid_alive(p)] == []


def test_prearm_after_a_coach_restart_keeps_the_operators_settings(fleet: Fleet) -> None:
    """Pre-arm's defaults (coach started, fast lane on at 2/600) are for a fleet never
    configured: after a kill -9 of the coach, a stopped coach stays stopped and a changed fast
    lane stays as the operator left it."""
    fleet.start("orchestrator", env={"ORCHESTRATOR_SERVICES": "training,meta,coach"})
    wait_for(lambda: fleet_status(fleet)["phase"] == "armed", "armed", timeout_s=60)
    coach_url = f"http://127.0.0.1:{fleet.ports['coach']}"

    def coach_call(method: str, path: str, body: Any = None) -> dict[str, Any]:
        status_code, answer = http_json(method, coach_url + path, body)
        assert status_code == 200, answer
        return dict(answer)

    status = coach_call("GET", "/api/v1/auto-coach/status")["status"]
    assert status["active"] is True and status["fastLane"]["enabled"] is True  # armed defaults
    coach_call("POST", "/api/v1/auto-coach/stop", {})
    coach_call("POST", "/api/v1/auto-coach/fast-lane", {"enable": False, "weight": 5})

    old_pid = fleet.process_table()["coach"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        lambda: (
            fleet.process_table()["coach"]["pid"] not in (None, old_pid)
            and steps(fleet)["coach"]["runs"] >= 2
            and steps(fleet)["coach"]["ok"] is True
        ),
        "coach restarted and its step run again",
        timeout_s=60,
    )
    status = coach_call("GET", "/api/v1/auto-coach/status")["status"]
    assert status["active"] is False, status
    assert status["fastLane"]["enabled"] is False and status["fastLane"]["weight"] == 5
    assert fleet_status(fleet)["phase"] == "armed"
