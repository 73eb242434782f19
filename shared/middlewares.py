"""The middleware every service runs (`fleet_middleware`): request id + logging context, the edge
check (Host and cross-site origin), JSON errors, bearer-token auth for every unsafe call, request
metrics; the edge check and the errors also stand alone for the replicas' control port."""

from __future__ import annotations

import functools
import hmac
import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from yarl import URL

from shared.domain_errors import DomainError
from shared.errors import ApiError, Unauthorized, api_error_of, redis_error_of
from shared.fleet import SERVICES
from shared.logging import CURRENT_REQUEST, get_logger, redact_text
from shared.request_stats import RequestStats
from shared.responses import json_response
from shared.settings import FleetSettings

log = get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("request_id", str)
# An allow-list: every other method (POST, PUT, PATCH, DELETE, and any a router might one day
# take) is unsafe, needs the token when one is set and may not come from a foreign origin.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Request ids made here: a random per-process prefix and a counter. Unique across the fleet's
# processes (and their restarts) for log correlation, without uuid4's urandom call and UUID object
# on every request (3% of a training round's CPU).
_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


def request_id_of(request: web.Request) -> str:
    """The caller's X-Request-ID when it is short and printable (safe to log and echo), else a
    new one."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else new_request_id()


def _envelope(code: str, message: str, status: int, **headers: str) -> web.Response:
    body = {"ok": False, "error": {"code": code, "message": message, "details": None}}
    return json_response(body, status=status, headers=headers or None)


def host_name(host_header: str) -> str:
    """The name part of a `Host` header, lower-case: `[::1]:3000` -> `::1`, `a.b.:80` -> `a.b`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """Which origins may drive the fleet from a browser and which names it answers to.

    Origins: every service's `http://127.0.0.1:<port>` and `http://localhost:<port>` (and
    `[::1]`), the origin of every `*_URL` setting, plus `TOOLOO_CORS_ORIGINS`. Host names:
    loopback, the host of every `*_URL` setting (compose's service names), the bind host when it
    is not a wildcard, the hosts of the extra origins, plus `TOOLOO_ALLOWED_HOSTS` (`*`: any)."""

    origins: frozenset[str]
    hosts: frozenset[str]
    any_host: bool = False

    @classmethod
    def of(cls, settings: FleetSettings) -> EdgePolicy:
        origins: set[str] = set()
        hosts: set[str] = set(LOOPBACK_HOSTS)
        for svc in SERVICES:
            port = settings.port_of(svc.name)
            origins |= {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}
            explicit: str | None = getattr(settings, f"{svc.name}_url", None)
            if explicit:
                url = URL(explicit)
                if url.host:
                    hosts.add(url.host.lower())
                    origins.add(str(url.origin()))
        extra = {o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()}
        origins |= extra
        hosts |= {h.lower() for o in extra if (h := URL(o).host)}
        if settings.host not in WILDCARD_HOSTS:
            hosts.add(host_name(settings.host))
        listed = {host_name(h) for h in settings.allowed_hosts.split(",") if h.strip()}
        return cls(frozenset(origins), frozenset(hosts | listed - {"*"}), "*" in listed)

    def host_allowed(self, host_header: str | None) -> bool:
        # No Host at all is an HTTP/1.0 client, not a browser (which always sends one).
        return self.any_host or host_header is None or host_name(host_header) in self.hosts

    def cross_site(self, request: web.Request) -> bool:
        """An unsafe request a browser sent on behalf of a page the fleet does not trust: its
        `Origin` is not allowed, or it has none and the browser says it is cross-site. Without
        either header it is not a browser's (curl, scripts, the services) and goes through. An
        allowed origin is believed over `Sec-Fetch-Site`: a Control Room the operator listed in
        TOOLOO_CORS_ORIGINS may well be on another site."""
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin not in self.origins
        return request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site"


def edge_refusal(policy: EdgePolicy, request: web.Request) -> web.Response | None:
    """The refusal of a foreign `Host` (421) or of a cross-site unsafe call (403); None when the
    request may go on."""
    host = request.headers.get("Host")
    if not policy.host_allowed(host):
        return _envelope(
            "host_not_allowed",
            f"Host {str(host)[:200]!r} is not a name of this fleet (TOOLOO_ALLOWED_HOSTS)",
            421,
        )
    if request.method not in SAFE_METHODS and policy.cross_site(request):
        origin = request.headers.get("Origin") or "(cross-site)"
        return _envelope(
            "cors_forbidden",
            f"Origin {origin[:200]!r} may not call this API (TOOLOO_CORS_ORIGINS)",
            403,
        )
    return None


def edge_middleware(policy: EdgePolicy) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuses, before any handler runs: a `Host` that is not one of the fleet's names, on every
    method (DNS rebinding: a page on attacker.example rebound to 127.0.0.1 sends its own name),
    with 421; an unsafe request from a foreign page (cross-site request forgery: a "simple"
    text/plain POST needs no preflight, and the services parse any content type) with 403."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = edge_refusal(policy, request)  # a Response is falsy (an empty mapping)
        return refused if refused is not None else await handler(request)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return error_response(request, exc)


def error_response(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON error envelope for what a handler raised (an HTTP redirect is raised again)."""
    try:
        raise exc
    except ApiError as exc:
        return json_response(exc.body(), status=exc.status, headers=exc.headers)
    except DomainError as exc:
        api = api_error_of(exc)
        return json_response(api.body(), status=api.status, headers=api.headers)
    except RequestPayloadError as exc:
        # The body could not be read (a Content-Encoding it cannot decode, a broken chunked
        # stream): the client's fault, so a 400 envelope rather than an anonymous 500.
        body = {
            "ok": False,
            "error": {
                "code": "invalid_body",
                "message": "Request body could not be read",
                "details": str(exc)[:200],
            },
        }
        response = json_response(body, status=400)
        # The rest of the body is still on the connection and cannot be skipped reliably: close
        # it, and say so, so the client does not send its next request on a dead connection.
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status, "http_error")
        message = exc.reason
        details = None
        if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = sorted(exc.allowed_methods)
            message = f"Use {' or '.join(allowed)} for {request.path}"
            details = {"allowed": allowed}
        body = {"ok": False, "error": {"code": code, "message": message, "details": details}}
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return json_response(body, status=exc.status, headers=headers)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Redis restarting (refused, or still loading its append-only file): a 503 the caller
        # can retry, not an anonymous 500 (found by the chaos run: reports during a Redis crash).
        # redis-py's message names the server it tried; the scrub masks any credentials in it.
        reason = redact_text(str(exc))
        log.warning("redis_unavailable", path=request.path, error=reason)
        body = {
            "ok": False,
            "error": {
                "code": "redis_unavailable",
                "message": "Redis is not answering; try again shortly",
                "details": reason,
            },
        }
        return json_response(body, status=503, headers={"Retry-After": "1"})
    except Exception as exc:
        if known := redis_error_of(exc):  # Redis at maxmemory -> 503, a script's refusal -> 500
            return json_response(known.body(), status=known.status, headers=known.headers)
        log.exception("unhandled_error", path=request.path, method=request.method)
        body = {
            "ok": False,
            "error": {
                "code": "internal_error",
                "message": "Internal server error",
                "details": None,
            },
        }
        return json_response(body, status=500)


def fleet_middleware(
    metrics: RequestMetrics,
    policy: EdgePolicy,
    token: str | None,
    *,
    recycle_every: int = 0,
    around_edge: Callable[..., Awaitable[web.StreamResponse]] | None = None,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every service's per-request work as one middleware: request metrics, the request id
    (the caller's X-Request-ID when short and printable, else a new one; echoed), the edge check
    (`edge_middleware`), bearer-token auth for every unsafe call when a token is set, JSON errors
    (`error_response`) and the connection recycling of replicas. One call and no per-request
    handler wrapping instead of a chain of five or six middlewares, which on a training round
    cost more than the body's validation. `around_edge` (web's CORS) runs inside the metrics and
    the request id and around the rest, so the edge's, auth's and errors' answers carry its
    headers.

    Recycling (`recycle_every` > 0, replicas on a shared socket): a kept-alive connection is
    closed after that many answers on average (each answer with probability 1/n: no state per
    connection). Replicas sharing a listening socket each keep the connections they accepted,
    and a client's pool is placed once, at connect time, often all on one replica; a client that
    reconnects now and then is placed again, and an idle replica tends to accept first."""
    expected = f"Bearer {token}".encode() if token else None
    chance = 1.0 / recycle_every if recycle_every else 0.0
    draw = random.random
    record = metrics.recorder()

    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = edge_refusal(policy, request)
        if refused is not None:
            return refused
        try:
            if expected is not None and request.method not in SAFE_METHODS:
                given = request.headers.get("Authorization", "").encode()
                # Constant-time compare, so the token cannot be guessed byte by byte.
                if not hmac.compare_digest(given, expected):
                    raise Unauthorized(
                        "This call changes state and needs Authorization: Bearer <token>",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
            return await handler(request)
        except Exception as exc:
            return error_response(request, exc)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        request[REQUEST_ID] = request_id = request_id_of(request)
        context = CURRENT_REQUEST.set((request_id, request))
        try:
            if around_edge is None:
                response = await guarded(request, handler)
            else:
                response = await around_edge(request, functools.partial(guarded, handler=handler))
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            if chance and not response.prepared and draw() < chance:
                response.force_close()  # a stream already sent keeps its own
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            CURRENT_REQUEST.reset(context)
            record(request, status, time.perf_counter() - started)

    return middleware


class RequestMetrics:
    """Prometheus request counters and latency histograms, per route, in the app's own registry."""

    def __init__(self, service: str, stats: RequestStats) -> None:
        self.registry = CollectorRegistry()
        self.stats = stats
        self.requests = Counter(
            "tooloo_http_requests",
            "HTTP requests handled",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tooloo_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.service = service

    def recorder(self) -> Callable[[web.Request, int, float], None]:
        """Records one answered request (its status, its time in seconds)."""
        # The labelled children, looked up once per (method, route[, status]) rather than through
        # `labels()` (a lock and tuple building) on every request. Bounded: routes are the app's
        # registered resources (or "unmatched"), methods and statuses a small set.
        latency: dict[tuple[str, str], Any] = {}
        requests: dict[tuple[str, str, int], Any] = {}

        def record(request: web.Request, status: int, elapsed: float) -> None:
            route = _route_name(request)
            method = request.method
            hist = latency.get((method, route))
            if hist is None:
                hist = latency[(method, route)] = self.latency.labels(self.service, method, route)
            hist.observe(elapsed)
            counter = requests.get((method, route, status))
            if counter is None:
                counter = requests[(method, route, status)] = self.requests.labels(
                    self.service, method, route, str(status)
                )
            counter.inc()
            self.stats.record(status, request.path, route, elapsed * 1000.0)

        return record

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        record = self.recorder()

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                record(request, status, time.perf_counter() - started)

        return middleware
