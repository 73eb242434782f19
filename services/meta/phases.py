"""The four meta-learning phases, run on one learner's measured training state.

The meta document of a learner (stored as JSON by `store.py`) has the shape the meta API's
clients read back from `/api/v4/meta-learning/report`:

    {started, phases: {"1".."4": {name, status, startedAt, completedAt, <payload>}},
     metrics: {baseline, current, improvements}, lastTrigger}

with payloads `findings`, `changes`, `strategies`, `results` and status `not_started` |
`in_progress` | `completed`. A completed phase is never re-run.

Every phase works from a measurement of the learner, never from a fixed increment:

1. *Learning Analysis* measures the four metrics (see `metrics.py`) and lists findings: the
   measured metrics, weak domains (decayed mastery below 80), fading domains (recall below 0.5)
   and coverage. `current` becomes the measurement.
2. *Meta-Learning Algorithms* turns the measurement into a plan, under the proposal ids the
   clients know: `meta_mem_1` (memory consolidation) plans
   ``retentionDelta = 0.05 + 0.10·(1 − kr)`` and `meta_opt_1` (cross-domain optimisation) plans
   ``transferDelta = 0.04 + 0.12·(1 − te)`` — the weaker the measured metric, the larger the step
   (the boost defaults 0.05 / 0.04, plus up to the gains of `DEFAULT_PLAN`, 0.10 / 0.12);
   `meta_loop_1` names the domains to focus on.
3. *Adaptive Learning Strategies* assigns the three named strategies to concrete domains:
   `adaptive_context` (weak domains), `user_personalization` (fading domains, to review) and
   `uncertainty_driven` (low-confidence or falling domains).
4. *Learning Acceleration* applies the plan to the learner model (`effects.apply_boost`: retention
   multiplier, longer half-lives, transfer share), measures again and records the measured change
   as the improvement `{phase: 4, metric: "acceleration", delta}`.

Phases 1–3 do not touch the learner state; phase 4 does, and the caller commits the new learner
state and the completed phase in one atomic step. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

import orjson

from services.meta.effects import apply_boost
from services.meta.metrics import (
    FADING_RECALL,
    KNOWN_DOMAINS,
    METRIC_NAMES,
    TARGET_MASTERY,
    DomainView,
    domain_views,
    measure,
    zero_metrics,
)
from shared import clock
from shared.learner_state import LearnerState

PHASES: dict[str, tuple[str, str]] = {
    "1": ("Learning Analysis", "findings"),
    "2": ("Meta-Learning Algorithms", "changes"),
    "3": ("Adaptive Learning Strategies", "strategies"),
    "4": ("Learning Acceleration", "results"),
}
PHASE_NUMBERS = (1, 2, 3, 4)
IMPROVEMENTS_CAP = 50  # improvements kept in the document (the log keeps the rest)
LOW_CONFIDENCE = 60.0
# Phase 4's deltas when the meta document holds no phase-2 plan.
DEFAULT_PLAN = {"retentionDelta": 0.10, "transferDelta": 0.12}
PROPOSALS = (
    ("meta_loop_1", "Meta-cognitive loop to evaluate and select learning strategies per task"),
    ("meta_opt_1", "Optimize learning rate dynamically based on feedback and error signals"),
    ("meta_mem_1", "Memory consolidation routine to improve retention over time"),
)
STRATEGIES = (
    ("adaptive_context", "Select learning strategy based on context and difficulty"),
    ("user_personalization", "Personalize learning approaches based on user model"),
    ("uncertainty_driven", "Adapt more aggressively when uncertainty is high"),
)


class WeakDomain(TypedDict):
    domain: str
    mastery: float


class FadingDomain(TypedDict):
    domain: str
    recall: float


class Proposal(TypedDict):
    """A phase-2 proposal; each carries the one planned value it is about."""

    id: str
    description: str
    focus: NotRequired[list[str]]  # meta_loop_1
    transferDelta: NotRequired[float]  # meta_opt_1
    retentionDelta: NotRequired[float]  # meta_mem_1


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    # The document is plain JSON; a JSON round trip copies it several times faster than deepcopy.
    copied: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return copied


# One step stamps every phase and log entry with the same `now`: format it once.
iso = lru_cache(maxsize=16)(clock.iso)


def log_entry(message: str, ts: float, data: Any = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"time": iso(ts), "message": message}
    if data is not None:
        entry["data"] = data
    return entry


def new_document() -> dict[str, Any]:
    return {
        "started": False,
        "phases": {
            n: {
                "name": name,
                "status": "not_started",
                "startedAt": None,
                "completedAt": None,
                payload: [],
            }
            for n, (name, payload) in PHASES.items()
        },
        "metrics": {"baseline": zero_metrics(), "current": zero_metrics(), "improvements": []},
        "lastTrigger": None,
    }


def next_phase(doc: dict[str, Any]) -> int | None:
    for n in PHASE_NUMBERS:
        if doc["phases"][str(n)]["status"] != "completed":
            return n
    return None


def completed_count(doc: dict[str, Any]) -> int:
    return sum(1 for p in doc["phases"].values() if p["status"] == "completed")


def add_improvement(
    doc: dict[str, Any], phase: int | str, metric: str, delta: float, ts: float
) -> None:
    items = doc["metrics"]["improvements"]
    items.append({"phase": phase, "metric": metric, "delta": round(delta, 4), "at": iso(ts)})
    del items[:-IMPROVEMENTS_CAP]


@dataclass(slots=True)
class Outcome:
    """The result of a step: the new document, the new learner state (None when untouched), the
    phases completed now and the log entries to append (oldest first)."""

    doc: dict[str, Any]
    state: LearnerState | None = None
    ran: list[int] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Readings:
    """measure() and domain_views() of a state at one instant, each computed at most once: the
    start and phases 1–3 (and phase 4's `before`) all read the same, unchanged state, and these
    are most of a run-all's CPU. Copies are handed out, because callers store them in the
    document. Only valid while nobody changes the state (phase 4 measures `after` itself)."""

    state: LearnerState
    now: float
    _metrics: dict[str, float] | None = None
    _views: list[DomainView] | None = None

    def metrics(self) -> dict[str, float]:
        if self._metrics is None:
            self._metrics = measure(self.state, self.now)
        return dict(self._metrics)

    def views(self) -> list[DomainView]:
        if self._views is None:
            self._views = domain_views(self.state, self.now)
        return list(self._views)


def start(
    doc: dict[str, Any], state: LearnerState, now: float, readings: Readings | None = None
) -> Outcome:
    """Mark the learner's meta-learning started and capture the measured baseline (no-op when
    already started)."""
    doc = _copy(doc)
    out = Outcome(doc)
    if doc["started"]:
        return out
    doc["started"] = True
    measured = (readings or Readings(state, now)).metrics()
    doc["metrics"]["baseline"] = dict(measured)
    doc["metrics"]["current"] = dict(measured)
    out.log.append(log_entry("Meta-Learning Engine started", now))
    out.log.append(log_entry("Baseline captured", now, {"baseline": measured}))
    return out


def run_remaining(doc: dict[str, Any], state: LearnerState, now: float) -> Outcome:
    """Start if needed, then run every phase not yet completed, in order, on `state` (a decoded
    copy the caller owns; phase 4 changes it in place)."""
    readings = Readings(state, now)
    out = start(doc, state, now, readings)
    doc = out.doc
    touched = False
    for n in PHASE_NUMBERS:
        phase = doc["phases"][str(n)]
        if phase["status"] == "completed":
            continue
        phase["status"] = "in_progress"
        phase["startedAt"] = iso(now)
        touched |= RUNNERS[n](doc, readings, out.log)
        phase["status"] = "completed"
        phase["completedAt"] = iso(now)
        out.ran.append(n)
        out.log.append(log_entry(f"Phase {n} completed: {phase['name']}", now))
    out.state = state if touched else None
    return out


def _phase1(doc: dict[str, Any], readings: Readings, log: list[dict[str, Any]]) -> bool:
    state, now = readings.state, readings.now
    measured = readings.metrics()
    views = readings.views()
    weak: list[WeakDomain] = [
        {"domain": v.key, "mastery": v.mastery} for v in views if v.mastery < TARGET_MASTERY
    ]
    weak.sort(key=lambda w: w["mastery"])
    fading: list[FadingDomain] = [
        {"domain": v.key, "recall": v.recall} for v in views if v.recall < FADING_RECALL
    ]
    known = set(KNOWN_DOMAINS) | set(state.domains)
    findings = [
        {"type": "metrics", "metrics": measured},
        {"type": "weak_domains", "threshold": TARGET_MASTERY, "domains": weak},
        {"type": "fading_domains", "recallBelow": FADING_RECALL, "domains": fading},
        {
            "type": "coverage",
            "practised": len(views),
            "known": len(known),
            "untouched": sorted(known - {v.key for v in views}),
        },
    ]
    doc["phases"]["1"]["findings"] = findings
    doc["metrics"]["current"] = dict(measured)
    log.append(
        log_entry(
            "Phase 1 analysis complete", now, {"metrics": measured, "findingsCount": len(findings)}
        )
    )
    return False


def _phase2(doc: dict[str, Any], readings: Readings, log: list[dict[str, Any]]) -> bool:
    state, now = readings.state, readings.now
    measured = readings.metrics()
    kr = measured["knowledgeRetention"]
    te = measured["transferEfficiency"]
    plan = {
        "retentionDelta": round(0.05 + 0.10 * (1.0 - kr), 4),
        "transferDelta": round(0.04 + 0.12 * (1.0 - te), 4),
    }
    focus = [
        v.key
        for v in sorted(readings.views(), key=lambda v: v.mastery)
        if v.mastery < TARGET_MASTERY
    ][:3]
    proposals: list[Proposal] = [{"id": pid, "description": text} for pid, text in PROPOSALS]
    proposals[0]["focus"] = focus
    proposals[1]["transferDelta"] = plan["transferDelta"]
    proposals[2]["retentionDelta"] = plan["retentionDelta"]
    doc["phases"]["2"]["changes"] = [
        {
            "type": "meta_learning_applied",
            "proposals": proposals,
            "plan": plan,
            "gain": round(plan["retentionDelta"] + plan["transferDelta"], 4),
            "before": {"retention": state.retention, "transfer": state.transfer},
            "after": {
                "retention": round(state.retention + plan["retentionDelta"], 4),
                "transfer": round(min(1.0, state.transfer + plan["transferDelta"]), 4),
            },
        }
    ]
    log.append(log_entry("Phase 2 meta-learning algorithms applied", now, {"plan": plan}))
    return False


def _phase3(doc: dict[str, Any], readings: Readings, log: list[dict[str, Any]]) -> bool:
    now = readings.now
    views = readings.views()
    targets = {
        "adaptive_context": [v.key for v in views if v.mastery < TARGET_MASTERY],
        "user_personalization": [v.key for v in views if v.recall < FADING_RECALL],
        "uncertainty_driven": [
            v.key for v in views if v.confidence < LOW_CONFIDENCE or v.slope < 0.0
        ],
    }
    strategies = [
        {"id": sid, "description": text, "domains": targets[sid]} for sid, text in STRATEGIES
    ]
    doc["phases"]["3"]["strategies"] = strategies
    log.append(
        log_entry(
            "Phase 3 adaptive strategies established",
            now,
            {"targets": {k: len(v) for k, v in targets.items()}},
        )
    )
    return False


def _phase4(doc: dict[str, Any], readings: Readings, log: list[dict[str, Any]]) -> bool:
    state, now = readings.state, readings.now
    changes = doc["phases"]["2"].get("changes") or []
    plan = dict(DEFAULT_PLAN)
    if changes and isinstance(changes[0], dict) and isinstance(changes[0].get("plan"), dict):
        plan.update(changes[0]["plan"])
    before = readings.metrics()
    effect = apply_boost(state, float(plan["retentionDelta"]), float(plan["transferDelta"]))
    after = measure(state, now)
    deltas = {m: round(after[m] - before[m], 4) for m in METRIC_NAMES}
    doc["phases"]["4"]["results"] = [
        {
            "applied": effect.to_dict(),
            "plan": plan,
            "before": before,
            "after": after,
            "improvements": deltas,
        }
    ]
    doc["metrics"]["current"] = dict(after)
    add_improvement(doc, 4, "acceleration", sum(deltas.values()), now)
    log.append(log_entry("Phase 4 learning acceleration complete", now, {"improvements": deltas}))
    return effect.changed


RUNNERS = {1: _phase1, 2: _phase2, 3: _phase3, 4: _phase4}


def boost(
    doc: dict[str, Any],
    state: LearnerState,
    retention_delta: float,
    transfer_delta: float,
    now: float,
) -> tuple[Outcome, dict[str, Any]]:
    """The retention booster: apply the deltas to the learner model, measure, and record the
    measured change as the improvement `{phase: "booster", metric: "retention"}`. Returns the
    outcome and the `booster` part of the `boost-retention` answer,
    `{ok, before: {kr, te}, after: {kr, te}}`."""
    doc = _copy(doc)
    before = measure(state, now)
    effect = apply_boost(state, retention_delta, transfer_delta)
    after = measure(state, now)
    b = {"kr": before["knowledgeRetention"], "te": before["transferEfficiency"]}
    a = {"kr": after["knowledgeRetention"], "te": after["transferEfficiency"]}
    doc["metrics"]["current"] = dict(after)
    add_improvement(doc, "booster", "retention", (a["kr"] - b["kr"]) + (a["te"] - b["te"]), now)
    entry = log_entry(
        "Retention booster applied",
        now,
        {
            "before": b,
            "after": a,
            "retentionDelta": retention_delta,
            "transferDelta": transfer_delta,
            "applied": effect.to_dict(),
        },
    )
    out = Outcome(doc, state if effect.changed else None, [], [entry])
    return out, {"ok": True, "before": b, "after": a, "applied": effect.to_dict()}


def note_trigger(doc: dict[str, Any], round_id: int, ts_ms: int, delay_ms: int) -> None:
    doc["lastTrigger"] = {"round": round_id, "ts": ts_ms, "delay_ms": delay_ms}
