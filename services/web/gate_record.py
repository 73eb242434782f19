"""The rollout's decision record, as pure rules: how one evaluation of a gate changes its recorded
state, and how the recorded states turn the evaluation into the dashboard's decisions.

Pure: no Redis, no aiohttp (services/web/gate_store.py keeps the states and the history).

A gate's recorded state: its current verdict and since when it has held (`since`), when it was
last evaluated (`last`), when it was sealed (`sealed_at`) and whether a sealed gate's live
verdict has regressed. The rules:

- A verdict change is recorded with the criteria's readings; so is a gap in the evaluations
  longer than `MAX_GAP_MS` (nobody can say what happened meanwhile, so the period starts again).
- A gate is judged over its own period: it is *sealed* (passed for good) once its verdict has
  been a passing one continuously for its `hold_s` ("must hold 20 hours") and every earlier gate
  is sealed. Sealed gates are the dashboard's `gates_passed`; the first unsealed one is the
  active gate.
- A sealed gate stays passed. When its live verdict stops passing, the regression is recorded
  and raises an alert; only an operator's explicit re-open unseals it (recorded with its actor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.clock import iso_ms

# Evaluations further apart than this break a gate's continuous period (the web service
# evaluates every TOOLOO_GATES_RECORD_INTERVAL seconds, 30 by default).
MAX_GAP_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class GateState:
    verdict: str
    passing: bool
    since: int  # ms: when the current verdict began (or the period restarted after a gap)
    last: int  # ms: the last evaluation recorded
    sealed_at: int | None = None
    regressed: bool = False
    v: int = 0  # version: the store writes a state only over the version it was computed from

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GateState:
        return cls(
            verdict=str(raw["verdict"]),
            passing=bool(raw["passing"]),
            since=int(raw["since"]),
            last=int(raw["last"]),
            sealed_at=None if raw.get("sealed_at") is None else int(raw["sealed_at"]),
            regressed=bool(raw.get("regressed", False)),
            v=int(raw.get("v", 0)),
        )


def readings(result: Mapping[str, Any]) -> dict[str, Any]:
    """The criteria's readings of one evaluation, as recorded with an event."""
    return {
        c["id"]: {"measured": c.get("measured"), "status": c.get("status")}
        for c in result.get("criteria", [])
    }


def step(
    prev: GateState | None,
    result: Mapping[str, Any],
    now_ms: int,
    hold_s: int,
    earlier_sealed: bool,
) -> tuple[GateState, list[dict[str, Any]]]:
    """The gate's new state after one evaluation, and the events to record (possibly none)."""
    gate, verdict, passing = result["id"], result["verdict"], bool(result["passed"])
    events: list[dict[str, Any]] = []

    def event(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "gate": gate, "at": iso_ms(now_ms), "ms": now_ms, **fields})

    if prev is None:
        state = GateState(verdict, passing, now_ms, now_ms)
        event(
            "verdict",
            **{"from": None, "to": verdict},
            reason=result.get("reason"),
            readings=readings(result),
        )
    else:
        state = replace(prev, last=now_ms)
        if now_ms - prev.last > MAX_GAP_MS:
            state = replace(state, since=now_ms)
            event("gap", gap_s=round((now_ms - prev.last) / 1000), verdict=verdict)
        if verdict != prev.verdict:
            state = replace(state, verdict=verdict, passing=passing, since=now_ms)
            event(
                "verdict",
                **{"from": prev.verdict, "to": verdict},
                reason=result.get("reason"),
                readings=readings(result),
            )
    if state.sealed_at is None:
        held_ms = now_ms - state.since
        if state.passing and earlier_sealed and held_ms >= hold_s * 1000:
            state = replace(state, sealed_at=now_ms, regressed=False)
            event(
                "sealed", verdict=verdict, held_s=round(held_ms / 1000), readings=readings(result)
            )
    elif not state.passing and not state.regressed:
        state = replace(state, regressed=True)
        event("regressed", verdict=verdict, reason=result.get("reason"), readings=readings(result))
    elif state.passing and state.regressed:
        state = replace(state, regressed=False)
        event("recovered", verdict=verdict)
    return state, events


def reopen(
    prev: GateState | None, now_ms: int, gate: str, actor: str, note: str | None
) -> tuple[GateState | None, dict[str, Any]]:
    """An operator's explicit re-open of a sealed gate: it is judged again from now."""
    record = {
        "type": "reopened",
        "gate": gate,
        "at": iso_ms(now_ms),
        "ms": now_ms,
        "actor": actor,
        "note": note,
    }
    if prev is None:
        return None, record
    return replace(prev, sealed_at=None, regressed=False, since=now_ms, last=now_ms), record


def decide(
    summary: dict[str, Any],
    states: Mapping[str, GateState],
    holds: Mapping[str, tuple[int, str | None]],
    phases: Mapping[str, str | None],
    base_phase: str,
    escalation_rank: Sequence[str] = ("normal", "yellow", "red"),
) -> dict[str, Any]:
    """The dashboard's decisions from the recorded states: each gate's record, gates_passed
    (sealed, in calendar order), the active gate, current_phase, next_decision, the alerts of
    regressed gates and the escalation level."""
    gates = summary["gates"]
    passed: list[str] = []
    alerts: list[dict[str, Any]] = []
    phase = base_phase
    for g in gates:
        st = states.get(g["id"])
        hold_s, hold_text = holds.get(g["id"], (0, None))
        g["record"] = _record_view(st, hold_s, hold_text)
        if st is not None and st.sealed_at is not None:
            passed.append(g["id"])
            phase = phases.get(g["id"]) or phase
            if st.regressed:
                alerts.append(
                    {
                        "level": "red",
                        "gate": g["id"],
                        "message": f"{g['id']} passed on {iso_ms(st.sealed_at)} and has "
                        f"regressed to {g['verdict']}: {g['reason']}; re-open it to judge again",
                    }
                )
    active = next((g for g in gates if g["id"] not in passed), None)
    level = active["escalation_level"] if active else "normal"
    if alerts and escalation_rank.index(level) < escalation_rank.index("red"):
        level = "red"
    summary.update(
        current_phase=phase,
        gates_passed=passed,
        gates_pending=[g["id"] for g in gates if g["id"] not in passed],
        active_gate=active["id"] if active else None,
        status="in-progress" if active else "complete",
        escalation_level=level,
        record_alerts=alerts,
        next_decision=_next_decision(active),
    )
    return summary


def _record_view(st: GateState | None, hold_s: int, hold_text: str | None) -> dict[str, Any]:
    if st is None:
        return {
            "hold_s": hold_s,
            "hold": hold_text,
            "since": None,
            "held_s": 0,
            "sealed": False,
            "sealed_at": None,
            "regressed": False,
        }
    held = max(0, st.last - st.since) // 1000
    return {
        "hold_s": hold_s,
        "hold": hold_text,
        "verdict_since": iso_ms(st.since),
        "held_s": held,
        "passing_for_s": held if st.passing else 0,
        "sealed": st.sealed_at is not None,
        "sealed_at": iso_ms(st.sealed_at) if st.sealed_at is not None else None,
        "regressed": st.regressed,
        "seals_at": iso_ms(st.since + hold_s * 1000)
        if st.passing and st.sealed_at is None
        else None,
    }


def _next_decision(active: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Which gate decides next, when, and on what."""
    if active is None:
        return None
    rec = active["record"]
    # The live verdict decides: a recorded pass the live evaluation no longer shows seals nothing.
    seals_at = rec.get("seals_at") if active["passed"] else None
    if seals_at:
        on = f"its {active['verdict']} verdict holding {rec['hold'] or 'its period'}"
    else:
        on = active["reason"]
    return {
        "gate": active["id"],
        "at": seals_at,
        "when": active["when"],
        "verdict": active["verdict"],
        "on": on,
    }
