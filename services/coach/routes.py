"""Thin HTTP handlers of the coach (`/api/v1/auto-coach/*`). Mutations are POST only; a GET on
boost/hyper-boost answers 405 naming the POST (the shared error middleware)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.coach import boost as boost_ops
from services.coach import settings_store
from services.coach.app_keys import INSTANCE, LEASE, call_timeout
from services.coach.models import (
    BoostRequest,
    Empty,
    FastLaneRequest,
    HyperBoostRequest,
    SettingsUpdate,
)
from services.coach.status import build_status, set_active
from shared.app_factory import CLIENT, KEYS, REDIS, SETTINGS
from shared.errors import NotFound
from shared.events import emit_system_event
from shared.rate_limit import RateLimit, client_id, enforce
from shared.responses import json_response, ok
from shared.routing import ApiRoutes
from shared.validation import learner_from, parse_body

routes = ApiRoutes("coach")
BASE = "/api/v1/auto-coach"
BOOST_LIMIT = RateLimit("coach-boost", 60, 10.0)
HYPER_BOOST_LIMIT = RateLimit("coach-hyper-boost", 20, 10.0)


async def _status(request: web.Request) -> dict[str, Any]:
    app = request.app
    return await build_status(
        app[REDIS],
        app[KEYS],
        instance=app[INSTANCE],
        leader=app[LEASE].is_leader,
    )


def _status_response(status: dict[str, Any]) -> web.Response:
    # `status` is also ok()'s HTTP status argument, so the body is built here.
    return json_response({"ok": True, "status": status})


@routes.get(f"{BASE}/status", summary="Coach status: loop, throughput, coverage, meta triggers")
async def status(request: web.Request) -> web.Response:
    return _status_response(await _status(request))


@routes.post(f"{BASE}/start", body=Empty, summary="Start the auto-coach loop (persists)")
async def start(request: web.Request) -> web.Response:
    await parse_body(request, Empty)
    redis, keys = request.app[REDIS], request.app[KEYS]
    await set_active(redis, keys, True, "auto-coach started")
    await emit_system_event(redis, keys, service="coach", kind="coach_started")
    return _status_response(await _status(request))


@routes.post(f"{BASE}/stop", body=Empty, summary="Stop the loop (an in-flight tick finishes)")
async def stop(request: web.Request) -> web.Response:
    await parse_body(request, Empty)
    redis, keys = request.app[REDIS], request.app[KEYS]
    await set_active(redis, keys, False, "auto-coach stopped")
    await emit_system_event(redis, keys, service="coach", kind="coach_stopped")
    return _status_response(await _status(request))


@routes.get(f"{BASE}/settings", summary="The coach settings (live, from Redis)")
async def get_settings(request: web.Request) -> web.Response:
    current = await settings_store.load(request.app[REDIS], request.app[KEYS])
    return ok(settings=current.model_dump())


@routes.post(f"{BASE}/settings", body=SettingsUpdate, summary="Change coach settings live")
async def post_settings(request: web.Request) -> web.Response:
    update = await parse_body(request, SettingsUpdate)
    redis, keys = request.app[REDIS], request.app[KEYS]
    current = await settings_store.load(redis, keys)
    new = settings_store.merge(current, update.changes())
    changed = await settings_store.save(redis, keys, current, new)
    if changed:
        await emit_system_event(
            redis, keys, service="coach", kind="settings_changed", fields=",".join(changed)
        )
    return ok(settings=new.model_dump(), changed=changed)


@routes.get(f"{BASE}/fast-lane", summary="The fast-lane settings and members (read only)")
async def get_fast_lane(request: web.Request) -> web.Response:
    st = await _status(request)
    return ok(fastLane=st["fastLane"], thresholds=st["thresholds"], live=st["live"])


@routes.post(f"{BASE}/fast-lane", body=FastLaneRequest, summary="Change the fast lane live")
async def post_fast_lane(request: web.Request) -> web.Response:
    body = await parse_body(request, FastLaneRequest)
    redis, keys = request.app[REDIS], request.app[KEYS]
    add, remove = body.learner_changes()
    if add:
        # Only existing learners join: an unknown id would sit in the set forever.
        async with redis.pipeline(transaction=False) as pipe:
            for learner in add:
                pipe.exists(keys.learner_state(learner))
            found = await pipe.execute()
        missing = [x for x, f in zip(add, found, strict=True) if not f]
        if missing:
            raise NotFound(
                "Unknown learners cannot join the fast lane",
                code="learner_not_found",
                details={"missing": missing[:50]},
            )
    fast: dict[str, Any] = {
        "enabled": body.enable,
        "weight": body.weight,
        "intervalMs": body.intervalMs,
    }
    if body.microBatchesPerTick is not None:
        fast["microBatchesPerTick"] = body.microBatchesPerTick
    if body.batchSize is not None:
        fast["batchSize"] = body.batchSize
    current = await settings_store.load(redis, keys)
    new = settings_store.merge(current, {"fastLane": fast})
    changed = await settings_store.save(redis, keys, current, new)
    if add or remove:
        # One MULTI/EXEC: the membership change of one call lands together.
        async with redis.pipeline(transaction=True) as pipe:
            if add:
                pipe.sadd(keys.coach_fastlane, *add)
            if remove:
                pipe.srem(keys.coach_fastlane, *remove)
            await pipe.execute()
    await emit_system_event(
        redis,
        keys,
        service="coach",
        kind="settings_changed",
        scope="fastLane",
        fields=",".join(changed),
        added=len(add),
        removed=len(remove),
    )
    st = await _status(request)
    return ok(fastLane=st["fastLane"], thresholds=st["thresholds"], live=st["live"])


async def _boost(request: web.Request, model: type[BoostRequest] | type[HyperBoostRequest]) -> Any:
    body = await parse_body(request, model)
    learner = learner_from(request, body.learner)
    rule = BOOST_LIMIT if model is BoostRequest else HYPER_BOOST_LIMIT
    app = request.app
    await enforce(app[REDIS], app[KEYS], rule, client_id(request))
    results, calls = await boost_ops.boost(
        app[REDIS],
        app[KEYS],
        app[CLIENT],
        learner=learner,
        rounds=body.rounds,
        batch_size=body.batchSize,
        timeout_s=call_timeout(app[SETTINGS]),
    )
    return body, results, calls


@routes.post(f"{BASE}/boost", body=BoostRequest, summary="Run N rounds (1–20) for one learner now")
async def boost(request: web.Request) -> web.Response:
    body, results, _ = await _boost(request, BoostRequest)
    return ok(boosted=len(results), results=results, batchSize=body.batchSize)


@routes.post(
    f"{BASE}/hyper-boost", body=HyperBoostRequest, summary="Run up to 50 rounds for one learner"
)
async def hyper_boost(request: web.Request) -> web.Response:
    body, results, calls = await _boost(request, HyperBoostRequest)
    return ok(
        hyperBoosted=len(results), results=results, totalBatches=calls, batchSize=body.batchSize
    )


def register(app: web.Application) -> None:
    routes.register(app)
