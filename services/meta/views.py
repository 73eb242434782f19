"""Read-only answers of the meta service built from a learner's meta document: status, report
and insights. Pure, like the phases: the engine reads the document and passes it in."""

from __future__ import annotations

from typing import Any

from services.meta.metrics import (
    FADING_RECALL,
    METRIC_NAMES,
    TARGET_MASTERY,
    domain_views,
    practised,
)
from services.meta.phases import completed_count, next_phase
from shared.learner_state import LearnerState


def status_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "started": doc["started"],
        "phases": doc["phases"],
        "metrics": doc["metrics"],
        "nextRecommendedPhase": next_phase(doc),
    }


def report_view(doc: dict[str, Any], log: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "started": doc["started"],
        "phases": doc["phases"],
        "metrics": doc["metrics"],
        "completedPhases": completed_count(doc),
        "nextPhase": next_phase(doc),
        "activityLog": log,
    }


def insights_view(doc: dict[str, Any], state: LearnerState | None, now: float) -> dict[str, Any]:
    """Strengths, opportunities, risks and readiness from the current metrics (fixed rules),
    plus the domains behind them."""
    cur = doc["metrics"]["current"]
    strengths = []
    if cur.get("learningVelocity", 0) > 0.5:
        strengths.append("Solid learning velocity")
    if cur.get("knowledgeRetention", 0) > 0.5:
        strengths.append("Good knowledge retention")
    opportunities = []
    if cur.get("adaptationSpeed", 0) < 0.7:
        opportunities.append("Improve adaptation speed with personalized strategies")
    if cur.get("transferEfficiency", 0) < 0.7:
        opportunities.append("Enhance transfer efficiency via cross-domain learning")
    values = [float(cur.get(m, 0.0) or 0.0) for m in METRIC_NAMES]
    readiness = min(1.0, max(0.0, sum(values) / len(values)))
    out: dict[str, Any] = {
        "strengths": strengths or ["Foundational strengths ready to build upon"],
        "opportunities": opportunities,
        "risks": [
            "Maintain stability while accelerating learning",
            "Avoid overfitting meta-learning strategies",
        ],
        "readiness": round(readiness, 4),
    }
    if state is not None:
        views = domain_views(state, now)
        out["domains"] = {
            "strongest": [v.key for v in sorted(views, key=lambda v: -v.mastery)[:3]],
            "weakest": [
                v.key for v in sorted(views, key=lambda v: v.mastery) if v.mastery < TARGET_MASTERY
            ][:3],
            "fading": [v.key for v in views if v.recall < FADING_RECALL],
            "practised": len(practised(state)),
        }
    return out
