"""Reports HTTP handlers: parse the query, call queries.* (and the dashboard builder), answer."""

from __future__ import annotations

import math

from aiohttp import web

from services.reports import alert_sender, comprehensive, queries
from services.reports.alerts import url_label
from services.reports.app_keys import ALERT_SETTINGS, CONSUMER
from services.reports.models import (
    ComprehensiveQuery,
    DeliveriesQuery,
    ExportQuery,
    TimeseriesQuery,
    WindowQuery,
)
from shared.app_keys import KEYS, REDIS, SETTINGS
from shared.clock import iso_ms, now_ms
from shared.rate_limit import RateLimit, limit
from shared.redis_types import text_map
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import parse_query

api = ApiRoutes("reports")
# Windows up to an hour are free (the Control Room reads 60 s every second). Longer ones read one
# hash per minute and per shard: one `reports_read` script per shard and one for the system
# stream, each holding its Redis node ~2-4 ms at 24 h (~50 ms of Redis time per 24 h read at 16
# shards, measured): each costs a token per started hour of window, from a per-client budget of
# 96 a minute, so four 24 h reads a minute, or 96 one-hour-and-a-bit ones.
FREE_WINDOW_MIN = 60
LONG_WINDOW_LIMIT = RateLimit("reports-long-window", 96, 60)
LONG_WINDOW_429 = {
    429: "Windows beyond an hour: more than 96 hour-tokens a minute from this client"
}


async def _long_window(request: web.Request, minutes: int) -> None:
    if minutes > FREE_WINDOW_MIN:
        await limit(request, LONG_WINDOW_LIMIT, cost=math.ceil(minutes / 60))


def register(app: web.Application) -> None:
    api.register(app)


@api.get("/api/v1/reports/status", summary="Consumer lag, events applied, last event time")
async def status(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await queries.status(
        request.app[REDIS],
        request.app[KEYS],
        settings.stream_lag_alert,
        settings.redis_memory_alert_pct,
    )
    consumer = request.app.get(CONSUMER)
    state = consumer.state if consumer is not None else None
    body["consumer"] = {
        "name": state.name if state else None,
        "running": bool(state and state.running),
        "applied_since_start": state.applied if state else 0,
        "skipped_since_start": state.skipped if state else 0,
        "claimed_since_start": state.claimed if state else 0,
        "owned_shards": sorted(state.owned) if state else [],
        "last_error": state.last_error if state else None,
    }
    body["ok"] = bool(state and state.running and state.last_error is None)
    return ok(status=body)


@api.get(
    "/api/v1/reports/metrics",
    query=WindowQuery,
    summary="Current metrics over a window",
    responses=LONG_WINDOW_429,
)
async def metrics(request: web.Request) -> web.Response:
    q = parse_query(request, WindowQuery)
    await _long_window(request, math.ceil(q.window / 60))
    at = now_ms()
    regions = request.app[SETTINGS].region_list()
    body = await queries.metrics(request.app[REDIS], request.app[KEYS], q.window, at, regions)
    return ok(window_s=q.window, generated_at=iso_ms(at), metrics=body)


@api.get(
    "/api/v1/reports/timeseries",
    query=TimeseriesQuery,
    summary="One metric, one point a minute",
    responses=LONG_WINDOW_429,
)
async def timeseries(request: web.Request) -> web.Response:
    q = parse_query(request, TimeseriesQuery)
    await _long_window(request, q.minutes)
    at = now_ms()
    points = await queries.timeseries(
        request.app[REDIS], request.app[KEYS], q.metric, q.minutes, at
    )
    return ok(metric=q.metric, minutes=q.minutes, generated_at=iso_ms(at), points=points)


@api.get(
    "/api/v1/reports/dashboard",
    query=WindowQuery,
    summary="Rollout metrics dashboard",
    responses=LONG_WINDOW_429,
)
async def dashboard(request: web.Request) -> web.Response:
    q = parse_query(request, WindowQuery)
    await _long_window(request, math.ceil(q.window / 60))
    app = request.app
    doc = await queries.dashboard(app[REDIS], app[KEYS], app[SETTINGS], q.window, now_ms())
    return ok(**doc)


@api.get(
    "/api/v1/reports/export",
    query=ExportQuery,
    summary="Per-minute series as CSV or JSON",
    media=("application/json", "text/csv"),
    responses=LONG_WINDOW_429,
)
async def export(request: web.Request) -> web.Response:
    q = parse_query(request, ExportQuery)
    await _long_window(request, q.minutes)
    at = now_ms()
    rows = await queries.series_rows(request.app[REDIS], request.app[KEYS], q.minutes, at)
    if q.format == "csv":
        return web.Response(
            text=queries.export_csv(rows),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="tooloo-reports.csv"'},
        )
    return ok(
        minutes=q.minutes,
        generated_at=iso_ms(at),
        columns=list(queries.EXPORT_COLUMNS),
        rows=rows,
    )


@api.get(
    "/api/v1/reports/comprehensive",
    query=ComprehensiveQuery,
    summary="The original fleet's comprehensive report, over this fleet's metrics and totals",
    responses=LONG_WINDOW_429,
)
async def comprehensive_report(request: web.Request) -> web.Response:
    q = parse_query(request, ComprehensiveQuery)
    await _long_window(request, math.ceil(q.window / 60))
    redis, keys = request.app[REDIS], request.app[KEYS]
    at = now_ms()
    m = await queries.metrics(redis, keys, q.window, at)
    totals = await queries.fleet_totals(redis, keys)
    fast_lane = await queries.fast_lane_enabled(redis, keys)
    doc = comprehensive.build(
        m, totals, window_s=q.window, generated=iso_ms(at), fast_lane=fast_lane, details=q.details
    )
    return ok(**doc)


@api.get(
    "/api/v1/reports/alerts/deliveries",
    query=DeliveriesQuery,
    summary="Alert webhooks: the configured targets, the last level sent, every delivery attempt",
)
async def alert_deliveries(request: web.Request) -> web.Response:
    q = parse_query(request, DeliveriesQuery)
    app = request.app
    settings = app[ALERT_SETTINGS]
    redis, keys = app[REDIS], app[KEYS]
    state = text_map(await redis.hgetall(keys.reports_alert_state))
    sent = int(state["sent_ms"]) if state.get("sent_ms") else None
    attempts = await alert_sender.deliveries(redis, keys, q.limit)
    return ok(
        webhooks=len(settings.urls()),
        targets=[url_label(u) for u in settings.urls()],
        repeat_s=settings.repeat_s,
        state={
            "level": state.get("level"),
            "reason": state.get("reason"),
            "sent_at": iso_ms(sent) if sent else None,
        },
        deliveries=attempts,
        count=len(attempts),
    )
