"""The training API's answers (round, batch, start, overview, status, deep dive, next-domain,
learner detail and list rows), shaped from a learner's state and the store's outcomes. No I/O."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from services.training import learner_model, selection
from services.training.curriculum import Curriculum, Topic
from services.training.grader import js_round
from services.training.store import BatchOutcome, CommittedRound, ListedLearner, ReplayedRounds
from shared.learner_state import LearnerState
from shared.readiness import ReadinessThresholds

TOTAL_ROUNDS = 100  # a fixed, cosmetic "totalRounds" the API has always answered
START_MESSAGE = "Phase 2 training active. Run rounds to build mastery."
# The batch answer's per-learner error messages, by error code.
BATCH_ERRORS = {
    "learner_not_found": "Learner not found",
    "training_not_started": "Training is not started for this learner",
    "version_conflict": "Concurrent writes kept conflicting; try again",
    "idempotency_key_reused": "This Idempotency-Key was already used for a different request",
    "fenced": "The fencing token is no longer the shard's (its lease moved on): not committed",
}


def iso(epoch_s: float) -> str | None:
    if epoch_s <= 0:
        return None
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def epoch_ms(epoch_s: float) -> int | None:
    """Milliseconds since the epoch; None for a time never set (0)."""
    return int(epoch_s * 1000) if epoch_s > 0 else None


def status_label(mastery: float) -> str:
    if mastery >= 90:
        return "mastered"
    if mastery >= 70:
        return "proficient"
    if mastery >= 50:
        return "learning"
    return "weak"


def domain_summary(state: LearnerState, curriculum: Curriculum, now: float) -> dict[str, Any]:
    """Every attempted topic, by key: the round answer's and the status's `summary`."""
    out: dict[str, Any] = {}
    for topic in curriculum.topics:
        d = state.domains.get(topic.key)
        if d is None or d.attempts == 0:
            continue
        conf = js_round(d.confidence)
        out[topic.key] = {
            "name": topic.name,
            "mastery": js_round(learner_model.displayed_mastery(d, now)),
            "confidence": conf,
            "uncertaintyBand": 100 - conf,
            "attempts": d.attempts,
            "trend": learner_model.trend(d),
            "lastPracticed": epoch_ms(d.last),
            "nextReview": epoch_ms(d.next_review),
        }
    return out


def round_answer(done: CommittedRound) -> dict[str, Any]:
    """One round's answer; its duration runs from the request to the end of this answer."""
    prepared = done.prepared
    out = prepared.outcome
    return {
        "success": True,
        "round": done.round_id,
        "totalRounds": TOTAL_ROUNDS,
        "trained": out.trained,
        "results": out.results,
        "summary": domain_summary(prepared.state, prepared.curriculum, prepared.now),
        "learner": prepared.learner,
        "learnerRound": out.learner_round,
        "average": out.avg,
        "ready": done.ready,
        "duration_ms": round((time.perf_counter() - done.started) * 1000, 3),
    }


def round_replayed(done: ReplayedRounds) -> dict[str, Any]:
    """A retried round's answer from its idempotency record: the round id, the learner's version
    after it and its readiness then; the round's results are not kept, so not answered."""
    return {
        "success": True,
        "replayed": True,
        "round": done.first_round_id,
        "totalRounds": TOTAL_ROUNDS,
        "learner": done.learner,
        "version": int(done.version),
        "ready": done.ready,
        "duration_ms": round((time.perf_counter() - done.started) * 1000, 3),
    }


def _replayed_rounds(done: ReplayedRounds) -> list[dict[str, Any]]:
    last = done.count - 1
    return [
        {
            "round": done.first_round_id + i,
            "learner": done.learner,
            "ready": done.ready if i == last else False,
            "became_ready": done.became_ready if i == last else False,
            "replayed": True,
        }
        for i in range(done.count)
    ]


def batch_answer(batch: BatchOutcome) -> dict[str, Any]:
    """Every committed round of a batch (readiness on each learner's last), and the learners
    that failed. A learner committed earlier under the request's Idempotency-Key is answered
    from its record (compact rounds marked `replayed`); `replayed` is true when every learner's
    rounds were, i.e. this call committed nothing."""
    rounds: list[dict[str, Any]] = []
    for learner in batch.committed:
        if learner.replay is not None:
            rounds += _replayed_rounds(learner.replay)
            continue
        last = len(learner.outcomes) - 1
        for i, out in enumerate(learner.outcomes):
            rounds.append(
                {
                    "round": learner.first_round_id + i,
                    "learner": learner.learner,
                    "trained": out.trained,
                    "avg": out.avg,
                    "ready": learner.ready if i == last else False,
                    "became_ready": learner.became_ready if i == last else False,
                }
            )
    errors = [
        {"learner": learner, "code": code, "message": BATCH_ERRORS[code]}
        for learner, code in batch.failed
    ]
    replayed = sum(1 for learner in batch.committed if learner.replay is not None)
    return {
        "committed": len(rounds),
        "replayed": bool(batch.committed) and replayed == len(batch.committed),
        "rounds": rounds,
        "errors": errors,
        "duration_ms": round((time.perf_counter() - batch.started) * 1000, 3),
    }


def started(learner: str, curriculum: Curriculum, reset: bool) -> dict[str, Any]:
    return {
        "success": True,
        "started": True,
        "message": START_MESSAGE,
        "topics": list(curriculum.keys),
        "rounds": TOTAL_ROUNDS,
        "learner": learner,
        "reset": reset,
    }


def topic_added(key: str, background: bool, updated: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, "key": key, "background": background}
    if updated:
        out["updated"] = True
    return out


def learner_row(listed: ListedLearner, curriculum: Curriculum, now: float) -> dict[str, Any]:
    """One learner of the paged list."""
    state = listed.state
    avg, below, _ = learner_model.readiness_inputs(
        state, curriculum.topics, selection.target_threshold(state), now
    )
    return {
        "id": listed.id,
        "seq": listed.seq,
        "region": state.region,
        "active": state.active,
        "rounds": state.rounds,
        "average": avg,
        "below": below,
        "ready": listed.ready,
        # Deactivated by a throttle (kept, not coached; `active` is whether training started).
        "inactive": listed.inactive,
    }


def _domain_row(state: LearnerState, topic: Topic, now: float) -> dict[str, Any]:
    d = state.domain(topic.key)
    mastery = js_round(learner_model.displayed_mastery(d, now))
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


def overview(state: LearnerState, curriculum: Curriculum, now: float) -> dict[str, Any]:
    settings = selection.effective_settings(state.settings)
    domains = [_domain_row(state, t, now) for t in curriculum.topics]
    by_key = {row["topic"]: row for row in domains}
    return {
        "learner": state.id,
        "domains": domains,
        "selection": settings["selection"],
        "untouched": [t.key for t in curriculum.topics if state.domain(t.key).attempts == 0],
        "nextUpTargets": [
            {"topic": k, "name": curriculum.by_key[k].name, "mastery": by_key[k]["mastery"]}
            for k in selection.peek(state, curriculum, now)
        ],
        "lockedBatch": list(state.selection.locked_batch),
    }


def status(state: LearnerState, curriculum: Curriculum, now: float) -> dict[str, Any]:
    settings = selection.effective_settings(state.settings)
    return {
        "learner": state.id,
        "isActive": state.active,
        "currentRound": state.rounds,
        "totalRounds": TOTAL_ROUNDS,
        "startTime": iso(state.started_at),
        "progress": domain_summary(state, curriculum, now) if state.active else None,
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
    current = topic.by_difficulty[
        learner_model.pick_difficulty(learner_model.displayed_mastery(d, now))
    ]
    return {
        "learner": state.id,
        "topic": topic.key,
        "name": topic.name,
        "mastery": js_round(learner_model.displayed_mastery(d, now)),
        "confidence": conf,
        "uncertaintyBand": 100 - conf,
        "attempts": d.attempts,
        "effectiveSkill": round(learner_model.effective_skill(d, now), 4),
        "halfLifeSeconds": round(d.half_life, 1),
        "lastPracticed": iso(d.last),
        "nextReview": iso(d.next_review) if d.attempts else None,
        "timeUntilReview": int((d.next_review - now) * 1000) if d.attempts else None,
        # The model picks the problem by difficulty from current mastery; `current` marks the one
        # the next attempt would use.
        "problems": [{**p.to_dict(), "current": p.id == current.id} for p in topic.problems],
        "scoreHistory": list(d.scores),
        "trend": learner_model.trend(d),
    }


def next_domain(
    state: LearnerState, curriculum: Curriculum, now: float, thresholds: ReadinessThresholds
) -> dict[str, Any]:
    threshold = selection.target_threshold(state)
    rows = [_domain_row(state, t, now) for t in curriculum.topics]
    avg = sum(
        learner_model.displayed_mastery(state.domain(t.key), now) for t in curriculum.topics
    ) / len(curriculum.topics)
    gaps = [
        {"name": r["name"], "mastery": r["mastery"]}
        for r, t in zip(rows, curriculum.topics, strict=True)
        if not t.background
        and learner_model.displayed_mastery(state.domain(t.key), now) < threshold
    ]
    at_target = len(rows) - len(gaps)
    ready = thresholds.ready(avg, len(gaps))
    return {
        "learner": state.id,
        "domain": "Meta-Learning Mastery" if ready else "Continue CS Fundamentals Optimization",
        # Share of topics at or above the target threshold, in percent, from the learner's own
        # mastery.
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


def learner_detail(
    state: LearnerState, curriculum: Curriculum, now: float, ready: bool
) -> dict[str, Any]:
    avg, below, _ = learner_model.readiness_inputs(
        state, curriculum.topics, selection.target_threshold(state), now
    )
    return {
        "id": state.id,
        "region": state.region,
        "active": state.active,
        "created": epoch_ms(state.created),
        "rounds": state.rounds,
        "average": avg,
        "below": below,
        "ready": ready,
        "retention": state.retention,
        "transfer": state.transfer,
        "domains": {
            key: {
                "mastery": round(learner_model.displayed_mastery(d, now), 2),
                "skill": round(learner_model.effective_skill(d, now), 4),
                "attempts": d.attempts,
                "half_life_s": round(d.half_life, 1),
                "last_practised": epoch_ms(d.last),
            }
            for key, d in state.domains.items()
        },
    }
