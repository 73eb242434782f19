"""Live fleet snapshots for the Control Room, streamed as server-sent events.

One snapshot gathers, concurrently and each with a short timeout: the orchestrator's process
table and status, the coach status, the default learner's meta status, the reports metrics
(window 60 s), every service's /health, and the scale state; the gates are evaluated from the
same metrics. A failed upstream becomes an `error` entry in the snapshot, never a dropped stream.

Snapshots are shared: however many Control Rooms are open, the fleet is polled at most once per
`max_age_s` (single flight under a lock), so the gateway's load on the fleet does not grow with
its viewers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from services.web import gate_inputs, rollout, system
from services.web import gates as gates_mod
from services.web.gate_store import GateStore
from shared import fleet
from shared.clock import now_ms
from shared.errors import ApiError, ServiceUnavailable
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.logging import get_logger
from shared.responses import dumps
from shared.settings import FleetSettings

log = get_logger(__name__)

UPSTREAM_TIMEOUT_S = 0.8
STREAM_INTERVAL_S = 1.0
# A stream ends after this long; EventSource reconnects by itself, so a forgotten tab cannot
# hold a handler forever.
STREAM_MAX_S = 3600.0
# A criterion the fleet cannot measure, as a snapshot carries it (`signed_off`: who stated what).
SIGNOFF_FIELDS = ("id", "name", "unit", "comparator", "threshold", "status", "signed_off")
# Every service but the gateway itself, whose snapshot this is.
HEALTH_SERVICES = tuple(name for name in fleet.NAMES if name != "web")


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return {"error": {"code": exc.code, "message": exc.message}}
    return {"error": {"code": "internal_error", "message": f"{exc.__class__.__name__}: {exc}"}}


async def fetch(
    client: ServiceClient, service: str, path: str, timeout_s: float = UPSTREAM_TIMEOUT_S
) -> dict[str, Any]:
    """GET a service; the JSON body, or {"error": {...}} for any failure (never raises)."""
    try:
        status, body = await client.get(service, path, timeout_s=timeout_s)
    except Exception as exc:
        return _error(exc)
    if status != 200 or not isinstance(body, dict):
        err = body.get("error") if isinstance(body, dict) else None
        code = err.get("code") if isinstance(err, dict) else "upstream_error"
        message = err.get("message") if isinstance(err, dict) else f"HTTP {status}"
        return {"error": {"code": code, "message": f"{service}: {message}", "status": status}}
    return body


async def _health(client: ServiceClient, service: str) -> dict[str, Any]:
    started = time.perf_counter()
    body = await fetch(client, service, fleet.service(service).health_path, timeout_s=0.5)
    if "error" in body:
        return {"up": False, "error": body["error"]["message"]}
    return {
        "up": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "uptime_s": body.get("uptime_s"),
    }


async def build_snapshot(
    client: ServiceClient,
    redis: Any,
    keys: Keys,
    table: gates_mod.GateTable,
    store: GateStore,
    settings: FleetSettings,
) -> dict[str, Any]:
    async def scale() -> dict[str, Any]:
        try:
            return await system.read_scale(redis, keys)
        except Exception as exc:
            return _error(exc)

    (processes, status, coach, meta, metrics, scale_state, *health) = await asyncio.gather(
        fetch(client, "orchestrator", "/api/v1/system/processes"),
        fetch(client, "orchestrator", "/api/v1/system/status"),
        fetch(client, "coach", "/api/v1/auto-coach/status"),
        fetch(client, "meta", "/api/v4/meta-learning/status?learner=default"),
        fetch(client, "reports", "/api/v1/reports/metrics?window=60"),
        scale(),
        *(_health(client, s) for s in HEALTH_SERVICES),
    )
    at = now_ms()
    checks = await gate_inputs.checks(
        client, redis, keys, settings, processes=processes, status=status, coach=coach, now_ms=at
    )
    merged, available, reason, _ = gates_mod.compose_metrics(
        metrics, processes, reports_error=metrics.get("error", {}).get("message"), checks=checks
    )
    evaluated = await rollout.evaluate(
        store, table, merged, available=available, reason=reason, now_ms=at, record=False
    )
    fleet: dict[str, Any] = {}
    if "error" in processes:
        fleet["error"] = processes["error"]
    else:
        fleet["processes"] = processes.get("processes", [])
        fleet["orchestrator"] = processes.get("orchestrator")
    if "error" not in status:
        fleet["phase"] = status.get("phase")
        fleet["armed"] = status.get("armed")
    fleet["health"] = dict(zip(HEALTH_SERVICES, health, strict=True))
    return {
        "ts": int(time.time() * 1000),
        "fleet": fleet,
        "coach": coach.get("status", coach) if "error" not in coach else coach,
        "meta": meta,
        "metrics": metrics.get("metrics", metrics) if "error" not in metrics else metrics,
        "throughput": {
            "rounds_per_min": gates_mod.lookup(metrics, "metrics.rounds_per_min"),
            "coach_rounds_per_min": gates_mod.lookup(
                metrics, "metrics.coach.throughput_rounds_per_min"
            ),
        },
        "scale": scale_state,
        "gates": {
            key: evaluated[key]
            for key in (
                "current_phase",
                "active_gate",
                "status",
                "metrics_available",
                "reason",
                "escalation_level",
                "verdicts",
                "gates_passed",
                "next_decision",
                "record_alerts",
            )
        }
        | {
            "gates": [
                {
                    k: g[k]
                    for k in ("id", "number", "name", "verdict", "decision", "reason", "record")
                }
                # The criteria a person signs off, and their sign-offs (the Control Room's form).
                | {
                    "signoffs": [
                        {k: c.get(k) for k in SIGNOFF_FIELDS}
                        for c in g["criteria"]
                        if c.get("metric") is None
                    ]
                }
                for g in evaluated["gates"]
            ]
        },
    }


class SnapshotCache:
    """At most one snapshot build per `max_age_s`, shared by every stream."""

    def __init__(
        self, build: Callable[[], Awaitable[dict[str, Any]]], max_age_s: float = 0.9
    ) -> None:
        self._build = build
        self._max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        # Set on shutdown: open streams end at once instead of holding the server's graceful
        # shutdown for its whole timeout (twice: wait, then cancel) with a handler that never
        # returns by itself.
        self._closing = asyncio.Event()
        # Streams open now (each holds a connection and a handler for up to STREAM_MAX_S).
        self.streams = 0

    def close(self) -> None:
        self._closing.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    async def wait_closing(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`; True as soon as the service is shutting down."""
        try:
            await asyncio.wait_for(self._closing.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._max_age_s:
                self._value = await self._build()
                self._at = time.monotonic()
            return self._value


async def stream(
    request: web.Request, cache: SnapshotCache, *, max_streams: int
) -> web.StreamResponse:
    """One snapshot per second until the client goes away (or STREAM_MAX_S passes). Beyond
    `max_streams` open streams the answer is 503: each holds a connection, a file descriptor and
    a handler for an hour, so their number is bounded, not the process's file limit."""
    if cache.streams >= max_streams:
        raise ServiceUnavailable(
            f"{max_streams} event streams are open already (TOOLOO_SSE_MAX_STREAMS)",
            code="too_many_streams",
            details={"max_streams": max_streams},
            headers={"Retry-After": "5"},
        )
    # Counted and released on this one event loop, with no await between check and increment:
    # two requests cannot both take the last slot.
    cache.streams += 1
    try:
        return await _stream(request, cache)
    finally:
        cache.streams -= 1


async def _stream(request: web.Request, cache: SnapshotCache) -> web.StreamResponse:
    deadline = time.monotonic() + STREAM_MAX_S
    async with sse_response(request) as resp:
        first = True
        while resp.is_connected() and time.monotonic() < deadline and not cache.closing:
            snapshot = await cache.get()
            try:
                await resp.send(
                    dumps(snapshot).decode(), event="snapshot", retry=2000 if first else None
                )
            except (ConnectionResetError, ConnectionError):
                break  # the client went away between the check and the write
            first = False
            if await cache.wait_closing(STREAM_INTERVAL_S):
                break
    return resp
