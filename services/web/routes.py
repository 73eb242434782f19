"""HTTP handlers of the web service: its own `/api/v1/system/*` endpoints, the Control Room
page, and the catch-all proxy (registered last, so every specific route wins)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from services.web import compat, events, gates, system
from services.web.app_keys import FORWARDER, GATE_TABLE, LOCAL_API_ROUTES, PROXY_TABLE, SNAPSHOTS
from services.web.models import EmptyBody, GatesQuery, ScaleRequest
from shared import domain_metrics
from shared.app_keys import CLIENT, KEYS, REDIS, SETTINGS
from shared.errors import NotFound
from shared.rate_limit import RateLimit, limit
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import parse_body, parse_query

STATIC_DIR = Path(__file__).with_name("static")
PAGE = STATIC_DIR / "control-room.html"

routes = ApiRoutes("web")
# Per client, fleet-wide (shared/rate_limit.py): a scale change sets onboarding of up to millions
# of learners in motion; an operator or the Locust onboarding user needs a few a minute.
SCALE_LIMIT = RateLimit("system-scale", 30, 10)


# ---- scale and onboarding ---------------------------------------------------------------------


@routes.get("/api/v1/system/scale", summary="Population target, hold, paused and current count")
async def get_scale(request: web.Request) -> web.Response:
    return ok(scale=await system.read_scale(request.app[REDIS], request.app[KEYS]))


@routes.post(
    "/api/v1/system/scale",
    body=ScaleRequest,
    summary="Set the population target (and hold)",
    responses={429: "More than 30 calls in 10 s from this client"},
)
async def post_scale(request: web.Request) -> web.Response:
    body = await parse_body(request, ScaleRequest)
    await limit(request, SCALE_LIMIT)
    state = await system.set_scale(request.app[REDIS], request.app[KEYS], body.learners, body.hold)
    return ok(scale=state)


@routes.post("/api/v1/system/pause-onboarding", body=EmptyBody, summary="Pause onboarding")
async def pause_onboarding(request: web.Request) -> web.Response:
    await parse_body(request, EmptyBody)
    state = await system.set_paused(request.app[REDIS], request.app[KEYS], True)
    return ok(paused=state["paused"], scale=state)


@routes.post("/api/v1/system/resume-onboarding", body=EmptyBody, summary="Resume onboarding")
async def resume_onboarding(request: web.Request) -> web.Response:
    await parse_body(request, EmptyBody)
    state = await system.set_paused(request.app[REDIS], request.app[KEYS], False)
    return ok(paused=state["paused"], scale=state)


# ---- gates, events, routes -------------------------------------------------------------------


@routes.get("/api/v1/system/gates", query=GatesQuery, summary="Rollout gates against live metrics")
async def get_gates(request: web.Request) -> web.Response:
    query = parse_query(request, GatesQuery)
    result, sources = await evaluate_gates(request.app, query.window)
    return ok(
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        window_s=query.window,
        sources=sources,
        **result,
    )


async def evaluate_gates(app: web.Application, window: int) -> tuple[dict[str, Any], Any]:
    """The gates against reports' metrics over `window` s and the orchestrator's restarts."""
    client = app[CLIENT]
    metrics, processes = await asyncio.gather(
        events.fetch(client, "reports", f"/api/v1/reports/metrics?window={window}", 2.0),
        events.fetch(client, "orchestrator", "/api/v1/system/processes", 2.0),
    )
    merged, available, reason, sources = gates.compose_metrics(
        metrics, processes, reports_error=_error_message(metrics)
    )
    result = gates.evaluate(
        app[GATE_TABLE], merged, metrics_available=available, unavailable_reason=reason
    )
    return result, sources


async def scrape_gates(app: web.Application) -> None:
    domain_metrics.set_gates(app, (await evaluate_gates(app, 60))[0])


def _error_message(body: dict[str, Any]) -> str | None:
    err = body.get("error")
    return err.get("message") if isinstance(err, dict) else None


@routes.get(
    "/api/v1/system/events",
    summary="Server-sent events: fleet, coach, metrics, gates",
    responses={503: "TOOLOO_SSE_MAX_STREAMS streams are open already"},
)
async def get_events(request: web.Request) -> web.StreamResponse:
    cap = request.app[SETTINGS].sse_max_streams
    return await events.stream(request, request.app[SNAPSHOTS], max_streams=cap)


@routes.get("/api/v1/system/routes", summary="The gateway's routing table")
async def get_routes(request: web.Request) -> web.Response:
    table = request.app[PROXY_TABLE].describe(request.app[SETTINGS])
    # Named before sorted(): inside the call mypy infers the AppKey's type from sorted()'s
    # parameter (AppKey[Iterable]) and refuses the key.
    local_routes = request.app[LOCAL_API_ROUTES]
    local = sorted(local_routes)
    return ok(
        routes=[*table, {"name": "web", "prefixes": local, "route": {"type": "local"}}],
    )


@routes.get("/api/v1/health", summary="Liveness (alias of /health, kept for existing clients)")
async def api_health(request: web.Request) -> web.Response:
    return ok(server="web", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# ---- the Control Room ------------------------------------------------------------------------


@routes.get("/control-room", summary="The Control Room page")
async def control_room(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


@routes.get("/", summary="The Control Room page")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


# ---- the proxy -------------------------------------------------------------------------------


async def proxy(request: web.Request) -> web.StreamResponse:
    local = request.app[LOCAL_API_ROUTES].get(request.path)
    if local is not None:
        # A local path with a method it does not take: say so, never forward it.
        raise web.HTTPMethodNotAllowed(request.method, sorted(local))
    return await request.app[FORWARDER].forward(request)


# The Control Room's files, fixed at start: a name not in this set is a 404 without touching the
# filesystem, and no path (`..`, `/`) can name anything else.
STATIC_FILES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())


async def static_file(request: web.Request) -> web.StreamResponse:
    """A Control Room file. Not aiohttp's add_static: for a missing file it answers an empty
    404, where every other error of the fleet is the JSON envelope."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"No static file {name[:100]!r}", code="not_found")
    return web.FileResponse(STATIC_DIR / name)


compat.declare(routes)


def register(app: web.Application) -> None:
    routes.register(app)
    local: dict[str, set[str]] = {}
    for spec in routes.specs:
        if spec.path.startswith("/api/"):
            local.setdefault(spec.path, set()).add(spec.method)
    app[LOCAL_API_ROUTES] = local
    app.router.add_get("/static/{name}", static_file)
    # Last: anything under /api/ that no specific route took goes to the owning service.
    app.router.add_route("*", "/api/{tail:.*}", proxy)
