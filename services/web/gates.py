"""Evaluation of the rollout's execution gates against live metrics.

Pure: no I/O beyond reading the table file, no aiohttp. The gate table (`gates.json`) holds the
criteria and each gate's decision branches; this module only knows how to measure a criterion,
how to test a branch's condition and how to summarise the result for the dashboard.

A criterion is `pass` when its measured value meets the pass threshold (the target when the table
gives no separate threshold), `fail` when it does not, and `not_measured` when the fleet has no
such measurement (revenue, ROI, incidents, compliance…) or no data for it yet. `not_measured` is
never counted as passed: branches such as `all_pass` need every named criterion to be `pass`.
A criterion with `idle_when` (coach throughput) is `idle` when that flag is set: no learner
needed coaching during the period, so there was nothing to measure a pace on and nothing wrong;
`idle` satisfies `all_pass` and is never a failure ("idle, no demand"). A criterion with
`operator_when` (the Phase 3 gate's fast lane) is `operator` when that flag is set: the operator
changed the setting the criterion names, which is their decision, shown with the setting
(`operator_note`), satisfying `all_pass`, never a failure.

Decision branches are tried in table order; the first whose condition holds gives the verdict.
Conditions (JSON):
    "all_pass"                  every criterion of the gate passed
    "otherwise"                 always
    {"all_pass": [ids]}         each named criterion passed
    {"any_failed": [ids]|"*"}   at least one named (any) criterion failed
    {"any_not_measured": [ids]|"*"}
    {"all_partial": [ids]}      each named criterion passed or met its `partial` level
    {"alert": "red"|"yellow"}   an alert of that level fired
    {"any_of": [cond, ...]}, {"all_of": [cond, ...]}
Several keys in one object must all hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

TABLE_PATH = Path(__file__).with_name("gates.json")

Comparator = Literal["<", "<=", ">", ">=", "==", "between"]
Status = Literal["pass", "fail", "not_measured", "idle", "operator"]
SATISFIED = ("pass", "idle", "operator")
HOLD_UNAVAILABLE = "HOLD"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Escalation(_Model):
    owner: str
    action: str
    duration: str | None = None
    retest: str | None = None


class Criterion(_Model):
    id: str
    name: str
    metric: str | None  # dotted path into the metrics; None: the fleet cannot measure it
    comparator: Comparator
    target: int | float | list[int | float]
    threshold: int | float | list[int | float] | None = None
    partial: int | float | None = None
    unit: str
    scale: float = 1.0  # measured = raw * scale (ms → s, fraction → %)
    requires: str | None = None  # a count that must be > 0 for the metric to mean anything
    idle_when: str | None = None  # a flag: true when there was no demand to measure
    operator_when: str | None = None  # a flag: true when the operator changed the setting
    operator_note: str | None = None  # the text of the operator's setting
    note: str | None = None
    kind: str | None = None
    escalation: Escalation | None = None

    @field_validator("target", "threshold")
    @classmethod
    def _range_pairs(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) != 2:
            raise ValueError("a range is [low, high]")
        return value


class Alert(_Model):
    metric: str
    comparator: Comparator
    value: int | float
    level: Literal["yellow", "red"]
    message: str


class Branch(_Model):
    when: Any
    verdict: str
    decision: str
    action: str
    owner: str
    rollback_level: int | None = None
    reassess: str | None = None


class Gate(_Model):
    id: str
    number: int
    name: str
    when: str
    authority: str
    purpose: str
    # The gate's own period: its verdict must pass continuously this long before it is sealed.
    hold_s: int = 0
    hold: str | None = None
    phase_after: str | None = None  # the rollout phase its seal opens
    criteria: list[Criterion]
    alerts: list[Alert] = []
    decision: list[Branch]


class Rollback(_Model):
    name: str
    timeline: str
    steps: list[str]


class GateTable(_Model):
    source: str
    current_phase: str
    passing_verdicts: list[str]
    escalation_levels: dict[str, str]
    rollback_procedures: dict[str, Rollback]
    gates: list[Gate]


def load_table(path: Path = TABLE_PATH) -> GateTable:
    """Read and check the table; a malformed table fails at start-up, not at the first request."""
    table = GateTable.model_validate(json.loads(path.read_text(encoding="utf-8")))
    for gate in table.gates:
        ids = {c.id for c in gate.criteria}
        if len(ids) != len(gate.criteria):
            raise ValueError(f"{gate.id}: duplicate criterion ids")
        if not gate.decision:
            raise ValueError(f"{gate.id}: no decision branches")
        for branch in gate.decision:
            _check_condition(branch.when, ids, gate.id)
            if branch.verdict not in table.escalation_levels:
                raise ValueError(f"{gate.id}: verdict {branch.verdict!r} has no escalation level")
    return table


def _check_condition(cond: Any, ids: set[str], gate: str) -> None:
    if cond in ("all_pass", "otherwise"):
        return
    if not isinstance(cond, dict) or not cond:
        raise ValueError(f"{gate}: bad condition {cond!r}")
    for key, value in cond.items():
        if key in ("any_of", "all_of"):
            for sub in value:
                _check_condition(sub, ids, gate)
        elif key in ("any_failed", "any_not_measured", "all_pass", "all_partial"):
            if value != "*" and not set(value) <= ids:
                raise ValueError(f"{gate}: {key} names unknown criteria {set(value) - ids}")
        elif key == "alert":
            if value not in ("yellow", "red"):
                raise ValueError(f"{gate}: unknown alert level {value!r}")
        else:
            raise ValueError(f"{gate}: unknown condition {key!r}")


# ---- measuring ---------------------------------------------------------------------------------


def lookup(metrics: Mapping[str, Any] | None, path: str) -> float | None:
    """The number at a dotted path, or None (missing, null, not a number, NaN)."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return node if math.isfinite(node) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def signable(gate: Gate) -> dict[str, Criterion]:
    """The criteria of a gate a person may sign off: those the fleet cannot measure."""
    return {c.id: c for c in gate.criteria if c.metric is None}


def _flag(metrics: Mapping[str, Any] | None, path: str) -> bool:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return node is True


def _text(metrics: Mapping[str, Any] | None, path: str) -> str | None:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, str) else None


def compare(value: float, comparator: str, bound: float | Sequence[float]) -> bool:
    if comparator == "between":
        low, high = bound  # type: ignore[misc]
        return low <= value <= high
    assert not isinstance(bound, Sequence)
    if comparator == "<":
        return value < bound
    if comparator == "<=":
        return value <= bound
    if comparator == ">":
        return value > bound
    if comparator == ">=":
        return value >= bound
    if comparator == "==":
        return value == bound
    raise ValueError(f"unknown comparator {comparator!r}")


def measure(
    criterion: Criterion,
    metrics: Mapping[str, Any] | None,
    signoff: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One criterion's reading. A criterion the fleet cannot measure is judged on its sign-off
    (what a person stated, with who and when), never on an invented value."""
    threshold = criterion.threshold if criterion.threshold is not None else criterion.target
    out: dict[str, Any] = {
        "id": criterion.id,
        "name": criterion.name,
        "metric": criterion.metric,
        "comparator": criterion.comparator,
        "target": criterion.target,
        "threshold": threshold,
        "measured": None,
        "unit": criterion.unit,
        "status": "not_measured",
        "meets_target": False,
    }
    if criterion.partial is not None:
        out["partial"] = criterion.partial
        out["partial_met"] = False
    if criterion.metric is None:
        if signoff is not None and _number(signoff.get("value")) is not None:
            value = float(signoff["value"])
            out["measured"] = value
            out["status"] = "pass" if compare(value, criterion.comparator, threshold) else "fail"
            out["meets_target"] = compare(value, criterion.comparator, criterion.target)
            out["signed_off"] = dict(signoff)
            out["reason"] = f"signed off by {signoff.get('actor')} at {signoff.get('at')}"
            return out
        out["reason"] = criterion.note or "the fleet has no measurement for this criterion"
        return out
    if criterion.idle_when is not None and _flag(metrics, criterion.idle_when):
        out["status"] = "idle"
        out["reason"] = "idle, no demand in the period"
        return out
    if criterion.operator_when is not None and _flag(metrics, criterion.operator_when):
        note = _text(metrics, criterion.operator_note) if criterion.operator_note else None
        out["status"] = "operator"
        out["measured"] = note
        out["reason"] = f"set by the operator ({note or 'changed'}): their decision, not a failure"
        return out
    raw = lookup(metrics, criterion.metric)
    if raw is not None and criterion.requires is not None:
        count = lookup(metrics, criterion.requires)
        if not count:
            raw = None
    if raw is None:
        out["reason"] = f"no data for {criterion.metric}"
        return out
    measured = raw if criterion.scale == 1 else round(raw * criterion.scale, 6)
    out["measured"] = measured
    out["status"] = "pass" if compare(measured, criterion.comparator, threshold) else "fail"
    out["meets_target"] = compare(measured, criterion.comparator, criterion.target)
    if criterion.partial is not None:
        out["partial_met"] = out["status"] == "pass" or compare(
            measured, criterion.comparator, criterion.partial
        )
    return out


def _alerts(gate: Gate, metrics: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    fired = []
    for alert in gate.alerts:
        value = lookup(metrics, alert.metric)
        if value is not None and compare(value, alert.comparator, alert.value):
            fired.append(
                {
                    "level": alert.level,
                    "message": alert.message,
                    "metric": alert.metric,
                    "measured": value,
                }
            )
    return fired


# ---- deciding ----------------------------------------------------------------------------------


def _ids(value: Any, results: Mapping[str, dict[str, Any]]) -> list[str]:
    return list(results) if value == "*" else list(value)


def holds(cond: Any, results: Mapping[str, dict[str, Any]], alerts: list[dict[str, Any]]) -> bool:
    """Whether a branch condition holds for these criterion results and fired alerts."""
    if cond == "otherwise":
        return True
    if cond == "all_pass":
        return all(r["status"] in SATISFIED for r in results.values())
    checks = []
    for key, value in cond.items():
        if key == "any_of":
            checks.append(any(holds(sub, results, alerts) for sub in value))
        elif key == "all_of":
            checks.append(all(holds(sub, results, alerts) for sub in value))
        elif key == "any_failed":
            checks.append(any(results[i]["status"] == "fail" for i in _ids(value, results)))
        elif key == "any_not_measured":
            checks.append(any(results[i]["status"] == "not_measured" for i in _ids(value, results)))
        elif key == "all_pass":
            checks.append(all(results[i]["status"] in SATISFIED for i in _ids(value, results)))
        elif key == "all_partial":
            checks.append(
                all(
                    results[i]["status"] in SATISFIED or results[i].get("partial_met", False)
                    for i in _ids(value, results)
                )
            )
        elif key == "alert":
            checks.append(any(a["level"] == value for a in alerts))
        else:
            raise ValueError(f"unknown condition {key!r}")
    return all(checks)


def _fmt(result: dict[str, Any]) -> str:
    bound = result["threshold"]
    bound_s = (
        f"{bound[0]}–{bound[1]}" if isinstance(bound, list) else f"{result['comparator']} {bound}"
    )
    return f"{result['name']} {result['measured']} {result['unit']} (needs {bound_s})"


def evaluate_gate(
    table: GateTable,
    gate: Gate,
    metrics: Mapping[str, Any] | None,
    *,
    metrics_available: bool = True,
    unavailable_reason: str | None = None,
    signoffs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """One gate's verdict; `signoffs`: criterion id -> the sign-off recorded for it."""
    signed = signoffs or {}
    results = {c.id: measure(c, metrics, signed.get(c.id)) for c in gate.criteria}
    alerts = _alerts(gate, metrics) if metrics_available else []
    failed = [i for i, r in results.items() if r["status"] == "fail"]
    unmeasured = [i for i, r in results.items() if r["status"] == "not_measured"]

    if not metrics_available:
        # Without the fleet's metrics nothing can be decided; holding is the only safe answer.
        verdict, decision = HOLD_UNAVAILABLE, "HOLD → metrics unavailable"
        action = "Restore the reports service, then re-evaluate the gate"
        owner, rollback_level, reassess = gate.authority, None, None
        reason = unavailable_reason or "metrics unavailable"
    else:
        branch = next((b for b in gate.decision if holds(b.when, results, alerts)), None)
        if branch is None:  # a table without a catch-all: hold rather than guess
            verdict, decision, action = "HOLD", "HOLD → no decision branch matched", "Review"
            owner, rollback_level, reassess = gate.authority, None, None
        else:
            verdict, decision, action = branch.verdict, branch.decision, branch.action
            owner, rollback_level, reassess = branch.owner, branch.rollback_level, branch.reassess
        parts = []
        if failed:
            parts.append("failed: " + "; ".join(_fmt(results[i]) for i in failed))
        if alerts:
            parts.append("alerts: " + "; ".join(a["message"] for a in alerts))
        if unmeasured:
            parts.append("not measured: " + ", ".join(results[i]["name"] for i in unmeasured))
        reason = " | ".join(parts) or "all criteria pass"

    crit_by_id = {c.id: c for c in gate.criteria}
    escalations = [
        {"criterion": i, **crit_by_id[i].escalation.model_dump()}  # type: ignore[union-attr]
        for i in failed
        if crit_by_id[i].escalation is not None
    ]
    rollback = (
        table.rollback_procedures[str(rollback_level)].model_dump()
        if rollback_level is not None and str(rollback_level) in table.rollback_procedures
        else None
    )
    return {
        "id": gate.id,
        "number": gate.number,
        "name": gate.name,
        "when": gate.when,
        "authority": gate.authority,
        "purpose": gate.purpose,
        "verdict": verdict,
        "passed": verdict in table.passing_verdicts,
        "decision": decision,
        "action": action,
        "owner": owner,
        "rollback_level": rollback_level,
        "rollback": rollback,
        "reassess": reassess,
        "reason": reason,
        "escalation_level": table.escalation_levels.get(verdict, "yellow"),
        "failed": failed,
        "not_measured": unmeasured,
        "alerts": alerts,
        "escalations": escalations,
        "criteria": list(results.values()),
    }


def evaluate(
    table: GateTable,
    metrics: Mapping[str, Any] | None,
    *,
    metrics_available: bool = True,
    unavailable_reason: str | None = None,
    signoffs: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Every gate's verdict plus the rollout dashboard's summary (current_phase, active_gate,
    metrics, gates_passed/pending, escalation_level) as this one evaluation alone says it;
    `signoffs`: gate id -> criterion id -> sign-off. The decision record
    (services/web/gate_record.py) turns it into decisions over each gate's period."""
    gates = [
        evaluate_gate(
            table,
            gate,
            metrics,
            metrics_available=metrics_available,
            unavailable_reason=unavailable_reason,
            signoffs=(signoffs or {}).get(gate.id),
        )
        for gate in table.gates
    ]
    passed = [g["id"] for g in gates if g["passed"]]
    pending = [g["id"] for g in gates if not g["passed"]]
    # The active gate is the first one in calendar order the fleet has not passed yet.
    active = next((g for g in gates if not g["passed"]), None)
    return {
        "current_phase": table.current_phase,
        "active_gate": active["id"] if active else None,
        "status": "in-progress" if active else "complete",
        "metrics_available": metrics_available,
        "reason": None if metrics_available else (unavailable_reason or "metrics unavailable"),
        "metrics": {
            "learners": lookup(metrics, "learners"),
            "regions": lookup(metrics, "regions"),
            "error_rate": lookup(metrics, "error_rate_pct"),
            "latency_p95": lookup(metrics, "round_latency_ms.p95"),
            "latency_p99": lookup(metrics, "round_latency_ms.p99"),
            "uptime": lookup(metrics, "uptime_pct"),
            "coach_throughput": lookup(metrics, "coach.throughput_rounds_per_min"),
            "coach_throughput_demand_p10": lookup(metrics, "coach.demand_throughput.p10"),
            "coach_idle": _flag(metrics, "coach.demand_throughput.idle"),
            # One name, one meaning fleet-wide: the p99 (the coach's status says the same).
            "meta_trigger_delay_ms": lookup(metrics, "meta_trigger_delay_ms.p99"),
            "meta_trigger_delay_p50_ms": lookup(metrics, "meta_trigger_delay_ms.p50"),
            "restarts": lookup(metrics, "restarts"),
            "coach_active": lookup(metrics, "integration.coach_active"),
            "prearm_armed": lookup(metrics, "integration.prearm_armed"),
            "boost_3_rounds_ms": lookup(metrics, "integration.boost.worst_3_rounds_ms"),
            "revenue_signal": None,  # not tracked by the fleet; never invented
        },
        "gates_passed": passed,
        "gates_pending": pending,
        "verdicts": {g["id"]: g["verdict"] for g in gates},
        "escalation_level": active["escalation_level"] if active else "normal",
        "gates": gates,
    }


def compose_metrics(
    reports_body: Any,
    processes_body: Any,
    reports_error: str | None = None,
    checks: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], bool, str | None, dict[str, Any]]:
    """Merge the reports metrics (docs/ARCHITECTURE.md §3) and the orchestrator's process table
    into the metrics the gates read. Returns (metrics, available, reason, sources).

    Restarts: the reports count is over the same window as every other metric, so it is used
    when present; the orchestrator's cumulative count is the fallback. A process the orchestrator
    gave up on (state `failed`) always counts as a crash. `checks`: the coach integration and
    pre-flight readings (services/web/fleet_checks.py), under `integration` and `preflight`.
    """
    sources: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    available = False
    reason: str | None = None
    if isinstance(reports_body, Mapping) and isinstance(reports_body.get("metrics"), Mapping):
        metrics = dict(reports_body["metrics"])
        available = True
        sources["reports"] = {"ok": True, "window_s": reports_body.get("window_s")}
    else:
        reason = f"metrics unavailable: {reports_error or 'reports gave no metrics'}"
        sources["reports"] = {"ok": False, "error": reports_error or "no metrics"}
    processes = processes_body.get("processes") if isinstance(processes_body, Mapping) else None
    if isinstance(processes, list):
        restarts = [p.get("restarts") for p in processes if isinstance(p, Mapping)]
        failed = [
            p.get("name")
            for p in processes
            if isinstance(p, Mapping) and p.get("state") == "failed"
        ]
        total = sum(r for r in restarts if isinstance(r, int) and not isinstance(r, bool))
        sources["orchestrator"] = {"ok": True, "restarts": total, "failed": failed}
        if lookup(metrics, "restarts") is None:
            metrics["restarts"] = total
        if failed:
            metrics["restarts"] = max(int(metrics["restarts"]), len(failed))
    else:
        sources["orchestrator"] = {"ok": False}
    for name in ("integration", "preflight"):
        if checks is not None and isinstance(checks.get(name), Mapping):
            metrics[name] = dict(checks[name])
    return metrics, available, reason, sources
