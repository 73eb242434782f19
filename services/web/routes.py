"""HTTP handlers of the web service: its own `/api/v1/system/*` endpoints, the Control Room
page, and the catch-all proxy (registered last, so every specific route wins)."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from services.web import (
    compat,
    events,
    full_pause,
    gate_inputs,
    gates,
    memory_budget,
    ramp_runner,
    rollout,
    snapshots,
    system,
)
from services.web.app_keys import (
    FORWARDER,
    GATE_STORE,
    GATE_TABLE,
    LOCAL_API_ROUTES,
    PROXY_TABLE,
    RAMP_CONFIG,
    SNAPSHOTS,
)
from services.web.models import (
    ActorRequest,
    EmptyBody,
    GatesHistoryQuery,
    GatesQuery,
    PauseRequest,
    RampRequest,
    RevertRequest,
    ScaleRequest,
    SignoffRequest,
    SnapshotRequest,
    SnapshotsQuery,
)
from services.web.ramp import BadStages
from shared import domain_metrics
from shared.app_keys import CLIENT, KEYS, REDIS, SETTINGS
from shared.clock import iso_ms, now_ms
from shared.errors import Conflict, NotFound, UpstreamError, ValidationFailed
from shared.fleet import SERVICES
from shared.logging import get_logger
from shared.rate_limit import RateLimit, limit
from shared.responses import ok
from shared.routing import ApiRoutes, Upstream
from shared.validation import parse_body, parse_query

STATIC_DIR = Path(__file__).with_name("static")
PAGE = STATIC_DIR / "control-room.html"

routes = ApiRoutes("web")
log = get_logger(__name__)
# The window of the recorded evaluations: each one judges the last minute, and a gate's period
# is the run of such evaluations (gate_record.py).
RECORD_WINDOW_S = 60
# Per client, fleet-wide (shared/rate_limit.py): a scale change sets onboarding of up to millions
# of learners in motion; an operator or the Locust onboarding user needs a few a minute.
SCALE_LIMIT = RateLimit("system-scale", 30, 10)
# What the gateway adds to every operation it forwards (services/web/proxy.py).
GATEWAY_ERRORS = {
    502: "The owning service failed or refused the connection",
    504: "The owning service did not answer in time",
}


# ---- scale and onboarding ---------------------------------------------------------------------


@routes.get(
    "/api/v1/system/scale",
    summary="Population target, hold, paused; learners, active and inactive (a throttle's)",
)
async def get_scale(request: web.Request) -> web.Response:
    return ok(scale=await system.read_scale(request.app[REDIS], request.app[KEYS]))


@routes.post(
    "/api/v1/system/scale",
    body=ScaleRequest,
    summary="Set the population target; with hold, throttle the active population down to it",
    responses={
        409: "The learners to create do not fit the Redis memory budget (`memory_budget`)",
        429: "More than 30 calls in 10 s from this client",
    },
)
async def post_scale(request: web.Request) -> web.Response:
    body = await parse_body(request, ScaleRequest)
    await limit(request, SCALE_LIMIT)
    redis, keys, actor = request.app[REDIS], request.app[KEYS], body.actor.strip()
    # Read-only, before anything is recorded: a target the learners to create would not fit.
    budget = await memory_budget.budget(redis, keys, body.learners)
    if not budget.fits:
        raise Conflict(
            f"{body.learners} learners do not fit the Redis memory budget: the fullest master "
            f"({budget.node}) has {budget.bytes_available} bytes left, the learners to create "
            f"need {budget.bytes_needed} there ({budget.bytes_per_learner} bytes per learner)",
            code="memory_budget",
            details=budget.details(),
        )
    if body.hold:  # the throttle's form (rollback levels 1 and 3): settings recorded first
        await snapshots.take(redis, keys, request.app[CLIENT], actor, None, "before scale hold")
    before = await system.read_scale(redis, keys)
    state = await system.set_scale(redis, keys, body.learners, body.hold, actor)
    at = now_ms()
    await request.app[GATE_STORE].append(system.scale_record(before, state, actor, at, iso_ms(at)))
    return ok(scale=state)


@routes.post("/api/v1/system/pause-onboarding", body=EmptyBody, summary="Pause onboarding")
async def pause_onboarding(request: web.Request) -> web.Response:
    await parse_body(request, EmptyBody)
    app = request.app
    # The emergency pause (rollback level 3): the settings it changes are recorded first.
    await snapshots.take(app[REDIS], app[KEYS], app[CLIENT], "unspecified", None, "before pause")
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


async def evaluate_gates(
    app: web.Application, window: int, *, record: bool = False
) -> tuple[dict[str, Any], Any]:
    """The gates against reports' metrics over `window` s and the orchestrator's restarts,
    with the recorded sign-offs; the decisions (passed, active gate, next decision) come from
    the decision record, which only the periodic recorder writes (`record`)."""
    client = app[CLIENT]
    metrics, processes = await asyncio.gather(
        events.fetch(client, "reports", f"/api/v1/reports/metrics?window={window}", 2.0),
        events.fetch(client, "orchestrator", "/api/v1/system/processes", 2.0),
    )
    at = now_ms()
    fleet_checks = await gate_inputs.checks(
        client, app[REDIS], app[KEYS], app[SETTINGS], processes=processes, now_ms=at
    )
    merged, available, reason, sources = gates.compose_metrics(
        metrics, processes, reports_error=_error_message(metrics), checks=fleet_checks
    )
    result = await rollout.evaluate(
        app[GATE_STORE],
        app[GATE_TABLE],
        merged,
        available=available,
        reason=reason,
        now_ms=at,
        record=record,
    )
    return result, sources


async def gates_now(app: web.Application) -> dict[str, Any]:
    """The gates over the last minute, as the ramp controller reads them (not recorded)."""
    return (await evaluate_gates(app, RECORD_WINDOW_S))[0]


async def record_gates(app: web.Application) -> None:
    """Evaluate the gates every TOOLOO_GATES_RECORD_INTERVAL seconds and record what changed;
    bounded by task cancellation at shutdown. Every replica may run it: the record script
    writes a gate only over the version it read."""
    interval = app[SETTINGS].gates_record_interval_s
    while True:
        try:
            await evaluate_gates(app, RECORD_WINDOW_S, record=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or a service away: the next pass tries again
            log.warning("gates_record_failed", error=str(exc)[:300])
        await asyncio.sleep(interval)


async def scrape_gates(app: web.Application) -> None:
    domain_metrics.set_gates(app, (await evaluate_gates(app, 60))[0])


@routes.get(
    "/api/v1/system/gates/history",
    query=GatesHistoryQuery,
    responses={404: "Unknown gate"},
    summary="The decision record: verdict changes, seals, regressions, sign-offs, pauses",
)
async def get_gates_history(request: web.Request) -> web.Response:
    query = parse_query(request, GatesHistoryQuery)
    if query.gate is not None:
        rollout.gate_of(request.app[GATE_TABLE], query.gate)
    entries = await request.app[GATE_STORE].history(query.limit, query.gate)
    return ok(history=entries, count=len(entries))


@routes.post(
    "/api/v1/system/gates/{gate_id}/signoff",
    body=SignoffRequest,
    summary="Sign off a criterion the fleet cannot measure (who stated what, and when)",
    responses={404: "Unknown gate", 422: "Unknown criterion, or one the fleet measures"},
)
async def post_signoff(request: web.Request) -> web.Response:
    body = await parse_body(request, SignoffRequest)
    result = await rollout.sign_off(
        request.app[GATE_STORE],
        request.app[GATE_TABLE],
        request.match_info["gate_id"],
        body.criterion,
        body.value,
        body.actor.strip(),
        body.note,
        now_ms(),
    )
    return ok(**result)


@routes.post(
    "/api/v1/system/gates/{gate_id}/reopen",
    body=ActorRequest,
    summary="Re-open a passed (sealed) gate: it is judged again from now",
    responses={404: "Unknown gate", 409: "The gate is not sealed"},
)
async def post_reopen(request: web.Request) -> web.Response:
    body = await parse_body(request, ActorRequest)
    event = await rollout.reopen(
        request.app[GATE_STORE],
        request.app[GATE_TABLE],
        request.match_info["gate_id"],
        body.actor.strip(),
        body.note,
        now_ms(),
    )
    return ok(reopened=event)


# ---- the full pause (rollback level 4) -------------------------------------------------------


async def _full_pause(request: web.Request, paused: bool) -> web.Response:
    body = await parse_body(request, PauseRequest)
    app = request.app
    if paused:  # rollback level 4: the settings it changes are recorded first
        await snapshots.take(
            app[REDIS], app[KEYS], app[CLIENT], body.actor.strip(), None, "before full pause"
        )
    try:
        entry = await full_pause.set_full_pause(
            app[REDIS],
            app[KEYS],
            app[CLIENT],
            app[GATE_STORE],
            paused,
            body.actor.strip(),
            body.note,
        )
    except full_pause.PartFailed as exc:
        raise UpstreamError(str(exc), code="pause_incomplete", details=exc.parts) from None
    return ok(paused=paused, parts=entry["parts"], recorded=entry)


@routes.post(
    "/api/v1/system/pause",
    body=PauseRequest,
    summary="Full pause: onboarding, coach and meta stopped together (recorded with its actor)",
    responses={502: "A part did not follow (its answer in details); retrying is safe"},
)
async def post_pause(request: web.Request) -> web.Response:
    return await _full_pause(request, True)


@routes.post(
    "/api/v1/system/resume",
    body=PauseRequest,
    summary="Resume after a full pause: meta, coach and onboarding together",
    responses={502: "A part did not follow (its answer in details); retrying is safe"},
)
async def post_resume(request: web.Request) -> web.Response:
    return await _full_pause(request, False)


# ---- the ramp controller ---------------------------------------------------------------------


@routes.get(
    "/api/v1/system/ramp",
    summary="The ramp controller: switch, stages, current stage, since, next check, last action",
)
async def get_ramp(request: web.Request) -> web.Response:
    app = request.app
    state, cfg, raw = await ramp_runner.load(app[REDIS], app[KEYS], app[RAMP_CONFIG])
    return ok(ramp=ramp_runner.describe(state, cfg, raw))


@routes.post(
    "/api/v1/system/ramp",
    body=RampRequest,
    summary="Switch the ramp controller on or off (recorded with its actor)",
    responses={422: "Stages not strictly increasing, or holds that do not match the stages"},
)
async def post_ramp(request: web.Request) -> web.Response:
    body = await parse_body(request, RampRequest)
    app = request.app
    try:
        doc = await ramp_runner.set_enabled(
            app[REDIS],
            app[KEYS],
            app[GATE_STORE],
            app[RAMP_CONFIG],
            enabled=body.enabled,
            actor=body.actor.strip(),
            stages=body.stages,
            holds_s=[float(h) for h in body.hold_s] if body.hold_s is not None else None,
        )
    except BadStages as exc:
        raise ValidationFailed(str(exc), code="bad_stages") from None
    return ok(ramp=doc)


# ---- controller snapshots and the revert (rollback level 2) --------------------------------


@routes.post(
    "/api/v1/system/snapshots",
    body=SnapshotRequest,
    summary="Record the controller settings (coach, scale, ramp) as a snapshot",
)
async def post_snapshot(request: web.Request) -> web.Response:
    body = await parse_body(request, SnapshotRequest)
    app = request.app
    snapshot = await snapshots.take(
        app[REDIS], app[KEYS], app[CLIENT], body.actor.strip(), body.note, "manual"
    )
    return ok(snapshot=snapshot)


@routes.get(
    "/api/v1/system/snapshots",
    query=SnapshotsQuery,
    summary="The controller snapshots, newest first (the newest 200 are kept)",
)
async def get_snapshots(request: web.Request) -> web.Response:
    query = parse_query(request, SnapshotsQuery)
    found = await snapshots.listing(request.app[REDIS], request.app[KEYS], query.limit)
    return ok(snapshots=found, count=len(found))


@routes.post(
    "/api/v1/system/revert",
    body=RevertRequest,
    summary="Put a snapshot's controller settings back (rollback level 2, recorded with its actor)",
    responses={
        404: "Unknown snapshot",
        502: "The coach did not take its settings (its answer in details); retrying is safe",
    },
)
async def post_revert(request: web.Request) -> web.Response:
    body = await parse_body(request, RevertRequest)
    app = request.app
    try:
        entry = await snapshots.revert(
            app[REDIS],
            app[KEYS],
            app[CLIENT],
            app[GATE_STORE],
            body.snapshot_id,
            body.actor.strip(),
            body.note,
        )
    except snapshots.UnknownSnapshot as exc:
        raise NotFound(str(exc), code="snapshot_not_found") from None
    except snapshots.RevertIncomplete as exc:
        raise UpstreamError(str(exc), code="revert_incomplete", details=exc.parts) from None
    return ok(reverted=entry)


def _error_message(body: dict[str, Any]) -> str | None:
    err = body.get("error")
    return err.get("message") if isinstance(err, dict) else None


@routes.get(
    "/api/v1/system/events",
    summary="Server-sent events: fleet, coach, metrics, gates",
    media="text/event-stream",
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


# The Control Room's files, fixed at start: a name not in this set is a 404 without touching the
# filesystem, and no path (`..`, `/`) can name anything else.
STATIC_FILES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())
# As guessed from the name; JavaScript under both of its names, since which one aiohttp sends
# depends on the platform's MIME table.
STATIC_MEDIA = tuple(
    sorted(
        {mimetypes.guess_type(n)[0] or "application/octet-stream" for n in STATIC_FILES}
        | {"application/javascript", "text/javascript"}
    )
)


@routes.get(
    "/static/{name}",
    summary="A file of the Control Room",
    media=STATIC_MEDIA,
    path_params={"name": {"type": "string", "enum": sorted(STATIC_FILES)}},
    responses={404: "No such file"},
    uses_redis=False,
)
async def static_file(request: web.Request) -> web.StreamResponse:
    """A Control Room file. Not aiohttp's add_static: for a missing file it answers an empty
    404, where every other error of the fleet is the JSON envelope."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"No static file {name[:100]!r}", code="not_found")
    return web.FileResponse(STATIC_DIR / name)


@routes.get("/control-room", summary="The Control Room page", media="text/html", uses_redis=False)
async def control_room(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


@routes.get("/", summary="The Control Room page", media="text/html", uses_redis=False)
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


# ---- the proxy -------------------------------------------------------------------------------


async def proxy(request: web.Request) -> web.StreamResponse:
    local = request.app[LOCAL_API_ROUTES].get(request.path)
    if local is not None:
        # A local path with a method it does not take: say so, never forward it.
        raise web.HTTPMethodNotAllowed(request.method, sorted(local))
    return await request.app[FORWARDER].forward(request)


def upstreams() -> list[Upstream]:
    """Every service's route table, for the operations the gateway forwards to it (the fleet
    table's prefixes): the gateway's document lists everything it serves. Imported here, not at
    the top: the tables are only read, once, when the document is built."""
    from orchestrator.routes import routes as orchestrator
    from services.coach.routes import routes as coach
    from services.meta.routes import routes as meta
    from services.reports.routes import api as reports
    from services.training.routes import api as training

    tables = {t.service: t for t in (training, meta, coach, reports, orchestrator)}
    return [
        Upstream(tables[svc.name], svc.proxy_prefixes, GATEWAY_ERRORS)
        for svc in SERVICES
        if svc.proxy_prefixes
    ]


compat.declare(routes)


def register(app: web.Application) -> None:
    routes.register(app, upstreams=upstreams())
    local: dict[str, set[str]] = {}
    for spec in routes.specs:
        if spec.path.startswith("/api/"):
            local.setdefault(spec.path, set()).add(spec.method)
    app[LOCAL_API_ROUTES] = local
    # Last: anything under /api/ that no specific route took goes to the owning service.
    app.router.add_route("*", "/api/{tail:.*}", proxy)
