"""The orchestrator's application: the control API is up from the start; supervision and
pre-arm run in the background, and stopping the app stops the children (cleanup context), also
when SIGTERM arrives in the middle of start-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from orchestrator import routes
from orchestrator.app_keys import FLEET, ORCH_SETTINGS, SUPERVISOR
from orchestrator.fleet_state import FleetState, ProcessRecord, ProcState, StepRecord
from orchestrator.phase_events import PhaseAnnouncer
from orchestrator.prearm import Prearm, steps_for
from orchestrator.service_table import TableError, load_table
from orchestrator.settings import OrchestratorSettings
from orchestrator.supervisor import Supervisor
from shared.app_factory import create_base_app
from shared.app_keys import CLIENT, KEYS, REDIS
from shared.events import emit_system_event
from shared.logging import get_logger
from shared.settings import FleetSettings

log = get_logger(__name__)

EMIT_TIMEOUT_S = 1.0


def create_app(settings: FleetSettings | None = None) -> web.Application:
    # The fleet settings plus the orchestrator's own tunables, from the same environment.
    osettings = OrchestratorSettings()
    try:
        table = load_table(osettings.services)
    except TableError as exc:
        raise SystemExit(f"orchestrator: {exc}") from None
    app = create_base_app("orchestrator", osettings, use_redis=True, use_client=True)
    app[ORCH_SETTINGS] = osettings
    manage = osettings.manage
    records = [
        ProcessRecord(
            spec=spec,
            port=osettings.port_of(spec.name),
            state=ProcState.STARTING if manage else ProcState.EXTERNAL,
        )
        for spec in table
    ]
    steps = [StepRecord(s.name, s.service) for s in steps_for([spec.name for spec in table])]
    app[FLEET] = FleetState("manage" if manage else "observe", records, steps)
    routes.register(app)
    app.cleanup_ctx.append(_supervisor_ctx)
    return app


def _emitter(app: web.Application) -> Any:
    async def emit(service: str, kind: str, **fields: Any) -> None:
        # Events are a record, not a dependency: a slow or absent Redis (e.g. already stopped
        # by honcho during shutdown) must not hold up supervision.
        redis = app.get(REDIS)
        if redis is None:
            return
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
    supervisor = Supervisor(settings, state, prearm, app[CLIENT], emit, announce_phase)
    app[SUPERVISOR] = supervisor
    supervisor.start()
    yield
    await supervisor.shutdown()
