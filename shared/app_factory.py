"""The base application every service builds on: settings, logging, middlewares, Redis and its
scripts, the service-to-service client, request statistics, /health, /ready, /metrics and
/replicas, this replica's heartbeat and, when it has one, its private control port.

A service's own `app.py` calls `create_base_app(...)`, then adds its routes and cleanup contexts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
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
    edge_middleware,
    error_middleware,
    fleet_middleware,
)
from shared.migrate_layout import LegacyLayoutFound, refuse_legacy_layout
from shared.observability import REPLICAS, ReadyCheck, add_routes, control_app, redis_ready
from shared.redis_conn import connect_fleet
from shared.replicas import ReplicaRecord, ReplicaRegistry, ReplicaSettings, inherited_listener
from shared.request_stats import RequestStats
from shared.scripts import Scripts
from shared.settings import FleetSettings, get_settings
from shared.shards import ShardCountMismatch, ensure_shard_count

log = get_logger(__name__)

BODY_LIMIT = 64 * 1024
CANCEL_ATTEMPTS = 3  # background-task cancels sent at shutdown before giving up on it
CANCEL_WAIT_S = 0.15  # wait after each (a healthy task ends within milliseconds)
CLEANUP_WRITE_S = 0.5  # each last write on shutdown (stats flush, service_stopped event)

REPLICA_SETTINGS = web.AppKey("replica_settings", ReplicaSettings)
# The port this replica's control site listens on (0: it has none).
CONTROL_PORT = web.AppKey("control_port", int)
# Where this replica alone serves the API (shared/runner.py sets it for a replica on a shared
# socket), announced in its heartbeat; None otherwise.
API_URL: web.AppKey[str | None] = web.AppKey("api_url")


def create_base_app(
    service: str,
    settings: FleetSettings | None = None,
    *,
    use_redis: bool = True,
    use_client: bool = False,
    ready_checks: list[ReadyCheck] | None = None,
    client_max_size: int = BODY_LIMIT,
    around_edge: Callable[..., Any] | None = None,
) -> web.Application:
    settings = settings or get_settings()
    configure_logging(service, settings.log_level)
    stats = RequestStats(service)
    metrics = RequestMetrics(service, stats)
    policy = EdgePolicy.of(settings)
    edge = edge_middleware(policy)
    replica = ReplicaSettings()
    recycle = replica.recycle_every()
    app = web.Application(
        # The recycling, metrics, request id, edge check (before anything reads the request: a
        # foreign Host or a cross-site unsafe call is refused whatever the route, the token or
        # the body), JSON errors and, with a token, auth: one middleware on every request.
        middlewares=[
            fleet_middleware(
                metrics,
                policy,
                settings.token(),
                recycle_every=recycle,
                around_edge=around_edge,
            )
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
    app[REPLICA_SETTINGS] = replica
    app[CONTROL_PORT] = 0
    app[API_URL] = None
    if replica.control_fd is not None or replica.control_port is not None:
        # First, so the control port answers /health while Redis is still awaited; the same
        # edge check as the main port, and JSON errors.
        control = control_app(app, [edge, error_middleware], with_replicas=use_redis)
        app.cleanup_ctx.append(_control_ctx(control))
    if use_redis:
        app.cleanup_ctx.append(_redis_ctx)
        add_background_task(app, _flush_stats, "request-stats")
        add_background_task(app, _heartbeat, "replica-heartbeat")
    if use_client:
        app.cleanup_ctx.append(_client_ctx)
    add_routes(app, with_replicas=use_redis)
    return app


def _control_ctx(control: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    """Serve `control` on the handed control socket (TOOLOO_CONTROL_FD) or on a port of its own
    (TOOLOO_CONTROL_PORT), for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        replica = app[REPLICA_SETTINGS]
        runner = web.AppRunner(control, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site: web.BaseSite
        if replica.control_fd is not None:
            sock = inherited_listener(replica.control_fd, "TOOLOO_CONTROL_FD")
            site = web.SockSite(runner, sock)
        else:
            site = web.TCPSite(runner, app[SETTINGS].host, replica.control_port)
        await site.start()
        app[CONTROL_PORT] = _bound_port(runner) or replica.control_port or 0
        log.info("control_port_listening", port=app[CONTROL_PORT])
        yield
        await runner.cleanup()

    return ctx


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
    return None


def process_name(app: web.Application) -> str:
    """This process in events and the process table: the orchestrator's replica name (`coach#2`)
    when it runs several, else the service's name, as before replicas existed."""
    return app[REPLICA_SETTINGS].replica or app[SERVICE]


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    redis = await connect_fleet(app[SETTINGS].redis_url, wait_s=app[SETTINGS].redis_wait_s)
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
    replica = app[REPLICA_SETTINGS]
    app[REPLICAS] = ReplicaRegistry(
        redis,
        app[KEYS],
        service,
        ReplicaRecord(
            replica=replica.name(),
            pid=os.getpid(),
            host=socket.gethostname(),
            control_port=app[CONTROL_PORT] or None,
            started_ms=int(app[APP_STARTED] * 1000),
            api_url=app[API_URL],
        ),
        heartbeat_s=replica.heartbeat_s,
        ttl_s=replica.ttl_s,
    )
    with contextlib.suppress(Exception):
        await emit_system_event(
            redis, app[KEYS], service=process_name(app), kind="service_started", pid=os.getpid()
        )
    log.info("service_started", port=app[SETTINGS].port_of(service) if service != "redis" else None)
    yield
    # Bounded: with Redis gone (crashed, or stopped first) these would otherwise wait for the
    # client's socket timeouts and hold the process's exit.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(app[STATS].flush(redis, app[KEYS]), CLEANUP_WRITE_S)
        await asyncio.wait_for(
            emit_system_event(
                redis, app[KEYS], service=process_name(app), kind="service_stopped", pid=os.getpid()
            ),
            CLEANUP_WRITE_S,
        )
    with contextlib.suppress(Exception):
        # Gone at once from the service's replica list, rather than after the TTL.
        await asyncio.wait_for(app[REPLICAS].leave(), CLEANUP_WRITE_S)
    await redis.aclose()


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    client = ServiceClient(app[SETTINGS])
    await client.start()
    app[CLIENT] = client
    yield
    await client.close()


async def _flush_stats(app: web.Application) -> None:
    await app[STATS].run(app[REDIS], app[KEYS])


async def _heartbeat(app: web.Application) -> None:
    await app[REPLICAS].run()


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
