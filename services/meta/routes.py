"""HTTP handlers of the meta service: parse, call the engine, answer. Paths, field names and
response shapes are the ones the meta API's clients already call and read
(`/api/v4/meta-learning/...`), with every call addressed to one learner."""

from __future__ import annotations

from aiohttp import web

from services.meta import compat
from services.meta.app_keys import ENGINE
from services.meta.engine import MetaEngine, Trigger
from services.meta.models import (
    ActivityQuery,
    BoostRequest,
    EmptyBody,
    LearnerBody,
    LearnerQuery,
    RunAllRequest,
    RunBatchRequest,
)
from services.meta.phases import PHASES
from shared import domain_metrics
from shared.app_keys import KEYS, REDIS, SERVICE
from shared.compat import warnings_of, with_warnings
from shared.errors import NotFound, ValidationFailed
from shared.events import emit_system_event
from shared.rate_limit import RateLimit, limit
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import DEFAULT_LEARNER, parse_body, parse_query

BASE = "/api/v4/meta-learning"
routes = ApiRoutes("meta")
# Per client, fleet-wide: a learner's boost is one script call; a cohort boost walks every learner
# (up to millions, in one handler) and raises everyone's retention again on each call, so a
# client's retry after a gateway timeout must not start a second walk: one a minute.
BOOST_LIMIT = RateLimit("meta-boost-retention", 30, 60)
COHORT_BOOST_LIMIT = RateLimit("meta-boost-cohort", 1, 60)


def _engine(request: web.Request) -> MetaEngine:
    return request.app[ENGINE]


def _learner(value: str | None) -> str:
    return value if value is not None else DEFAULT_LEARNER


@routes.get(f"{BASE}/status", query=LearnerQuery, responses={404: "Unknown learner"})
async def status(request: web.Request) -> web.Response:
    """Phases, metrics and the next recommended phase of one learner."""
    q = parse_query(request, LearnerQuery)
    return ok(status=await _engine(request).status(_learner(q.learner)))


@routes.post(
    f"{BASE}/start", body=LearnerBody, responses={404: "Unknown learner", 409: "Meta paused"}
)
async def start(request: web.Request) -> web.Response:
    """Start meta-learning for a learner and capture its measured baseline (idempotent)."""
    body = await parse_body(request, LearnerBody)
    return ok(status=await _engine(request).start(_learner(body.learner)))


@routes.post(
    f"{BASE}/run-all", body=RunAllRequest, responses={404: "Unknown learner", 409: "Meta paused"}
)
async def run_all(request: web.Request) -> web.Response:
    """Start if needed and run every phase not yet completed, each exactly once."""
    body = await parse_body(request, RunAllRequest)
    trigger = Trigger(body.trigger.round, body.trigger.ts) if body.trigger else None
    result = await _engine(request).run_all(_learner(body.learner), trigger)
    domain_metrics.meta_triggers_served(request.app, [result])
    return ok(**result)


@routes.post(f"{BASE}/run-batch", body=RunBatchRequest, responses={409: "Meta paused"})
async def run_batch(request: web.Request) -> web.Response:
    """run-all for up to 100 distinct learners in one call (the coach's meta trigger): one
    result per learner, in order — status 200 with the phases run and the trigger delay, or
    404 (unknown learner) / 409 (busy) with its error. The whole call is 409 while paused."""
    body = await parse_body(request, RunBatchRequest)
    items = [
        (item.learner, Trigger(item.trigger.round, item.trigger.ts) if item.trigger else None)
        for item in body.items
    ]
    results = await _engine(request).run_batch(items)
    domain_metrics.meta_triggers_served(request.app, results)
    return ok(results=results)


@routes.get(f"{BASE}/report", query=LearnerQuery, responses={404: "Unknown learner"})
async def report(request: web.Request) -> web.Response:
    """Phases, metrics, completed count, next phase and the last 50 log entries (newest first)."""
    q = parse_query(request, LearnerQuery)
    return ok(report=await _engine(request).report(_learner(q.learner)))


@routes.get(f"{BASE}/insights", query=LearnerQuery, responses={404: "Unknown learner"})
async def insights(request: web.Request) -> web.Response:
    """Strengths, opportunities, risks and readiness from the current metrics."""
    q = parse_query(request, LearnerQuery)
    return ok(insights=await _engine(request).insights(_learner(q.learner)))


@routes.get(
    f"{BASE}/phase/{{n}}/report",
    query=LearnerQuery,
    # The handler's own check, as a pattern: ASCII digits, at most 6.
    path_params={"n": {"type": "string", "pattern": "^[0-9]{1,6}$"}},
    responses={404: "Phase or learner not found", 422: "Phase number is not 1-6 digits"},
)
async def phase_report(request: web.Request) -> web.Response:
    """One phase with its status and payload."""
    raw = request.match_info["n"]
    # isascii: str.isdigit() also accepts "²" and "１", which int() refuses or reads as digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise ValidationFailed("Phase number must be a non-negative integer", details={"n": raw})
    q = parse_query(request, LearnerQuery)
    n = int(raw)
    if str(n) not in PHASES:
        raise NotFound("Phase not found", code="phase_not_found", details={"n": n})
    phase = await _engine(request).phase(_learner(q.learner), n)
    return ok(report=phase)


@routes.get(f"{BASE}/activity-log", query=ActivityQuery, responses={404: "Unknown learner"})
async def activity_log(request: web.Request) -> web.Response:
    """The learner's meta activity log, newest first (`limit` 1–200, default 50)."""
    q = parse_query(request, ActivityQuery)
    learner = _learner(q.learner)
    log, total = await _engine(request).activity_log(learner, q.limit)
    return ok(log=log, total=total, learner=learner)


@routes.get(f"{BASE}/metrics", query=LearnerQuery, responses={404: "Unknown learner"})
async def metrics(request: web.Request) -> web.Response:
    """Baseline/current metrics and improvements, plus `live`: measured from training now."""
    q = parse_query(request, LearnerQuery)
    learner = _learner(q.learner)
    stored, live = await _engine(request).metrics(learner)
    return ok(metrics=stored, live=live, learner=learner)


@routes.post(
    f"{BASE}/boost-retention",
    body=BoostRequest,
    responses={
        404: "Unknown learner",
        409: "Meta paused",
        429: "More than 30 learner boosts, or more than one cohort boost, a minute",
    },
)
async def boost_retention(request: web.Request) -> web.Response:
    """Raise retention (longer half-lives) and transfer, for one learner or `cohort: "all"`."""
    body = await parse_body(request, BoostRequest)
    await limit(request, COHORT_BOOST_LIMIT if body.cohort == "all" else BOOST_LIMIT)
    engine = _engine(request)
    if body.cohort == "all":
        result = await engine.boost_cohort(body.retentionDelta, body.transferDelta)
        return ok(
            **with_warnings(
                warnings_of(body), booster={"ok": True, **result}, count=result["count"]
            )
        )
    learner = _learner(body.learner)
    result = await engine.boost(learner, body.retentionDelta, body.transferDelta)
    return ok(**with_warnings(warnings_of(body), learner=learner, **result))


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    await parse_body(request, EmptyBody)
    await _engine(request).set_paused(paused)
    app = request.app
    await emit_system_event(
        app[REDIS],
        app[KEYS],
        service=app[SERVICE],
        kind="meta_paused" if paused else "meta_resumed",
    )
    return ok(paused=paused)


@routes.post(f"{BASE}/pause", body=EmptyBody)
async def pause(request: web.Request) -> web.Response:
    """Pause meta-learning fleet-wide: start/run-all/boost answer 409 `meta_paused`."""
    return await _set_paused(request, True)


@routes.post(f"{BASE}/resume", body=EmptyBody)
async def resume(request: web.Request) -> web.Response:
    """Resume meta-learning."""
    return await _set_paused(request, False)


@routes.get(f"{BASE}/stats")
async def stats(request: web.Request) -> web.Response:
    """Fleet-wide meta counters (sums over the shards) and the meta trigger delay (count,
    avg, last, max)."""
    return ok(stats=await _engine(request).stats())


compat.declare(routes)


def register(app: web.Application) -> None:
    routes.register(app)
