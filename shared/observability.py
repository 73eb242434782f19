"""`GET /health` (alive), `GET /ready` (dependencies answer), `GET /metrics` (Prometheus) and
`GET /replicas` (the service's live replicas, from Redis).

A replica behind a shared port also serves the first three on its private control port, from a
small app of its own (`control_app`) whose handlers answer for the main app: through the shared
port any replica may answer, through the control port only this one does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from shared import domain_metrics
from shared.app_keys import APP_STARTED, METRICS, READY_CHECKS, REDIS, SERVICE
from shared.errors import ServiceUnavailable
from shared.replicas import ReplicaRegistry
from shared.responses import json_response, ok
from shared.routing import documented

# This process's heartbeat (set once Redis is connected) and the main app a control app serves.
REPLICAS = web.AppKey("replica_registry", ReplicaRegistry)
MAIN_APP = web.AppKey("main_app", web.Application)

# A readiness check returns None when fine, else a short reason.
ReadyCheck = Callable[[web.Application], Awaitable[str | None]]


async def redis_ready(app: web.Application) -> str | None:
    redis = app.get(REDIS)
    if redis is None:
        return "redis not connected"
    try:
        await asyncio.wait_for(redis.ping(), timeout=1.0)
    except Exception as exc:
        return f"redis: {exc.__class__.__name__}: {exc}"
    return None


def _served(request: web.Request) -> web.Application:
    """The app a request is about: the main app, also when asked through the control port."""
    return request.app.get(MAIN_APP, request.app)


@documented()
async def health(request: web.Request) -> web.Response:
    app = _served(request)
    return json_response(
        {
            "ok": True,
            "server": app[SERVICE],
            "service": app[SERVICE],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "uptime_s": round(time.time() - app[APP_STARTED], 3),
            # The orchestrator compares it with its child's pid: a process squatting the port
            # is not taken for the service (security review 1.2).
            "pid": os.getpid(),
        }
    )


@documented(responses={503: "Not ready: Redis, or a check of the service, fails"})
async def ready(request: web.Request) -> web.Response:
    app = _served(request)
    reasons = []
    for check in app[READY_CHECKS]:
        reason = await check(app)
        if reason:
            reasons.append(reason)
    if reasons:
        return json_response(
            {
                "ok": False,
                "error": {
                    "code": "not_ready",
                    "message": "; ".join(reasons),
                    "details": {"service": app[SERVICE], "pid": os.getpid()},
                },
            },
            status=503,
        )
    return json_response({"ok": True, "ready": True, "service": app[SERVICE], "pid": os.getpid()})


# Prometheus's text exposition format (its gauges read Redis, hence the 503).
@documented(media="text/plain", uses_redis=True)
async def metrics(request: web.Request) -> web.Response:
    app = _served(request)
    await domain_metrics.refresh(app)  # gauges that are a reading of Redis
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


@documented(responses={503: "Redis not connected yet"}, uses_redis=True)
async def replicas(request: web.Request) -> web.Response:
    """The whole service: every replica that sent a heartbeat within the TTL, this one marked."""
    app = _served(request)
    registry = app.get(REPLICAS)
    if registry is None:
        raise ServiceUnavailable("replicas are listed once Redis is connected", code="not_ready")
    live = await registry.live()
    me = registry.me.replica
    return ok(
        service=app[SERVICE],
        count=len(live),
        answered_by={"replica": me, "pid": os.getpid()},
        ttl_s=registry.ttl_s,
        replicas=[r | {"self": r.get("replica") == me} for r in live],
    )


def add_routes(app: web.Application, *, with_replicas: bool = True) -> None:
    """`with_replicas`: a process that keeps no heartbeat (the orchestrator, which has no Redis
    context of its own) has no /replicas to answer."""
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    if with_replicas:
        app.router.add_get("/replicas", replicas)


def control_app(
    main: web.Application, middlewares: list[Any], *, with_replicas: bool = True
) -> web.Application:
    """The replica's control port: /health, /ready, /metrics and /replicas of `main`, nothing
    else (no API: the control port is for the orchestrator and Prometheus)."""
    control = web.Application(middlewares=middlewares)
    control[MAIN_APP] = main
    add_routes(control, with_replicas=with_replicas)
    return control
