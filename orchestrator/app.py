"""The orchestrator's application: the control API is up from the start, with or without Redis
(it reports `waiting_for_redis` until Redis answers; redis_watch.py); supervision and pre-arm
run in the background, and stopping the app stops the children (cleanup context), also when
SIGTERM arrives in the middle of start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from orchestrator import routes
from orchestrator.app_keys import FLEET, ORCH_SETTINGS, REDIS_WATCH, SUPERVISOR
from orchestrator.fleet_state import FleetState, ProcessRecord, ProcState, StepRecord
from orchestrator.phase_events import PhaseAnnouncer
from orchestrator.prearm import Prearm, steps_for
from orchestrator.redis_watch import RedisWatch
from orchestrator.service_table import TableError, load_table
from orchestrator.settings import OrchestratorSettings, settings_error
from orchestrator.supervisor import Supervisor
from shared.app_factory import add_background_task, create_base_app
from shared.app_keys import CLIENT, KEYS, REDIS, STATS
from shared.events import emit_system_event
from shared.fleet import Service
from shared.logging import get_logger
from shared.migrate_layout import after_redis
from shared.observability import redis_ready
from shared.redis_conn import make_client
from shared.settings import FleetSettings

log = get_logger(__name__)

EMIT_TIMEOUT_S = 1.0


def create_app(settings: FleetSettings | None = None) -> web.Application:
    # The fleet settings plus the orchestrator's own tunables, from the same environment. A bad
    # value (COACH_REPLICAS=0) ends the process here, before anything is started or bound.
    try:
        osettings = OrchestratorSettings()
    except ValidationError as exc:
        raise SystemExit(f"orchestrator: refusing to start: {settings_error(exc)}") from None
    try:
        table = load_table(osettings.services)
    except TableError as exc:
        raise SystemExit(f"orchestrator: {exc}") from None
    # Not the base app's Redis context, which waits for Redis before the API listens and exits
    # when it does not come (review 5.1): a client that connects on first use instead.
    app = create_base_app(
        "orchestrator", osettings, use_redis=False, use_client=True, ready_checks=[redis_ready]
    )
    app[ORCH_SETTINGS] = osettings
    app.cleanup_ctx.append(_redis_ctx)
    add_background_task(app, _flush_stats, "request-stats")
    add_background_task(app, _watch_redis, "redis-watch")
    records = _records(osettings, table)
    steps = [StepRecord(s.name, s.service) for s in steps_for([spec.name for spec in table])]
    app[FLEET] = FleetState("manage" if osettings.manage else "observe", records, steps)
    app[FLEET].waiting_for_redis = True
    routes.register(app)
    app.cleanup_ctx.append(_supervisor_ctx)
    return app


def _records(settings: OrchestratorSettings, table: tuple[Service, ...]) -> list[ProcessRecord]:
    """One record per process: a service, or each of its replicas (`<NAME>_REPLICAS` > 1). In
    observe mode the platform decides how many run; the orchestrator sees the service's port."""
    records = []
    for spec in table:
        port = settings.port_of(spec.name)
        count = settings.replicas_of(spec.name)
        if not settings.manage:
            if count > 1:
                log.warning("replicas_ignored_in_observe_mode", service=spec.name, replicas=count)
            records.append(ProcessRecord(spec=spec, port=port, state=ProcState.EXTERNAL))
        elif count == 1:
            records.append(ProcessRecord(spec=spec, port=port, state=ProcState.STARTING))
        else:
            records.extend(
                ProcessRecord(spec=spec, port=port, state=ProcState.STARTING, replica=k)
                for k in range(1, count + 1)
            )
    return records


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[ORCH_SETTINGS]
    redis = make_client(settings.redis_url)  # connects on first use: no wait here
    app[REDIS] = redis
    app[REDIS_WATCH] = RedisWatch(
        redis, settings.health_interval_s, settings.redis_memory_alert_pct, settings.redis_url
    )
    yield
    await app[REDIS_WATCH].aclose()
    await redis.aclose()


async def _flush_stats(app: web.Application) -> None:
    watch, stats, keys = app[REDIS_WATCH], app[STATS], app[KEYS]
    while True:  # bounded by task cancellation at shutdown
        await asyncio.sleep(1.0)
        # The watch's client: a cluster client once Redis turned out to be a cluster.
        await stats.flush(watch.client, keys)


async def _watch_redis(app: web.Application) -> None:
    await app[REDIS_WATCH].run()


def _emitter(app: web.Application) -> Any:
    async def emit(service: str, kind: str, **fields: Any) -> None:
        # Events are a record, not a dependency: a slow or absent Redis (e.g. already stopped
        # by honcho during shutdown) must not hold up supervision.
        watch = app.get(REDIS_WATCH)
        if watch is None or watch.up is False:
            return  # known to be down: no 1 s wait per event
        redis = watch.client
        try:
            await asyncio.wait_for(
                emit_system_event(
                    redis, app[KEYS], service=service, kind=kind, source="orchestrator", **fields
                ),
                EMIT_TIMEOUT_S,
            )
        except Exception as exc:
            log.warning("event_not_recorded", kind=kind, service=service, error=str(exc))

    return emit


async def _supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[FLEET]
    settings = app[ORCH_SETTINGS]
    emit = _emitter(app)
    # Pre-arm and the supervisor both change the fleet's state; either then announces the phase.
    announce_phase = PhaseAnnouncer(state, emit)
    prearm = Prearm(app[CLIENT], state, settings, emit, announce_phase)
    supervisor = Supervisor(
        settings,
        state,
        prearm,
        app[CLIENT],
        emit,
        announce_phase,
        wait_redis=after_redis(
            app[REDIS_WATCH].wait_up, settings.redis_url, app[KEYS], settings.redis_wait_s
        ),  # + the layout migration
    )
    app[SUPERVISOR] = supervisor
    supervisor.start()
    yield
    await supervisor.shutdown()
