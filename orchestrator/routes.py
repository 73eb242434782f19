"""The control API (thin handlers; the work is in supervisor.py and prearm.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from orchestrator.app_keys import FLEET, REDIS_WATCH, SUPERVISOR
from orchestrator.fleet_state import FleetState, ProcessRecord
from orchestrator.models import PrearmRequest, ServiceAction
from orchestrator.supervisor import Supervisor
from shared.app_keys import KEYS
from shared.errors import Conflict, NotFound, ServiceUnavailable
from shared.rate_limit import RateLimit, limit
from shared.replicas import ReplicaSettings, live_replicas
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import parse_body

routes = ApiRoutes("orchestrator")


def _fleet(request: web.Request) -> FleetState:
    return request.app[FLEET]


def _supervisor(request: web.Request) -> Supervisor:
    return request.app[SUPERVISOR]


def _records(request: web.Request) -> list[ProcessRecord]:
    """The processes a name means: one (`coach`, or a replica `coach#2`, written `coach%232` in
    a URL), or every replica of a service run as several (`coach`)."""
    name = request.match_info["name"]
    fleet = _fleet(request)
    record = fleet.processes.get(name)
    records = [record] if record is not None else fleet.replicas_of(name)
    if not records:
        raise NotFound(
            f"unknown service {name!r}",
            code="unknown_service",
            details={"services": list(fleet.processes)},
        )
    return records


def _managed(request: web.Request) -> None:
    fleet = _fleet(request)
    if fleet.mode != "manage":
        raise Conflict(
            "the orchestrator is in observe mode (ORCHESTRATOR_MANAGE=false): the platform "
            "runs the services",
            code="not_managed",
        )
    if fleet.stopping:
        raise Conflict("the fleet is stopping", code="stopping")


@routes.get("/api/v1/system/processes", summary="The process table")
async def processes(request: web.Request) -> web.Response:
    fleet = _fleet(request)
    return ok(
        processes=fleet.processes_view(),
        orchestrator={"pid": os.getpid(), "mode": fleet.mode},
    )


@routes.get("/api/v1/system/status", summary="Fleet phase, pre-arm steps and services")
async def status(request: web.Request) -> web.Response:
    watch = request.app[REDIS_WATCH]
    return ok(**_fleet(request).status_view(), redis=watch.view(), alerts=watch.alerts())


REPLICAS_READ_TIMEOUT_S = 2.0


@routes.get(
    "/api/v1/system/replicas",
    summary="Every service's live replicas, from their heartbeats in Redis",
    responses={503: "Redis does not answer"},
)
async def replicas(request: web.Request) -> web.Response:
    # What the services say of themselves (each process's heartbeat), beside what the process
    # table says: under observe mode (compose) it is the only list of the platform's replicas.
    redis, keys = request.app[REDIS_WATCH].client, request.app[KEYS]  # a cluster's if one
    ttl_s = ReplicaSettings().ttl_s
    services: dict[str, Any] = {}
    for name in dict.fromkeys(r.service for r in _fleet(request).processes.values()):
        try:
            live = await asyncio.wait_for(
                live_replicas(redis, keys.replicas(name), ttl_s), REPLICAS_READ_TIMEOUT_S
            )
        except Exception as exc:
            raise ServiceUnavailable(
                f"the replica list needs Redis: {exc.__class__.__name__}", code="redis_unavailable"
            ) from None
        services[name] = {"count": len(live), "replicas": live}
    return ok(ttl_s=ttl_s, services=services)


# Per client, fleet-wide, for restart/stop/start/prearm together: each queues behind the service's
# lock, and a manual restart resets the restart budget, so unbounded calls mean unbounded restarts.
ACTION_LIMIT = RateLimit("orchestrator-action", 20, 60)
ACTION_429 = {429: "More than 20 actions a minute from this client"}


async def _run_action(request: web.Request, action: str) -> web.Response:
    await parse_body(request, ServiceAction)
    await limit(request, ACTION_LIMIT)
    records = _records(request)
    _managed(request)
    supervisor = _supervisor(request)
    name = request.match_info["name"]
    task = supervisor.in_background(_act(supervisor, action, records), f"{action}-{name}")
    # Shielded: a client hanging up does not leave a service half-restarted.
    done = await asyncio.shield(task)
    single: dict[str, Any] = {"process": records[0].view()} if len(records) == 1 else {}
    return ok(
        action=action,
        service=name,
        done=done,
        processes=[r.view() for r in records],
        **single,
    )


async def _act(supervisor: Supervisor, action: str, records: list[ProcessRecord]) -> bool:
    """The action on each process in turn: the replicas of a service are restarted one after
    the other, so the others keep serving its port meanwhile. Whether all succeeded."""
    done = True
    for record in records:  # bounded by the service's replica count
        # restart and start answer whether they succeeded; stop answers nothing (done).
        coro: Coroutine[Any, Any, bool | None]
        if action == "restart":
            coro = supervisor.restart(record, "operator request", manual=True)
        elif action == "stop":
            coro = supervisor.stop_service(record)
        else:
            coro = supervisor.start_service(record)
        done = (await coro) is not False and done
    return done


@routes.post(
    "/api/v1/system/services/{name}/restart",
    body=ServiceAction,
    summary="Restart one service (resets its restart budget)",
    responses={404: "Unknown service", 409: "Observe mode or stopping", **ACTION_429},
)
async def restart_service(request: web.Request) -> web.Response:
    return await _run_action(request, "restart")


@routes.post(
    "/api/v1/system/services/{name}/stop",
    body=ServiceAction,
    summary="Stop one service (not restarted until started again)",
    responses={404: "Unknown service", 409: "Observe mode or stopping", **ACTION_429},
)
async def stop_service(request: web.Request) -> web.Response:
    return await _run_action(request, "stop")


@routes.post(
    "/api/v1/system/services/{name}/start",
    body=ServiceAction,
    summary="Start a stopped or failed service",
    responses={404: "Unknown service", 409: "Observe mode or stopping", **ACTION_429},
)
async def start_service(request: web.Request) -> web.Response:
    return await _run_action(request, "start")


@routes.post(
    "/api/v1/system/prearm",
    body=PrearmRequest,
    summary="Run the pre-arm steps now (never resets progress)",
    responses={409: "Stopping", **ACTION_429},
)
async def prearm(request: web.Request) -> web.Response:
    body = await parse_body(request, PrearmRequest)
    await limit(request, ACTION_LIMIT)
    fleet = _fleet(request)
    if fleet.stopping:
        raise Conflict("the fleet is stopping", code="stopping")
    unknown = [s for s in body.steps or [] if s not in fleet.steps]
    if unknown:
        raise Conflict(
            f"steps {unknown} concern services this orchestrator does not supervise",
            code="step_not_supervised",
        )
    supervisor = _supervisor(request)
    task = supervisor.in_background(supervisor.run_prearm(body.steps), "prearm")
    done = await asyncio.shield(task)
    return ok(done=done, **fleet.status_view())


def register(app: web.Application) -> None:
    routes.register(app)
