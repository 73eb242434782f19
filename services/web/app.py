"""The web service (port 3000): the Control Room, the API gateway and the system endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from services.web import routes, system
from services.web.app_keys import (
    FORWARDER,
    GATE_STORE,
    GATE_TABLE,
    PROXY_TABLE,
    RAMP_CONFIG,
    RAMP_RUNNER,
    SNAPSHOTS,
)
from services.web.cors import allowed_origins, cors_middleware
from services.web.events import SnapshotCache, build_snapshot
from services.web.gate_store import GateStore
from services.web.gates import load_table
from services.web.learner_routing import LearnerRouter
from services.web.proxy import Forwarder, ProxyTable
from services.web.ramp_runner import RampRunner, config_of
from shared import domain_metrics
from shared.app_factory import REPLICA_SETTINGS, add_background_task, create_base_app
from shared.app_keys import CLIENT, KEYS, REDIS, SETTINGS
from shared.settings import FleetSettings


def create_app(settings: FleetSettings) -> web.Application:
    # CORS just inside the request metrics (so refusals are counted) and outside the error and
    # auth checks, so their answers (a 401 too) carry the CORS headers a browser needs.
    cors = cors_middleware(allowed_origins(settings))
    app = create_base_app("web", settings, use_client=True, around_edge=cors)
    app[GATE_TABLE] = load_table()  # a malformed gate table stops the start, not a request
    app[PROXY_TABLE] = ProxyTable()
    # Malformed ramp stages stop the start too (BadStages), not the first check.
    app[RAMP_CONFIG] = config_of(settings.ramp_stages, settings.ramp_hold_s, settings.ramp_check_s)
    routes.register(app)
    app.cleanup_ctx.append(_gateway_ctx)
    app.on_shutdown.append(_end_streams)
    add_background_task(app, routes.record_gates, "gates-record")
    add_background_task(app, _run_ramp, "ramp")
    domain_metrics.on_scrape(app, routes.scrape_gates)
    return app


async def _end_streams(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for in-flight handlers: SSE streams end now.
    if SNAPSHOTS in app:
        app[SNAPSHOTS].close()


async def _gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    # Runs after the Redis and client contexts: one pooled session serves every forwarded call.
    client = app[CLIENT]
    redis, keys, table = app[REDIS], app[KEYS], app[GATE_TABLE]
    router = LearnerRouter(redis, keys, ttl_s=app[REPLICA_SETTINGS].ttl_s)
    app[FORWARDER] = Forwarder(app[PROXY_TABLE], app[SETTINGS], client.session, router)
    # One learner's requests to one training replica, from the replicas' heartbeats.
    refresher = asyncio.create_task(router.run(), name="learner-routes")
    await system.rename_untagged(redis, keys)
    store = app[GATE_STORE] = GateStore(redis, keys)
    settings = app[SETTINGS]
    app[SNAPSHOTS] = SnapshotCache(
        lambda: build_snapshot(client, redis, keys, table, store, settings)
    )
    app[RAMP_RUNNER] = RampRunner(
        redis, keys, client, store, app[RAMP_CONFIG], lambda: routes.gates_now(app)
    )
    yield
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher


async def _run_ramp(app: web.Application) -> None:
    await app[RAMP_RUNNER].run()
