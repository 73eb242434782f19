"""CORS for the gateway: only its own origin may use the API from a browser.

Allowed origins: `http://127.0.0.1:<WEB_PORT>` and `http://localhost:<WEB_PORT>` (where the
Control Room is served), plus any listed in `TOOLOO_CORS_ORIGINS` (comma-separated, exact
`scheme://host[:port]`). For a request with an `Origin` header:

- allowed origin: the answer carries `Access-Control-Allow-Origin: <origin>` (and `Vary: Origin`);
  a preflight (`OPTIONS` with `Access-Control-Request-Method`) answers 204 with the methods and
  headers the API takes (`Authorization`, `Content-Type`, `X-Request-ID`);
- any other origin: no `Access-Control-Allow-Origin`, so the browser withholds the answer; its
  preflight is refused (403 `cors_forbidden`), and so is a mutating request that needs no
  preflight (a "simple" cross-site POST, which a browser sends without asking and would otherwise
  change state: cross-site request forgery while no token is set).

Requests without `Origin` (curl, Locust, services) are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.middlewares import MUTATING_METHODS
from shared.responses import json_response
from shared.settings import FleetSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSE_HEADERS = "X-Request-ID, Retry-After, X-Upstream-Service"
PREFLIGHT_MAX_AGE_S = 600


class CorsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    cors_origins: str = Field("", validation_alias="TOOLOO_CORS_ORIGINS")


def allowed_origins(settings: FleetSettings, extra: str | None = None) -> frozenset[str]:
    port = settings.port_of("web")
    configured = CorsSettings().cors_origins if extra is None else extra
    listed = {o.strip().rstrip("/") for o in configured.split(",") if o.strip()}
    return frozenset({f"http://127.0.0.1:{port}", f"http://localhost:{port}", *listed})


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
        if not permitted and (preflight or request.method in MUTATING_METHODS):
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
