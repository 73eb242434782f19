"""The decision record: gates judged over their own periods on recorded evaluations (pure
rules, services/web/gate_record.py), sealed passes, regressions and explicit re-opening,
sign-offs, and the record in Redis (services/web/gate_store.py, rollout.py) on a real server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.web import gate_record, rollout
from services.web.gate_record import MAX_GAP_MS, GateState
from services.web.gate_store import GateStore
from services.web.gates import GateTable, evaluate, load_table
from tests.unit.test_gates import CANARY

MIN = 60_000
T0 = 1_800_000_000_000


@pytest.fixture(scope="module")
def table() -> GateTable:
    return load_table()


def result(verdict: str, passed: bool, gate: str = "gate-1-nov-1") -> dict[str, Any]:
    return {"id": gate, "verdict": verdict, "passed": passed, "reason": "r", "criteria": []}


def run(series: list[tuple[int, str, bool]], hold_s: int, earlier: bool = True):  # type: ignore[no-untyped-def]
    """Feed a recorded series of (minute, verdict, passed) evaluations; the state and events."""
    state: GateState | None = None
    events: list[dict[str, Any]] = []
    for minute, verdict, passed in series:
        state, new = gate_record.step(
            state, result(verdict, passed), T0 + minute * MIN, hold_s, earlier
        )
        events += new
    return state, events


def test_a_gate_seals_only_after_passing_for_its_whole_period() -> None:
    series = [(m, "GO", True) for m in range(0, 120, 1)]  # 119 minutes of GO
    state, events = run(series, hold_s=7200)
    assert state is not None and state.sealed_at is None
    state, events = run([*series, (120, "GO", True)], hold_s=7200)
    assert state is not None and state.sealed_at == T0 + 120 * MIN
    assert [e["type"] for e in events] == ["verdict", "sealed"]


def test_a_failure_restarts_the_period_and_is_recorded_with_its_readings() -> None:
    series = [(m, "GO", True) for m in range(60)] + [(60, "HOLD", False)]
    series += [(m, "GO", True) for m in range(61, 150)]
    state, events = run(series, hold_s=7200)
    assert state is not None and state.sealed_at is None  # 89 minutes since the HOLD
    changes = [(e["from"], e["to"]) for e in events if e["type"] == "verdict"]
    assert changes == [(None, "GO"), ("GO", "HOLD"), ("HOLD", "GO")]
    assert all("readings" in e for e in events if e["type"] == "verdict")


def test_a_gap_in_the_evaluations_restarts_the_period() -> None:
    gap_min = MAX_GAP_MS // MIN + 1
    series = [(0, "GO", True)] + [(m, "GO", True) for m in range(gap_min, gap_min + 100)]
    state, events = run(series, hold_s=7200)
    assert state is not None and state.sealed_at is None and state.since == T0 + gap_min * MIN
    assert [e["type"] for e in events] == ["verdict", "gap"]


def test_a_gate_waits_for_the_gates_before_it() -> None:
    state, _ = run([(m, "PASS", True) for m in range(0, 300)], hold_s=60, earlier=False)
    assert state is not None and state.sealed_at is None


def test_a_sealed_gate_stays_passed_its_regression_alerts_and_only_a_reopen_unseals() -> None:
    series = [(0, "GO", True), (1, "GO", True), (2, "HOLD", False), (3, "HOLD", False)]
    state, events = run(series, hold_s=60)
    assert state is not None and state.sealed_at == T0 + MIN and state.regressed
    assert [e["type"] for e in events] == ["verdict", "sealed", "verdict", "regressed"]
    reopened, entry = gate_record.reopen(state, T0 + 4 * MIN, "gate-1-nov-1", "ana", "fixing")
    assert reopened is not None and reopened.sealed_at is None and not reopened.regressed
    assert entry["type"] == "reopened" and entry["actor"] == "ana"


def test_decide_advances_active_gate_phase_and_next_decision(table: GateTable) -> None:
    summary = evaluate(table, CANARY)
    ids = [g.id for g in table.gates]
    holds = {g.id: (g.hold_s, g.hold) for g in table.gates}
    phases = {g.id: g.phase_after for g in table.gates}
    # Nothing sealed yet: the Phase 3 (coach integration) gate is the active one.
    first = gate_record.decide(copy.deepcopy(summary), {}, holds, phases, table.current_phase)
    assert first["active_gate"] == "phase-3-coach" and first["current_phase"] == "phase-3"
    assert first["next_decision"]["gate"] == "phase-3-coach"
    states = {
        ids[0]: GateState("PASS", True, T0, T0 + 200 * MIN, sealed_at=T0 + 5 * MIN),
        ids[1]: GateState("GO", True, T0, T0 + 200 * MIN, sealed_at=T0 + 125 * MIN),
        ids[2]: GateState("PASS", True, T0 + 10 * MIN, T0 + 20 * MIN),
    }
    decided = gate_record.decide(copy.deepcopy(summary), states, holds, phases, table.current_phase)
    assert decided["gates_passed"] == ids[:2] and decided["active_gate"] == ids[2]
    assert decided["current_phase"] == "phase-4"  # the Phase 3 gate's seal opened phase 4
    nxt = decided["next_decision"]
    assert nxt["gate"] == ids[2] and nxt["when"].startswith("Nov 2")
    # Gate 2 is CONDITIONAL PASS live (revenue not signed off): no seal time, and it says why.
    assert nxt["at"] is None and "Revenue" in nxt["on"]
    # Every gate sealed: the rollout is complete and phase 5 begins.
    done = {g.id: GateState("GO", True, T0, T0, sealed_at=T0) for g in table.gates}
    final = gate_record.decide(
        copy.deepcopy(summary), done, {}, {g.id: g.phase_after for g in table.gates}, "phase-4"
    )
    assert final["status"] == "complete" and final["current_phase"] == "phase-5"
    assert final["next_decision"] is None


def test_a_regressed_sealed_gate_raises_a_red_alert(table: GateTable) -> None:
    bad = evaluate(table, {**CANARY, "error_rate_pct": 5.0})
    ids = [g.id for g in table.gates]
    states = {ids[0]: GateState("HOLD 1 week", False, T0, T0, sealed_at=T0 - MIN, regressed=True)}
    decided = gate_record.decide(bad, states, {}, {}, "phase-4")
    assert decided["gates_passed"] == [ids[0]]
    assert decided["escalation_level"] == "red"
    assert decided["record_alerts"][0]["gate"] == ids[0]


# ---- on Redis ----------------------------------------------------------------------------------


async def test_record_signoff_and_history_on_redis(redis, keys, table: GateTable) -> None:  # type: ignore[no-untyped-def]
    store = GateStore(redis, keys)
    metrics = {**CANARY, "learners": 60_000, "error_rate_pct": 0.01, "uptime_pct": 99.999}
    metrics = {**metrics, "round_latency_ms": {"p50": 20, "p95": 30, "p99": 40}}
    first = await rollout.evaluate(
        store, table, metrics, available=True, reason=None, now_ms=T0, record=True
    )
    gate2 = next(g for g in first["gates"] if g["number"] == 2)
    assert gate2["verdict"] == "CONDITIONAL PASS"  # revenue is not signed off

    # Bad sign-offs are refused and record nothing.
    with pytest.raises(rollout.UnknownGate):
        await rollout.sign_off(store, table, "gate-99", "revenue_signal", 6, "cfo", None, T0)
    with pytest.raises(rollout.BadSignoff):
        await rollout.sign_off(store, table, gate2["id"], "error_rate", 0, "cfo", None, T0)
    with pytest.raises(rollout.BadSignoff):
        await rollout.sign_off(store, table, gate2["id"], "nope", 1, "cfo", None, T0)
    assert [e["type"] for e in await store.history(50)] == ["verdict"] * len(table.gates)

    signed = await rollout.sign_off(
        store, table, gate2["id"], "revenue_signal", 6.1, "cfo", "finance report", T0 + MIN
    )
    assert signed["status"] == "pass" and signed["signoff"]["actor"] == "cfo"
    later = await rollout.evaluate(
        store, table, metrics, available=True, reason=None, now_ms=T0 + 2 * MIN, record=True
    )
    gate2 = next(g for g in later["gates"] if g["number"] == 2)
    revenue = next(c for c in gate2["criteria"] if c["id"] == "revenue_signal")
    assert revenue["status"] == "pass" and revenue["measured"] == 6.1
    assert revenue["signed_off"]["actor"] == "cfo"
    assert gate2["verdict"] == "PASS"

    history = await store.history(100, gate2["id"])
    assert [e["type"] for e in history[:2]] == ["verdict", "signoff"]
    assert history[0]["from"] == "CONDITIONAL PASS" and history[0]["to"] == "PASS"

    # A stale writer (another replica computed from an older version) writes nothing.
    states, _ = await store.load()
    stale = states[gate2["id"]]
    assert not await store.record(gate2["id"], stale.v - 1, stale, [{"type": "x"}])
    assert (await store.history(1))[0]["type"] != "x"
