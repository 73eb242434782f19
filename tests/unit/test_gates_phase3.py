"""The Phase 3 (coach integration) gate and gate 1's pre-flight checklist: the evaluator on
recorded readings (services/web/gates.py), the readings from recorded answers of the fleet
(services/web/fleet_checks.py), and their place in the decision record."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.web import fleet_checks, rollout
from services.web.gate_store import GateStore
from services.web.gates import GateTable, evaluate_gate, load_table
from tests.unit.test_gates import CANARY, G1_SIGNOFFS, SIGNOFFS, criterion, g1

NOW = 1_800_000_000_000
MIN = 60_000


@pytest.fixture(scope="module")
def table() -> GateTable:
    return load_table()


def phase3(table: GateTable, metrics: dict[str, Any]) -> dict[str, Any]:
    return evaluate_gate(table, table.gates[0], metrics)


def integration(**changes: Any) -> dict[str, Any]:
    metrics = copy.deepcopy(CANARY)
    metrics["integration"].update(changes)
    return metrics


# ---- the Phase 3 gate --------------------------------------------------------------------------


def test_phase3_passes_on_an_integrated_coach(table: GateTable) -> None:
    result = phase3(table, CANARY)
    assert table.gates[0].id == "phase-3-coach" and table.gates[0].phase_after == "phase-4"
    assert result["verdict"] == "PASS" and result["passed"] is True
    assert criterion(result, "boost_3_rounds")["measured"] == 0.84  # ms scaled to s


def test_a_fast_lane_the_operator_changed_is_their_decision_not_a_failure(
    table: GateTable,
) -> None:
    lane = fleet_checks.fast_lane_reading(
        {"fastLane": {"enabled": True, "weight": 3, "intervalMs": 900}}
    )
    assert lane["default"] == 0 and lane["changed"] is True
    result = phase3(table, integration(fast_lane=lane))
    fast = criterion(result, "fast_lane")
    assert fast["status"] == "operator" and "weight 3, interval 900 ms" in fast["reason"]
    assert "not a failure" in fast["reason"]
    assert result["verdict"] == "PASS" and "fast_lane" not in result["failed"]
    off = fleet_checks.fast_lane_reading({"fastLane": {"enabled": False, "weight": 2}})
    assert off["setting"] == "off" and off["enabled_weight_ok"] == 0
    assert phase3(table, integration(fast_lane=off))["verdict"] == "PASS"


def test_no_boost_yet_is_pending_not_a_failure(table: GateTable) -> None:
    result = phase3(table, integration(boost=fleet_checks.boost_reading([], NOW)))
    assert criterion(result, "boost_3_rounds")["status"] == "not_measured"
    assert result["verdict"] == "PENDING" and result["escalation_level"] == "normal"
    assert "boost" in result["decision"] and result["failed"] == []


@pytest.mark.parametrize(
    ("changes", "failed"),
    [
        ({"boost": {"count": 2, "worst_3_rounds_ms": 12_500.0}}, "boost_3_rounds"),
        ({"coach_active": 0}, "coach_active"),
        ({"prearm_armed": 0}, "prearm_armed"),
    ],
)
def test_phase3_fails_on_a_slow_boost_a_stopped_coach_or_no_prearm(
    table: GateTable, changes: dict[str, Any], failed: str
) -> None:
    result = phase3(table, integration(**changes))
    assert result["verdict"] == "FAIL" and result["failed"] == [failed]


def test_phase3_meta_trigger_delay_is_the_p99_and_idle_is_no_failure(table: GateTable) -> None:
    slow = copy.deepcopy(CANARY)
    slow["meta_trigger_delay_ms"] = {"p50": 40, "p99": 400, "count": 9}
    result = phase3(table, slow)
    assert result["failed"] == ["meta_trigger_delay"]
    assert criterion(result, "meta_trigger_delay")["measured"] == 400
    idle = copy.deepcopy(CANARY)
    idle["meta_trigger_delay_ms"] = {"p50": None, "p99": None, "count": 0}
    idle["meta_trigger_misses"] = {"pct": None, "idle": True}
    assert criterion(phase3(table, idle), "meta_trigger_delay")["status"] == "idle"


def test_boost_reading_judges_recent_boosts_of_three_rounds_or_more() -> None:
    boosts = [
        {"at_ms": NOW - 1_000, "rounds": 1, "ms": 9_000.0},  # under 3 rounds: says nothing
        {"at_ms": NOW - 2_000, "rounds": 20, "ms": 30_000.0},  # 4.5 s per 3 rounds
        {"at_ms": NOW - 3_000, "rounds": 3, "ms": 800.0},
        {"at_ms": NOW - 2 * 86_400_000, "rounds": 3, "ms": 60_000.0},  # too old
        {"rounds": "x"},
    ]
    reading = fleet_checks.boost_reading(boosts, NOW)
    assert reading["count"] == 2 and reading["worst_3_rounds_ms"] == 4500.0
    assert reading["last_rounds"] == 20
    assert fleet_checks.boost_reading(None, NOW)["count"] == 0


def test_integration_readings_from_the_fleets_answers() -> None:
    coach = {
        "ok": True,
        "status": {
            "active": True,
            "fastLane": {"enabled": True, "weight": 2, "intervalMs": 600},
            "boosts": [{"at_ms": NOW - 5, "rounds": 3, "ms": 700.0}],
        },
    }
    status = {"ok": True, "phase": "armed", "armed": True}
    got = fleet_checks.integration_readings(coach, status, NOW)
    assert got["coach_active"] == 1 and got["prearm_armed"] == 1
    assert got["fast_lane"]["default"] == 1 and got["boost"]["count"] == 1
    # A coach that does not answer is not active; an orchestrator that does not answer: unknown.
    down = fleet_checks.integration_readings({"error": {"message": "x"}}, {"error": {}}, NOW)
    assert down["coach_active"] == 0 and down["prearm_armed"] is None


# ---- gate 1's pre-flight checklist -------------------------------------------------------------


def test_gate1_go_needs_the_preflight_checklist_and_its_signoffs(table: GateTable) -> None:
    assert g1(table, CANARY)["verdict"] == "GO"
    unsigned = evaluate_gate(table, table.gates[1], CANARY)
    assert unsigned["verdict"] == "HOLD"
    assert set(unsigned["not_measured"]) == set(G1_SIGNOFFS)
    assert all(criterion(unsigned, c)["metric"] is None for c in G1_SIGNOFFS)


@pytest.mark.parametrize(
    "item",
    [
        "services_healthy",
        "redis_ok",
        "shards_recorded",
        "memory_headroom",
        "reports_recording",
        "alerting_armed",
    ],
)
def test_a_failed_preflight_item_holds_gate1(table: GateTable, item: str) -> None:
    metrics = copy.deepcopy(CANARY)
    metrics["preflight"][item] = 0
    result = g1(table, metrics)
    assert result["verdict"] == "HOLD" and "pre-flight" in result["decision"]
    assert len(result["failed"]) == 1 and result["failed"][0].startswith("pf_")


def test_preflight_readings_from_recorded_answers() -> None:
    processes = {
        "processes": [
            {"name": "training", "state": "running", "healthy": True},
            {"name": "coach", "state": "failed", "healthy": False},
            {"name": "web", "state": "external", "healthy": True},
        ]
    }
    healthy, bad = fleet_checks.services_healthy(processes)
    assert healthy == 0 and bad == ["coach"]
    assert fleet_checks.services_healthy({"error": {}}) == (None, [])

    aof_off = fleet_checks.redis_reading([{"node": "n1", "aof_enabled": 0}], None)
    assert aof_off["ok"] == 0 and "append-only" in aof_off["reason"]
    no_replica = fleet_checks.redis_reading(
        [{"node": "n1", "aof_enabled": 1, "connected_slaves": 0}], 1
    )
    assert no_replica["ok"] == 0 and "replicas" in no_replica["reason"]
    good = fleet_checks.redis_reading(
        [{"node": "n1", "aof_enabled": 1, "aof_last_write_status": "ok", "connected_slaves": 1}], 1
    )
    assert good["ok"] == 1
    assert fleet_checks.redis_reading(None, None)["ok"] == 0

    lagging = {
        "ok": True,
        "status": {
            "ok": True,
            "alerts": ["stream_lag rounds/reports 200000 > 100000"],
            "redis_memory": {"used_pct": 85.0},
        },
    }
    integ = fleet_checks.integration_readings({"error": {}}, {"error": {}}, NOW)
    pf = fleet_checks.preflight_readings(
        processes_body=processes,
        integration=integ,
        redis=good,
        shards_recorded=True,
        memory_alert_pct=80.0,
        reports_status_body=lagging,
        alerting_body={"ok": True, "webhooks": 0},
    )
    assert pf["reports_recording"] == 0 and pf["memory_headroom"] == 0
    assert pf["alerting_armed"] == 0 and pf["shards_recorded"] == 1
    assert pf["services_healthy"] == 0 and pf["unhealthy"] == ["coach"]
    # Reports away: recording and memory are not measured, not guessed.
    away = fleet_checks.preflight_readings(
        processes_body=processes,
        integration=integ,
        redis=good,
        shards_recorded=None,
        memory_alert_pct=80.0,
        reports_status_body={"error": {}},
        alerting_body={"error": {}},
    )
    assert away["reports_recording"] is None and away["memory_headroom"] is None
    assert away["alerting_armed"] is None and away["shards_recorded"] is None


# ---- in the record -----------------------------------------------------------------------------


async def test_the_phase3_gate_opens_phase_4_and_its_verdicts_are_recorded(  # type: ignore[no-untyped-def]
    redis, keys, table: GateTable
) -> None:
    store = GateStore(redis, keys)
    for gate, signoffs in SIGNOFFS.items():
        for cid, so in signoffs.items():
            await rollout.sign_off(store, table, gate, cid, so["value"], "vp", None, NOW)

    async def at(minute: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return await rollout.evaluate(
            store, table, metrics, available=True, reason=None, now_ms=NOW + minute * MIN,
            record=True,
        )  # fmt: skip

    # No boost yet: the Phase 3 gate is pending (and gate 1's pre-flight boost unmeasured).
    summary = await at(0, integration(boost=fleet_checks.boost_reading([], NOW)))
    assert summary["verdicts"]["phase-3-coach"] == "PENDING"
    assert summary["active_gate"] == "phase-3-coach" and summary["current_phase"] == "phase-3"
    assert summary["next_decision"]["gate"] == "phase-3-coach"
    assert summary["escalation_level"] == "normal"  # pending is no alarm
    # A boost is measured: PASS, and the gate seals after its 5 minutes; phase 4 opens.
    for minute in range(1, 6):
        summary = await at(minute, CANARY)
        assert summary["gates_passed"] == []
    summary = await at(6, CANARY)
    assert summary["gates_passed"] == ["phase-3-coach"]
    assert summary["current_phase"] == "phase-4" and summary["active_gate"] == "gate-1-nov-1"
    history = await store.history(100, "phase-3-coach")
    changes = [(e.get("from"), e.get("to")) for e in history if e["type"] == "verdict"]
    assert changes == [("PENDING", "PASS"), (None, "PENDING")]
    assert history[0]["type"] == "sealed"
    # Gate 1 passed from minute 1 but is judged over its own 2 hours, after the Phase 3 gate.
    for minute in range(10, 121, 4):
        summary = await at(minute, CANARY)
    assert summary["gates_passed"] == ["phase-3-coach"]
    summary = await at(122, CANARY)
    assert summary["gates_passed"] == ["phase-3-coach", "gate-1-nov-1"]
    assert summary["active_gate"] == "gate-2-nov-2"
