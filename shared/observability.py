"""`GET /health` (alive), `GET /ready` (dependencies answer) and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from shared import domain_metrics
from shared.app_keys import APP_STARTED, METRICS, READY_CHECKS, REDIS, SERVICE
from shared.responses import json_response

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


async def health(request: web.Request) -> web.Response:
    app = request.app
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


async def ready(request: web.Request) -> web.Response:
    reasons = []
    for check in request.app[READY_CHECKS]:
        reason = await check(request.app)
        if reason:
            reasons.append(reason)
    if reasons:
        return json_response(
            {
                "ok": False,
                "error": {
                    "code": "not_ready",
                    "message": "; ".join(reasons),
                    "details": {"service": request.app[SERVICE], "pid": os.getpid()},
                },
            },
            status=503,
        )
    return json_response(
        {"ok": True, "ready": True, "service": request.app[SERVICE], "pid": os.getpid()}
    )


async def metrics(request: web.Request) -> web.Response:
    await domain_metrics.refresh(request.app)  # gauges that are a reading of Redis
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
