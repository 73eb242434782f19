"""The whole fleet as an operator starts it: `honcho start` on the repository's Procfile, with
the embedded Redis on a free port and its data in a temporary directory.

One test on purpose: starting the fleet is the slowest thing the suite does, so the start, the
kill -9 of every service and the final SIGTERM share one fleet.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from harness.honcho import ArmedFleetFactory, HonchoFleet
from harness.processes import pid_alive
from orchestrator.service_table import DEFAULT_TABLE

pytestmark = pytest.mark.integration

SERVICES = [spec.name for spec in DEFAULT_TABLE]


def _coach_status(fleet: HonchoFleet) -> dict:
    status, body = fleet.get("coach", "/api/v1/auto-coach/status")
    assert status == 200, body
    return body["status"]


def _fast_lane_armed(fleet: HonchoFleet) -> bool:
    coach = _coach_status(fleet)
    lane = coach["fastLane"]
    return (
        coach["active"] is True
        and lane["enabled"] is True
        and lane["weight"] == 2
        and lane["intervalMs"] == 600
    )


def _reports_rounds(fleet: HonchoFleet) -> int:
    status, body = fleet.get("reports", "/api/v1/reports/metrics?window=60")
    return int(body["metrics"]["rounds_total"]) if status == 200 else 0


def test_fleet_under_honcho_arms_recovers_every_service_and_stops_clean(
    honcho_fleet: ArmedFleetFactory,
) -> None:
    with honcho_fleet() as fleet:
        status = fleet.wait_armed()  # armed already: the status it is armed with
        assert status["mode"] == "manage"
        assert [s["name"] for s in status["prearm"]["steps"]] == ["training", "meta", "coach"]
        assert all(s["ok"] and s["attempts"] >= 1 for s in status["prearm"]["steps"])
        table = fleet.processes()
        assert sorted(table) == sorted(SERVICES)
        assert all(p["state"] == "running" and p["healthy"] and p["pid"] for p in table.values())

        # Pre-arm left the coach running with the fast lane (weight 2, 600 ms), and rounds it
        # drives are committed by training and counted by reports.
        assert _fast_lane_armed(fleet)
        fleet.wait_for(lambda: fleet.rounds_committed() > 0, 60, "committed rounds")
        fleet.wait_for(lambda: _reports_rounds(fleet) > 0, 60, "rounds in reports")
        started = {e["service"] for e in fleet.system_events("process_started")}
        assert started == set(SERVICES)
        assert {e["step"] for e in fleet.system_events("prearm_step")} >= {
            "training",
            "meta",
            "coach",
        }

        # kill -9 each service in turn: restarted, its pre-arm step rerun, armed again.
        runs = {s["name"]: 1 for s in status["prearm"]["steps"]}
        for name in SERVICES:
            before = fleet.processes()[name]
            os.kill(before["pid"], signal.SIGKILL)

            def recovered(name: str = name, old: int = before["pid"]) -> dict | None:
                entry = fleet.processes().get(name) or {}
                status = fleet.status() or {}
                if entry.get("pid") in (None, old) or entry.get("state") != "running":
                    return None
                return status if status.get("phase") == "armed" else None

            status = fleet.wait_for(recovered, 60, f"{name} restarted and fleet armed")
            after = fleet.processes()[name]
            assert after["restarts"] == before["restarts"] + 1
            assert after["last_exit"]["code"] == -signal.SIGKILL
            if name in runs:
                runs[name] += 1
            for step in status["prearm"]["steps"]:
                assert step["ok"] and step["valid"]
                # Only the steps of the restarted service ran again.
                assert step["runs"] == runs[step["name"]], step
            exits = fleet.system_events("process_exited", name)
            assert exits and exits[-1]["code"] == str(-signal.SIGKILL)
            assert fleet.system_events("process_restarted", name)
            if name == "coach":
                assert _fast_lane_armed(fleet)
                base = fleet.rounds_committed()
                fleet.wait_for(lambda b=base: fleet.rounds_committed() > b, 60, "coaching again")
        assert not fleet.system_events("process_failed")

        # SIGTERM to honcho: everything it and the orchestrator started is gone.
        fleet.record_pids()
        pids = set(fleet.pids_seen)
        assert len(pids) >= 2 + 2 * len(SERVICES)  # honcho, redis, orchestrator, 2 per service
        fleet.stop(timeout_s=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.1)
        assert [p for p in pids if pid_alive(p)] == [], fleet.logs()
        logs = fleet.logs(tail=10_000)
        assert "orchestrator.1 stopped (rc=0)" in logs and "redis.1 stopped (rc=0)" in logs
        with socket.socket() as sock:  # redis-server (the wrapper's child) is gone too
            assert sock.connect_ex(("127.0.0.1", fleet.redis_port)) != 0
