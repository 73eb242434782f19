"""CORS for the gateway: which browser pages may read the API's answers.

The allow-list is the fleet's own (shared/middlewares.py `EdgePolicy`): every service's loopback
origin (the Control Room is served at `http://127.0.0.1:<WEB_PORT>` and
`http://localhost:<WEB_PORT>`), the `*_URL` origins, plus `TOOLOO_CORS_ORIGINS` (comma-separated,
exact `scheme://host[:port]`). For a request with an `Origin` header:

- allowed origin: the answer carries `Access-Control-Allow-Origin: <origin>` (and `Vary: Origin`);
  a preflight (`OPTIONS` with `Access-Control-Request-Method`) answers 204 with the methods and
  headers the API takes (`Authorization`, `Content-Type`, `X-Request-ID`);
- any other origin: no `Access-Control-Allow-Origin`, so the browser withholds the answer, and
  its preflight is refused (403 `cors_forbidden`). Its unsafe requests that need no preflight (a
  "simple" cross-site POST) are refused by the shared edge middleware every service runs, just
  inside this one (so the refusal gets this layer's `Vary: Origin`); this layer does not check
  twice.

Requests without `Origin` (curl, Locust, services) are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.middlewares import EdgePolicy
from shared.responses import json_response
from shared.settings import FleetSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSE_HEADERS = "X-Request-ID, Retry-After, X-Upstream-Service"
PREFLIGHT_MAX_AGE_S = 600


def allowed_origins(settings: FleetSettings) -> frozenset[str]:
    return EdgePolicy.of(settings).origins


def _forbidden(origin: str) -> web.Response:
    return json_response(
        {
            "ok": False,
            "error": {
                "code": "cors_forbidden",
                "message": f"Origin {origin[:200]!r} may not call this API (TOOLOO_CORS_ORIGINS)",
                "details": None,
            },
        },
        status=403,
        headers={"Vary": "Origin"},
    )


def cors_middleware(allowed: frozenset[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        permitted = origin in allowed
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if not permitted and preflight:
            return _forbidden(origin)
        if preflight:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        if response.prepared:  # a stream (server-sent events) has sent its headers already
            return response
        response.headers.add("Vary", "Origin")
        if permitted:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response

    return middleware
