"""The original's response shapes (overview, status, deep dive, next-domain, learner detail),
computed from a learner's state. No I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.training import learner_model as lm
from services.training import selection
from services.training.curriculum import Curriculum, Topic
from services.training.grader import js_round
from services.training.rounds import TOTAL_ROUNDS, domain_summary, ms, status_label
from shared.learner_state import LearnerState


def iso(epoch_s: float) -> str | None:
    if epoch_s <= 0:
        return None
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _domain_row(state: LearnerState, topic: Topic, now: float) -> dict[str, Any]:
    d = state.domain(topic.key)
    mastery = js_round(lm.displayed_mastery(d, now))
    conf = js_round(d.confidence)
    return {
        "topic": topic.key,
        "name": topic.name,
        "mastery": mastery,
        "confidence": conf,
        "uncertaintyBand": 100 - conf,
        "attempts": d.attempts,
        "background": topic.background,
        "status": status_label(mastery),
    }


def overview(state: LearnerState, cur: Curriculum, now: float) -> dict[str, Any]:
    settings = selection.effective_settings(state.settings)
    domains = [_domain_row(state, t, now) for t in cur.topics]
    by_key = {row["topic"]: row for row in domains}
    return {
        "learner": state.id,
        "domains": domains,
        "selection": settings["selection"],
        "untouched": [t.key for t in cur.topics if state.domain(t.key).attempts == 0],
        "nextUpTargets": [
            {"topic": k, "name": cur.by_key[k].name, "mastery": by_key[k]["mastery"]}
            for k in selection.peek(state, cur, now)
        ],
        "lockedBatch": list(state.selection.locked_batch),
    }


def status(state: LearnerState, cur: Curriculum, now: float) -> dict[str, Any]:
    settings = selection.effective_settings(state.settings)
    return {
        "learner": state.id,
        "isActive": state.active,
        "currentRound": state.rounds,
        "totalRounds": TOTAL_ROUNDS,
        "startTime": iso(state.started_at),
        "progress": domain_summary(state, cur, now) if state.active else None,
        "parallelTraining": settings["parallelTraining"],
        "maxParallel": settings["maxParallel"],
        "spacedRepetitionEnabled": settings["spacedRepetition"],
        "selection": settings["selection"],
    }


def settings_view(state: LearnerState) -> dict[str, Any]:
    return {"learner": state.id, **selection.effective_settings(state.settings)}


def deep_dive(state: LearnerState, topic: Topic, now: float) -> dict[str, Any]:
    d = state.domain(topic.key)
    conf = js_round(d.confidence)
    current = topic.by_difficulty[lm.pick_difficulty(lm.displayed_mastery(d, now))]
    return {
        "learner": state.id,
        "topic": topic.key,
        "name": topic.name,
        "mastery": js_round(lm.displayed_mastery(d, now)),
        "confidence": conf,
        "uncertaintyBand": 100 - conf,
        "attempts": d.attempts,
        "effectiveSkill": round(lm.effective_skill(d, now), 4),
        "halfLifeSeconds": round(d.half_life, 1),
        "lastPracticed": iso(d.last),
        "nextReview": iso(d.next_review) if d.attempts else None,
        "timeUntilReview": int((d.next_review - now) * 1000) if d.attempts else None,
        # The model picks the problem by difficulty from current mastery; `current` marks the one
        # the next attempt would use (the original's per-problem counters assumed round-robin).
        "problems": [{**p.to_dict(), "current": p.id == current.id} for p in topic.problems],
        "scoreHistory": list(d.scores),
        "trend": lm.trend(d),
    }


def next_domain(
    state: LearnerState, cur: Curriculum, now: float, min_avg: float, max_below: int
) -> dict[str, Any]:
    threshold = float(selection.effective_settings(state.settings)["selection"]["targetThreshold"])
    rows = [_domain_row(state, t, now) for t in cur.topics]
    avg = sum(lm.displayed_mastery(state.domain(t.key), now) for t in cur.topics) / len(cur.topics)
    gaps = [
        {"name": r["name"], "mastery": r["mastery"]}
        for r, t in zip(rows, cur.topics, strict=True)
        if not t.background and lm.displayed_mastery(state.domain(t.key), now) < threshold
    ]
    at_target = len(rows) - len(gaps)
    ready = avg >= min_avg and len(gaps) <= max_below
    return {
        "learner": state.id,
        "domain": "Meta-Learning Mastery" if ready else "Continue CS Fundamentals Optimization",
        # Share of topics at or above the target threshold, in percent (the original read it from
        # meta's file; here it is derived from the learner's own mastery).
        "readiness": round(100.0 * at_target / len(rows), 1),
        "rationale": "Fundamentals strong; advance to meta-learning."
        if ready
        else f"Lift remaining fundamentals to {int(threshold)}%+",
        "currentMastery": {
            "average": round(avg, 1),
            "domainsBelow80": gaps,
            "threshold": threshold,
        },
    }


def learner_detail(state: LearnerState, cur: Curriculum, now: float, ready: bool) -> dict[str, Any]:
    threshold = float(selection.effective_settings(state.settings)["selection"]["targetThreshold"])
    avg, below, _ = lm.readiness_inputs(state, cur.topics, threshold, now)
    return {
        "id": state.id,
        "region": state.region,
        "active": state.active,
        "created": ms(state.created),
        "rounds": state.rounds,
        "average": avg,
        "below": below,
        "ready": ready,
        "retention": state.retention,
        "transfer": state.transfer,
        "domains": {
            key: {
                "mastery": round(lm.displayed_mastery(d, now), 2),
                "skill": round(lm.effective_skill(d, now), 4),
                "attempts": d.attempts,
                "half_life_s": round(d.half_life, 1),
                "last_practised": ms(d.last),
            }
            for key, d in state.domains.items()
        },
    }
