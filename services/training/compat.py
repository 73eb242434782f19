"""Training endpoints the original fleet's clients call, in the original's shapes, without its
defects: `active` only reads (the original's moved the selection state), `calibrate` and
`force-masteries` are POST only, and the hyper-speed family runs real rounds of the learner as
batch commits (the original's ran a separate camp that changed no mastery, or never returned).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from services.training import calibration, learner_model, presenters, selection
from services.training.app_keys import STORE
from services.training.curriculum import Curriculum
from services.training.grader import js_round
from services.training.models import (
    CalibrateRequest,
    ForceMasteriesRequest,
    HyperStartQuery,
    HyperStartRequest,
    LearnerQuery,
    MicroBatchRequest,
    TurboRoundRequest,
)
from services.training.store import BatchOutcome, TrainingStore
from shared.compat import warnings_of, with_warnings
from shared.errors import ApiError, Conflict, NotFound
from shared.fleet_totals import rounds_total
from shared.learner_state import LearnerState
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import DEFAULT_LEARNER, learner_from, parse_body, parse_query

BASE = "/api/v1/training"
HYPER = f"{BASE}/hyper-speed"
DEFAULT_CYCLES = 3
RECENT_SCORES = 5
# A learner-level refusal of a batch, as the single round answers it.
BATCH_REFUSALS: dict[str, type[ApiError]] = {
    "learner_not_found": NotFound,
    "training_not_started": Conflict,
}


def generic_problems(key: str) -> list[dict[str, Any]]:
    """Three system-design problems for a topic added without any (the original's default)."""
    return [
        {
            "id": f"{key}_001",
            "topic": "caching",
            "difficulty": "easy",
            "problem": "Design a cache in front of a slow database.",
            "keywords": ["cache", "eviction", "ttl", "invalidation"],
        },
        {
            "id": f"{key}_002",
            "topic": "scaling",
            "difficulty": "medium",
            "problem": "Scale a read-heavy web service to ten times its load.",
            "keywords": ["replica", "load balancer", "sharding", "latency"],
        },
        {
            "id": f"{key}_003",
            "topic": "reliability",
            "difficulty": "hard",
            "problem": "Keep a payment service correct when a node fails mid-request.",
            "keywords": ["idempotency", "retry", "timeout", "consensus"],
        },
    ]


async def _state(request: web.Request, learner: str) -> tuple[TrainingStore, LearnerState]:
    store = request.app[STORE]
    _, state, _ = await store.load(learner)
    await store.curriculum.refresh_if_stale()
    return store, state


# ---- active --------------------------------------------------------------------------------


def active_view(state: LearnerState, cur: Curriculum, now: float) -> dict[str, Any]:
    """The domains the learner's next round would train (`selection.peek`: nothing moves)."""
    domains = []
    for key in selection.peek(state, cur, now):
        topic = cur.by_key[key]
        d = state.domain(key)
        mastery = learner_model.displayed_mastery(d, now)
        current = topic.by_difficulty[learner_model.pick_difficulty(mastery)]
        domains.append(
            {
                "topic": key,
                "name": topic.name,
                "mastery": js_round(mastery),
                "confidence": round(d.confidence, 2),
                "uncertaintyBand": 100 - js_round(d.confidence),
                "attempts": d.attempts,
                "problems": [
                    {
                        "id": p.id,
                        "topic": p.topic,
                        "difficulty": p.difficulty,
                        "attempted": d.attempts > 0,
                        "current": p.id == current.id,
                        "lastScore": d.scores[-1] if d.scores and p.id == current.id else None,
                    }
                    for p in topic.problems
                ],
                "recentScores": d.scores[-RECENT_SCORES:],
            }
        )
    return {"learner": state.id, "activeDomains": domains}


async def active(request: web.Request) -> web.Response:
    """The domains the next round would train, read only."""
    query = parse_query(request, LearnerQuery)
    store, state = await _state(request, query.learner or DEFAULT_LEARNER)
    return ok(data=active_view(state, store.curriculum.current, time.time()))


# ---- calibrate, force-masteries ------------------------------------------------------------


async def _calibrate(
    request: web.Request, learner: str, rule_of: Callable[[LearnerState], calibration.Rule]
) -> tuple[calibration.Rule, list[dict[str, Any]], dict[str, Any]]:
    store = request.app[STORE]
    await store.curriculum.refresh_if_stale()
    cur = store.curriculum.current
    now = time.time()
    outcome: dict[str, Any] = {}

    def change(state: LearnerState) -> bool:
        # Recomputed from the fresh state on a version conflict, so it keeps no earlier result.
        rule = rule_of(state)
        outcome["rule"] = rule
        outcome["adjusted"] = calibration.adjust(state, cur, now, rule)
        return bool(outcome["adjusted"])

    state = await store.rewrite(learner, change)
    return outcome["rule"], outcome["adjusted"], presenters.overview(state, cur, now)


def _threshold(state: LearnerState, given: int | None) -> int:
    return given if given is not None else int(selection.target_threshold(state))


async def calibrate(request: web.Request) -> web.Response:
    """Lift topics just below the threshold to it (the original's calibrateToThreshold)."""
    body = await parse_body(request, CalibrateRequest)
    learner = learner_from(request, body.learner)

    def rule_of(state: LearnerState) -> calibration.Rule:
        sel = selection.effective_settings(state.settings)["selection"]
        min_attempts = body.minAttempts
        if min_attempts is None:
            min_attempts = int(sel["minAttemptsInBatch"]) or calibration.DEFAULT_MIN_ATTEMPTS
        return calibration.Rule(
            _threshold(state, body.threshold), min_attempts, body.delta, body.force
        )

    rule, adjusted, overview = await _calibrate(request, learner, rule_of)
    return ok(
        calibration={
            "adjusted": adjusted,
            "threshold": rule.threshold,
            "minAttempts": rule.min_attempts,
            "delta": rule.delta,
            "force": rule.force,
        },
        overview=overview,
        learner=learner,
    )


async def force_masteries(request: web.Request) -> web.Response:
    """Lift every topic below the threshold to it."""
    body = await parse_body(request, ForceMasteriesRequest)
    learner = learner_from(request, body.learner)

    def rule_of(state: LearnerState) -> calibration.Rule:
        return calibration.Rule(_threshold(state, body.threshold), 0, 100, True)

    rule, adjusted, overview = await _calibrate(request, learner, rule_of)
    return ok(adjusted=adjusted, threshold=rule.threshold, overview=overview, learner=learner)


# ---- hyper-speed: the learner's rounds as batch commits -------------------------------------


async def _batch(request: web.Request, learner: str, rounds: int) -> tuple[BatchOutcome, float]:
    started = time.perf_counter()
    batch = await request.app[STORE].run_batch([learner], rounds)
    for failed, code in batch.failed:
        raise BATCH_REFUSALS.get(code, Conflict)(
            presenters.BATCH_ERRORS.get(code, code), code=code, details={"learner": failed}
        )
    return batch, (time.perf_counter() - started) * 1000


def _cycle(batch: BatchOutcome, elapsed_ms: float) -> dict[str, Any]:
    """One batch's figures in the original's hyper-speed terms. `speedup` is the rounds that
    one commit (one Redis round trip) carried, the batch's real gain over single rounds."""
    rounds = [(c.first_round_id + i, o) for c in batch.committed for i, o in enumerate(c.outcomes)]
    domains = sorted({k for _, o in rounds for k in o.trained})
    return {
        "rounds": [r for r, _ in rounds],
        "totalTime": round(elapsed_ms, 3),
        "questionsProcessed": sum(len(o.scores) for _, o in rounds),
        "successful": len(rounds),
        "speedup": float(len(rounds)),
        "domains": domains,
        "providersUsed": [],
    }


async def hyper_start(request: web.Request) -> web.Response:
    """`rounds` cycles (1–10, default 3), committed as one batch of the learner's rounds."""
    body = await parse_body(request, HyperStartRequest)
    query = parse_query(request, HyperStartQuery)
    learner = learner_from(request, body.learner or query.learner)
    cycles = body.rounds or query.rounds or DEFAULT_CYCLES
    batch, elapsed = await _batch(request, learner, cycles)
    cycle = _cycle(batch, elapsed)
    return ok(
        message=f"Completed {cycles} cycles in {round(elapsed)}ms",
        summary={
            "efficiency": {
                "cyclesCompleted": cycle["successful"],
                "totalTime": cycle["totalTime"],
                "questionsProcessed": cycle["questionsProcessed"],
                "averageSpeedup": cycle["speedup"],
            }
        },
        rounds=cycle["rounds"],
        learner=learner,
    )


async def micro_batch(request: web.Request) -> web.Response:
    """One round of the learner (the original's micro-batch changed no mastery; this one is a
    real round)."""
    body = await parse_body(request, MicroBatchRequest)
    learner = learner_from(request, body.learner)
    batch, elapsed = await _batch(request, learner, 1)
    cycle = _cycle(batch, elapsed)
    return ok(
        **with_warnings(
            warnings_of(body),
            domains=cycle["domains"],
            questionsProcessed=cycle["questionsProcessed"],
            successful=cycle["successful"],
            speedup=cycle["speedup"],
            providersUsed=[],
            rounds=cycle["rounds"],
            endpoint="micro-batch",
            timestamp=presenters.iso(time.time()),
            learner=learner,
        )
    )


async def turbo_round(request: web.Request) -> web.Response:
    """`rounds` rounds of the learner (1–10, default 3) in one batch commit."""
    body = await parse_body(request, TurboRoundRequest)
    learner = learner_from(request, body.learner)
    batch, elapsed = await _batch(request, learner, body.rounds)
    cycle = _cycle(batch, elapsed)
    return ok(result={"round": cycle["rounds"][-1], **cycle}, learner=learner)


async def hyper_stats(request: web.Request) -> web.Response:
    """The learner's rounds and questions so far (hyper-speed rounds are its rounds), and the
    fleet's rounds (a sum over the shards' counters)."""
    query = parse_query(request, LearnerQuery)
    learner = query.learner or DEFAULT_LEARNER
    store, state = await _state(request, learner)
    questions = sum(d.attempts for d in state.domains.values())
    return ok(
        hyperStats={
            "isHyperMode": True,
            "roundsCompleted": state.rounds,
            "questionsProcessed": questions,
            "providersActive": [],
            "efficiency": {
                "questionsPerRound": round(questions / state.rounds, 3) if state.rounds else None
            },
            "fleetRounds": await rounds_total(store.redis, store.keys),
            "learner": learner,
        }
    )


def declare(api: ApiRoutes) -> None:
    unknown = {404: "Unknown learner"}
    refused = {404: "Unknown learner", 409: "Training not started"}
    api.get(
        f"{BASE}/active",
        query=LearnerQuery,
        summary="The domains the next round would train (read only)",
        responses=unknown,
    )(active)
    api.post(
        f"{BASE}/calibrate",
        body=CalibrateRequest,
        summary="Lift topics within delta below the threshold to it",
        responses=unknown,
    )(calibrate)
    api.post(
        f"{BASE}/force-masteries",
        body=ForceMasteriesRequest,
        summary="Lift every topic below the threshold to it",
        responses=unknown,
    )(force_masteries)
    api.post(
        f"{HYPER}/start",
        body=HyperStartRequest,
        query=HyperStartQuery,
        summary="Hyper-speed cycles: the learner's rounds in one batch commit",
        responses=refused,
    )(hyper_start)
    api.post(
        f"{HYPER}/micro-batch",
        body=MicroBatchRequest,
        summary="One round of the learner",
        responses=refused,
    )(micro_batch)
    api.post(
        f"{HYPER}/turbo-round",
        body=TurboRoundRequest,
        summary="Up to 10 rounds of the learner in one batch commit",
        responses=refused,
    )(turbo_round)
    api.get(
        f"{HYPER}/stats",
        query=LearnerQuery,
        summary="The learner's rounds and questions, and the fleet's rounds",
        responses=unknown,
    )(hyper_stats)
