"""Coach resilience with real processes: a killed leader is replaced by a standby, and a training
outage is reported without crashing and recovers by itself."""

from __future__ import annotations

import pytest

from harness.polling import wait_for
from harness.ports import free_port
from harness.processes import ServiceProcess
from tests.integration.test_coach import COACH, create_learners, status

pytestmark = pytest.mark.integration


def coach_status(proc: ServiceProcess) -> dict:
    code, body = proc.get(f"{COACH}/status")
    assert code == 200, body
    return body["status"]


async def test_killed_leader_is_replaced_by_the_standby(fleet):
    fleet.start("training", "coach")
    create_learners(fleet, [f"k{i}" for i in range(40)])
    fleet["coach"].post(f"{COACH}/fast-lane", {"intervalMs": 100})
    fleet["coach"].post(f"{COACH}/start")
    first = fleet["coach"]
    wait_for(lambda: coach_status(first)["leader"])

    port = free_port()
    standby = ServiceProcess(
        "coach-standby",
        "services.coach",
        port,
        dict(fleet.env, COACH_PORT=str(port)),
        fleet.log_dir,
    )
    fleet.procs["coach-standby"] = standby.start()
    standby.wait_ready()
    assert coach_status(standby)["leader"] is False
    assert coach_status(standby)["leaderInstance"] == coach_status(first)["instance"]
    rounds = wait_for(lambda: (n := coach_status(standby)["roundsRun"]) > 0 and n)

    first.kill()
    taken = wait_for(lambda: (s := coach_status(standby))["leader"] and s, timeout_s=15)
    assert taken["leaderInstance"] == taken["instance"]
    assert taken["active"] is True
    # The standby coaches now, continuing the counters.
    wait_for(lambda: coach_status(standby)["roundsRun"] > max(rounds, taken["roundsRun"]))


async def test_training_outage_is_reported_and_coaching_resumes(fleet):
    fleet.start("training", "coach")
    create_learners(fleet, [f"o{i}" for i in range(40)])
    fleet["coach"].post(f"{COACH}/fast-lane", {"intervalMs": 100})
    fleet["coach"].post(f"{COACH}/start")
    wait_for(lambda: status(fleet)["roundsRun"] > 0)

    fleet["training"].stop()
    down = wait_for(lambda: (s := status(fleet))["outage"]["training"] and s)
    assert "training unavailable" in down["lastAction"]
    assert down["outage"]["training"]["since"] > 0
    assert fleet["coach"].alive and down["active"] is True
    # Boost during the outage: a clear upstream error, not a hang or a 500.
    code, body = fleet["coach"].post(f"{COACH}/boost", {"learner": "o1", "rounds": 2})
    assert code in (502, 504) and body["error"]["code"].startswith("upstream")

    fleet.start("training")
    back = wait_for(lambda: (s := status(fleet))["outage"]["training"] is None and s, timeout_s=20)
    wait_for(lambda: status(fleet)["roundsRun"] > back["roundsRun"])
