"""Thin HTTP handlers of the coach (`/api/v1/auto-coach/*`). Mutations are POST only; a GET on
boost/hyper-boost answers 405 naming the POST (the shared error middleware)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from services.coach import boost as boost_ops
from services.coach.app_keys import INSTANCE, LEASES, META, STORE, TRAINING
from services.coach.models import (
    BoostRequest,
    Empty,
    FastLaneRequest,
    HyperBoostRequest,
    SettingsUpdate,
)
from services.coach.status import (
    build_status,
    fast_lane_members,
    fast_lane_summary,
    live_values,
)
from services.coach.store import PinsBusy, TooManyPins, UnknownLearners
from shared.app_keys import KEYS, REDIS
from shared.clock import now_ms
from shared.compat import warnings_of, with_warnings
from shared.errors import Conflict, NotFound, ServiceUnavailable
from shared.events import emit_system_event
from shared.rate_limit import RateLimit, limit
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import IDEMPOTENCY_RESPONSES, idempotency_key, learner_from, parse_body

routes = ApiRoutes("coach")
BASE = "/api/v1/auto-coach"
BOOST_LIMIT = RateLimit("coach-boost", 60, 10)
HYPER_BOOST_LIMIT = RateLimit("coach-hyper-boost", 20, 10)
# A boost runs its rounds through training (services/coach/boost.py): training's refusals come
# back as the learner's 404/409, its failures as 502/504.
BOOST_RESPONSES = {
    **IDEMPOTENCY_RESPONSES,
    404: "Unknown learner",
    409: "Training not started for the learner, or training refused the rounds",
    502: "Training failed or does not answer",
    504: "Training did not answer in time",
}


async def _status(request: web.Request) -> dict[str, Any]:
    app = request.app
    leases = app[LEASES]
    owned = leases.owned()
    return await build_status(
        app[STORE],
        instance=app[INSTANCE],
        owned=owned,
        reading=app[META].reading(),
        tokens={s: leases.token(s) for s in owned},
    )


def _status_response(status: dict[str, Any]) -> web.Response:
    return ok(status=status)


async def _fast_lane_response(request: web.Request) -> web.Response:
    store = request.app[STORE]
    settings = await store.load_settings()
    members = await store.fast_lane_members(settings.fastLane.windowS)
    return ok(
        fastLane=fast_lane_summary(settings, members),
        members=fast_lane_members(settings, members),
        thresholds=settings.thresholds(),
        live=live_values(settings),
    )


async def _system_event(request: web.Request, kind: str, **fields: Any) -> None:
    await emit_system_event(
        request.app[REDIS], request.app[KEYS], service="coach", kind=kind, **fields
    )


@routes.get(f"{BASE}/status", summary="Coach status: loop, throughput, coverage, meta triggers")
async def status(request: web.Request) -> web.Response:
    return _status_response(await _status(request))


@routes.post(f"{BASE}/start", body=Empty, summary="Start the auto-coach loop (persists)")
async def start(request: web.Request) -> web.Response:
    await parse_body(request, Empty)
    await request.app[STORE].set_active(True, "auto-coach started")
    await _system_event(request, "coach_started")
    return _status_response(await _status(request))


@routes.post(f"{BASE}/stop", body=Empty, summary="Stop the loop (an in-flight tick finishes)")
async def stop(request: web.Request) -> web.Response:
    await parse_body(request, Empty)
    await request.app[STORE].set_active(False, "auto-coach stopped")
    await _system_event(request, "coach_stopped")
    return _status_response(await _status(request))


@routes.get(f"{BASE}/settings", summary="The coach settings (live, from Redis)")
async def get_settings(request: web.Request) -> web.Response:
    current = await request.app[STORE].load_settings()
    return ok(settings=current.model_dump())


@routes.post(f"{BASE}/settings", body=SettingsUpdate, summary="Change coach settings live")
async def post_settings(request: web.Request) -> web.Response:
    update = await parse_body(request, SettingsUpdate)
    new, changed = await request.app[STORE].update_settings(update.changes())
    if changed:
        await _system_event(request, "settings_changed", fields=",".join(changed))
    return ok(**with_warnings(warnings_of(update), settings=new.model_dump(), changed=changed))


@routes.get(
    f"{BASE}/fast-lane",
    summary="The fast lane: settings, members (pinned, automatic) and exclusions (read only)",
)
async def get_fast_lane(request: web.Request) -> web.Response:
    return await _fast_lane_response(request)


@routes.post(
    f"{BASE}/fast-lane",
    body=FastLaneRequest,
    summary="Change the fast lane live (partial) and pin learners into or out of it",
    responses={
        404: "A learner to pin does not exist",
        409: "The pins would exceed fastLane.maxPinned",
        503: "Another pin change held the pins for too long; retry",
    },
)
async def post_fast_lane(request: web.Request) -> web.Response:
    body = await parse_body(request, FastLaneRequest)
    pins = body.learner_changes()
    try:
        changed = await request.app[STORE].update_fast_lane(body.settings_changes(), pins)
    except UnknownLearners as exc:
        raise NotFound(
            "Unknown learners cannot be pinned",
            code="learner_not_found",
            details={"missing": exc.missing[:50]},
        ) from exc
    except TooManyPins as exc:
        raise Conflict(
            f"{exc.pinned} learners would be pinned; fastLane.maxPinned is {exc.limit}",
            code="fast_lane_full",
            details={"pinned": exc.pinned, "maxPinned": exc.limit},
        ) from exc
    except PinsBusy as exc:
        raise ServiceUnavailable(
            "Another fast-lane pin change is in progress; retry",
            code="fast_lane_busy",
            headers={"Retry-After": "1"},
        ) from exc
    if changed or pins:
        await _system_event(
            request,
            "settings_changed",
            scope="fastLane",
            fields=",".join(changed),
            added=len(pins.pin),
            removed=len(pins.unpin),
            excluded=len(pins.exclude),
        )
    return await _fast_lane_response(request)


async def _boost(request: web.Request, model: type[BoostRequest] | type[HyperBoostRequest]) -> Any:
    body = await parse_body(request, model)
    learner = learner_from(request, body.learner)
    rule = BOOST_LIMIT if model is BoostRequest else HYPER_BOOST_LIMIT
    app = request.app
    await limit(request, rule)
    key = idempotency_key(request)
    if key is not None:
        fingerprint = boost_ops.boost_fingerprint(
            request.path, learner, body.rounds, body.batchSize
        )
        await boost_ops.claim_boost_key(app[STORE], key, fingerprint)
    started = time.perf_counter()
    results, calls, replayed = await boost_ops.boost(
        app[STORE],
        app[TRAINING],
        learner=learner,
        rounds=body.rounds,
        batch_size=body.batchSize,
        idempotency_key=key,
    )
    if not replayed and results:  # a real boost, timed as its caller saw it (the Phase 3 gate)
        await app[STORE].record_boost_time(
            now_ms(), len(results), (time.perf_counter() - started) * 1000
        )
    return body, results, calls, replayed


@routes.post(
    f"{BASE}/boost",
    body=BoostRequest,
    summary="Run N rounds (1–20) for one learner now (Idempotency-Key: a retry adds no rounds)",
    responses={**BOOST_RESPONSES, 429: "More than 60 calls in 10 s from this client"},
)
async def boost(request: web.Request) -> web.Response:
    body, results, _, replayed = await _boost(request, BoostRequest)
    return ok(
        **with_warnings(
            warnings_of(body),
            boosted=len(results),
            results=results,
            batchSize=body.batchSize,
            replayed=replayed,
        )
    )


@routes.post(
    f"{BASE}/hyper-boost",
    body=HyperBoostRequest,
    summary="Run up to 50 rounds for one learner (Idempotency-Key: a retry adds no rounds)",
    responses={**BOOST_RESPONSES, 429: "More than 20 calls in 10 s from this client"},
)
async def hyper_boost(request: web.Request) -> web.Response:
    body, results, calls, replayed = await _boost(request, HyperBoostRequest)
    return ok(
        hyperBoosted=len(results),
        results=results,
        totalBatches=calls,
        batchSize=body.batchSize,
        replayed=replayed,
    )


def register(app: web.Application) -> None:
    routes.register(app)
