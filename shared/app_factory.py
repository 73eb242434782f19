"""The base application every service builds on: settings, logging, middlewares, Redis and its
scripts, the service-to-service client, request statistics and /health, /ready, /metrics.

A service's own `app.py` calls `create_base_app(...)`, then adds its routes and cleanup contexts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from shared.app_keys import (
    APP_STARTED,
    CLIENT,
    KEYS,
    METRICS,
    READY_CHECKS,
    REDIS,
    SCRIPTS,
    SERVICE,
    SETTINGS,
    STATS,
)
from shared.events import emit_system_event
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.logging import configure_logging, get_logger
from shared.middlewares import (
    EdgePolicy,
    RequestMetrics,
    auth_middleware,
    edge_middleware,
    error_middleware,
    request_context_middleware,
)
from shared.migrate_layout import LegacyLayoutFound, refuse_legacy_layout
from shared.observability import ReadyCheck, add_routes, redis_ready
from shared.redis_conn import connect
from shared.request_stats import RequestStats
from shared.scripts import Scripts
from shared.settings import FleetSettings, get_settings
from shared.shards import ShardCountMismatch, ensure_shard_count

log = get_logger(__name__)

BODY_LIMIT = 64 * 1024
CANCEL_ATTEMPTS = 3  # background-task cancels sent at shutdown before giving up on it
CANCEL_WAIT_S = 0.15  # wait after each (a healthy task ends within milliseconds)
CLEANUP_WRITE_S = 0.5  # each last write on shutdown (stats flush, service_stopped event)


def create_base_app(
    service: str,
    settings: FleetSettings | None = None,
    *,
    use_redis: bool = True,
    use_client: bool = False,
    ready_checks: list[ReadyCheck] | None = None,
    client_max_size: int = BODY_LIMIT,
) -> web.Application:
    settings = settings or get_settings()
    configure_logging(service, settings.log_level)
    stats = RequestStats(service)
    metrics = RequestMetrics(service, stats)
    app = web.Application(
        middlewares=[
            metrics.middleware(),
            request_context_middleware,
            # Before anything reads the request: a foreign Host or a cross-site unsafe call is
            # refused whatever the route, the token or the body.
            edge_middleware(EdgePolicy.of(settings)),
            error_middleware,
            # Only when a token is set: without one it would be a no-op layer on every request.
            *([auth_middleware(token)] if (token := settings.token()) else []),
        ],
        client_max_size=client_max_size,
    )
    app[SERVICE] = service
    app[SETTINGS] = settings
    app[KEYS] = Keys(settings.redis_prefix, settings.shards)
    app[METRICS] = metrics
    app[STATS] = stats
    app[APP_STARTED] = time.time()
    app[READY_CHECKS] = ([redis_ready] if use_redis else []) + list(ready_checks or [])
    if use_redis:
        app.cleanup_ctx.append(_redis_ctx)
        add_background_task(app, _flush_stats, "request-stats")
    if use_client:
        app.cleanup_ctx.append(_client_ctx)
    add_routes(app)
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    redis = await connect(app[SETTINGS].redis_url, wait_s=app[SETTINGS].redis_wait_s)
    try:
        # Before anything is written: a Redis still holding the unsharded layout must be
        # migrated first (tooloo-migrate; reads only), and a fleet started with another shard
        # count must not place a single learner (shared/shards.py).
        await refuse_legacy_layout(redis, app[KEYS])
        await ensure_shard_count(redis, app[KEYS])
    except (ShardCountMismatch, LegacyLayoutFound) as exc:
        await redis.aclose()
        log.error(
            "legacy_layout" if isinstance(exc, LegacyLayoutFound) else "shard_count_mismatch",
            error=str(exc),
        )
        raise
    app[REDIS] = redis
    scripts = Scripts(redis)
    await scripts.load_all(redis)
    app[SCRIPTS] = scripts
    service = app[SERVICE]
    with contextlib.suppress(Exception):
        await emit_system_event(
            redis, app[KEYS], service=service, kind="service_started", pid=os.getpid()
        )
    log.info("service_started", port=app[SETTINGS].port_of(service) if service != "redis" else None)
    yield
    # Bounded: with Redis gone (crashed, or stopped first) these would otherwise wait for the
    # client's socket timeouts and hold the process's exit.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(app[STATS].flush(redis, app[KEYS]), CLEANUP_WRITE_S)
        await asyncio.wait_for(
            emit_system_event(
                redis, app[KEYS], service=service, kind="service_stopped", pid=os.getpid()
            ),
            CLEANUP_WRITE_S,
        )
    await redis.aclose()


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    client = ServiceClient(app[SETTINGS])
    await client.start()
    app[CLIENT] = client
    yield
    await client.close()


async def _flush_stats(app: web.Application) -> None:
    await app[STATS].run(app[REDIS], app[KEYS])


def add_background_task(
    app: web.Application,
    run: Callable[[web.Application], Coroutine[Any, Any, None]],
    name: str,
) -> None:
    """Run `run(app)` for the app's lifetime; cancelled (and awaited) on shutdown.

    Added as a cleanup context, so it starts after the contexts registered before it (Redis,
    client) and stops before they close.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_guarded(run, app, name), name=name)
        yield
        await _cancel_and_wait(task, name)

    app.cleanup_ctx.append(ctx)


async def _cancel_and_wait(task: asyncio.Task[None], name: str) -> None:
    """Cancel a background task and wait for it, bounded. A cancel can be lost: seen under the
    full fleet's stop, the reports consumer went on blocking in XREADGROUP (task cancelling,
    coroutine still waiting on its socket read) until the orchestrator's grace ran out and it
    was SIGKILLed. So the cancel is sent again after a short wait, and after the last attempt the
    task is left to die with the process rather than hold its exit."""
    for attempt in range(1, CANCEL_ATTEMPTS + 1):  # bounded
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        if done:
            if attempt > 1:
                log.warning("background_task_cancel_repeated", task=name, attempts=attempt)
            if not task.cancelled() and task.exception() is not None:
                log.warning("background_task_failed_at_stop", task=name)
            return
    log.warning("background_task_not_stopped", task=name)


async def _guarded(
    run: Callable[[web.Application], Coroutine[Any, Any, None]], app: web.Application, name: str
) -> None:
    # A background loop that dies silently leaves a service half-working; log it loudly and
    # restart it after a pause. Bounded: each restart waits, and cancellation ends it.
    while True:
        try:
            await run(app)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_task_crashed", task=name)
            await asyncio.sleep(1.0)
