"""Reports HTTP handlers: parse the query, call queries.* (and the dashboard builder), answer."""

from __future__ import annotations

from aiohttp import web

from services.reports import queries
from services.reports.app_keys import CONSUMER
from services.reports.dashboard import build_dashboard
from services.reports.models import ExportQuery, TimeseriesQuery, WindowQuery
from shared.app_keys import KEYS, REDIS, SETTINGS
from shared.clock import iso_ms, now_ms
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import parse_query

api = ApiRoutes("reports")


def register(app: web.Application) -> None:
    api.register(app)


@api.get("/api/v1/reports/status", summary="Consumer lag, events applied, last event time")
async def status(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await queries.status(request.app[REDIS], request.app[KEYS], settings.stream_lag_alert)
    consumer = request.app.get(CONSUMER)
    state = consumer.state if consumer is not None else None
    body["consumer"] = {
        "name": state.name if state else None,
        "running": bool(state and state.running),
        "applied_since_start": state.applied if state else 0,
        "skipped_since_start": state.skipped if state else 0,
        "last_error": state.last_error if state else None,
    }
    body["ok"] = bool(state and state.running and state.last_error is None)
    return ok(status=body)


@api.get("/api/v1/reports/metrics", query=WindowQuery, summary="Current metrics over a window")
async def metrics(request: web.Request) -> web.Response:
    q = parse_query(request, WindowQuery)
    at = now_ms()
    body = await queries.metrics(request.app[REDIS], request.app[KEYS], q.window, at)
    return ok(window_s=q.window, generated_at=iso_ms(at), metrics=body)


@api.get(
    "/api/v1/reports/timeseries", query=TimeseriesQuery, summary="One metric, one point a minute"
)
async def timeseries(request: web.Request) -> web.Response:
    q = parse_query(request, TimeseriesQuery)
    at = now_ms()
    points = await queries.timeseries(
        request.app[REDIS], request.app[KEYS], q.metric, q.minutes, at
    )
    return ok(metric=q.metric, minutes=q.minutes, generated_at=iso_ms(at), points=points)


@api.get("/api/v1/reports/dashboard", query=WindowQuery, summary="Rollout metrics dashboard")
async def dashboard(request: web.Request) -> web.Response:
    q = parse_query(request, WindowQuery)
    redis, keys = request.app[REDIS], request.app[KEYS]
    at = now_ms()
    m = await queries.metrics(redis, keys, q.window, at)
    fast_lane = await queries.fast_lane_enabled(redis, keys)
    streams = await queries.stream_status(redis, keys)
    memory = await queries.redis_memory(redis)
    doc = build_dashboard(
        m,
        q.window,
        at,
        fast_lane,
        lag_alerts=queries.lag_alerts(streams, request.app[SETTINGS].stream_lag_alert),
        memory_alerts=queries.memory_alerts(memory),
    )
    return ok(**doc)


@api.get("/api/v1/reports/export", query=ExportQuery, summary="Per-minute series as CSV or JSON")
async def export(request: web.Request) -> web.Response:
    q = parse_query(request, ExportQuery)
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
