"""The gateway: which service answers which path prefix (the fleet table's `proxy_prefixes`,
shared/fleet.py), and the forwarder.

The table is matched longest prefix first, on whole path segments (`/api/v1/training` matches
`/api/v1/training/round` but not `/api/v1/trainingX`). Web's own `/api/v1/system/*` routes are
registered on the router before the catch-all proxy route, so they always win (a catch-all
registered first would shadow every later route).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NoReturn

import aiohttp
from aiohttp import web
from yarl import URL

from services.web.learner_routing import ROUTED_SERVICE, LearnerRouter, learner_of
from shared.errors import NotFound, UpstreamError, UpstreamTimeout
from shared.fleet import SERVICES
from shared.middlewares import REQUEST_ID, REQUEST_ID_HEADER
from shared.rate_limit import gateway_hop_headers
from shared.settings import FleetSettings

# (prefix, service), from the fleet table. Order does not matter: `ProxyTable` sorts longest first.
ROUTES: tuple[tuple[str, str], ...] = tuple(
    (prefix, svc.name) for svc in SERVICES for prefix in svc.proxy_prefixes
)

# Request headers worth passing on; everything else (hop-by-hop, Host, cookies) stays here.
FORWARD_REQUEST_HEADERS = ("Content-Type", "Accept", "Authorization")
# Response headers worth passing back besides Content-Type.
FORWARD_RESPONSE_HEADERS = ("Content-Disposition", "Allow", "Retry-After", "WWW-Authenticate")
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
UPSTREAM_HEADER = "X-Upstream-Service"
# The training replica a learner's request was sent to (absent: the shared port, any replica).
REPLICA_HEADER = "X-Upstream-Replica"
# How long a refused connection is retried (a service restarting under the orchestrator).
CONNECT_RETRY_BUDGET_S = 1.5


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    prefix: str
    service: str

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")


class ProxyTable:
    def __init__(self, routes: tuple[tuple[str, str], ...] = ROUTES) -> None:
        self.routes = sorted(
            (ProxyRoute(p, s) for p, s in routes), key=lambda r: len(r.prefix), reverse=True
        )

    def match(self, path: str) -> ProxyRoute | None:
        return next((r for r in self.routes if r.matches(path)), None)

    def describe(self, settings: FleetSettings) -> list[dict[str, object]]:
        """The table as `GET /api/v1/system/routes` shows it, grouped by service."""
        by_service: dict[str, list[str]] = {}
        for route in self.routes:
            by_service.setdefault(route.service, []).append(route.prefix)
        return [
            {
                "name": service,
                "prefixes": prefixes,
                "route": {"type": "remote", "base": settings.url_of(service)},
            }
            for service, prefixes in by_service.items()
        ]


class Forwarder:
    """Forwards one request to the service owning its prefix over a pooled session."""

    def __init__(
        self,
        table: ProxyTable,
        settings: FleetSettings,
        session: aiohttp.ClientSession,
        router: LearnerRouter | None = None,
    ) -> None:
        self.table = table
        self.settings = settings
        self.session = session
        self.router = router

    async def forward(self, request: web.Request) -> web.Response:
        route = self.table.match(request.path)
        if route is None:
            raise NotFound(
                f"No service answers {request.path}",
                code="no_route",
                details={"path": request.path},
            )
        service = route.service
        body = await request.read()  # bounded by the app's client_max_size (413 beyond)
        headers = {h: request.headers[h] for h in FORWARD_REQUEST_HEADERS if h in request.headers}
        headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
        # The caller, for the per-client rate limits behind the gateway (the coach's boosts): the
        # client the gateway resolved (its peer, or what a TOOLOO_TRUSTED_PROXIES proxy said) in
        # X-Forwarded-For, with the hop secret the services check before believing it. What the
        # client sent in X-Forwarded-For is never passed on as is.
        headers.update(await gateway_hop_headers(request))
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout_s)
        if self.router is not None and service == ROUTED_SERVICE and self.router.replicas:
            learner = learner_of(request.path, request.query.get("learner"), body)
            if learner is not None:
                routed = await self._to_learners_replica(request, learner, body, headers, timeout)
                if routed is not None:
                    return routed
        # raw_path keeps the query string and the client's percent-encoding untouched.
        url = URL(self.settings.url_of(service) + request.raw_path, encoded=True)
        # A refused connection means the request never reached the service (it is restarting:
        # the orchestrator brings a killed service back in under a second), so retrying it is
        # safe for any method. Bounded by CONNECT_RETRY_BUDGET_S; anything else fails at once.
        deadline = asyncio.get_running_loop().time() + CONNECT_RETRY_BUDGET_S
        pause = 0.05
        while True:
            try:
                return await self._send(
                    request, service, url, body, headers, client_timeout=timeout
                )
            except aiohttp.ClientConnectorError:
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise_unavailable(service, request, "ClientConnectorError")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.4)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"{service} did not answer within {timeout.total}s",
                    details={"service": service, "path": request.path},
                    headers={UPSTREAM_HEADER: service},
                ) from None
            except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
                raise_unavailable(service, request, exc.__class__.__name__)

    async def _to_learners_replica(
        self,
        request: web.Request,
        learner: str,
        body: bytes,
        headers: dict[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> web.Response | None:
        """The learner's replica answers (its next choice when it refuses the connection: it is
        not there, so the request never reached it); None when none is left to try."""
        assert self.router is not None
        for replica, base in self.router.candidates(learner):  # bounded: ≤ 16 replicas
            url = URL(base + request.raw_path, encoded=True)
            try:
                response = await self._send(
                    request, ROUTED_SERVICE, url, body, headers, client_timeout=client_timeout
                )
            except aiohttp.ClientConnectorError:
                self.router.mark_down(replica)
                continue
            except TimeoutError:
                raise UpstreamTimeout(
                    f"{ROUTED_SERVICE} did not answer within {client_timeout.total}s",
                    details={"service": ROUTED_SERVICE, "path": request.path},
                    headers={UPSTREAM_HEADER: ROUTED_SERVICE},
                ) from None
            except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
                raise_unavailable(ROUTED_SERVICE, request, exc.__class__.__name__)
            response.headers[REPLICA_HEADER] = replica
            return response
        return None

    async def _send(
        self,
        request: web.Request,
        service: str,
        url: URL,
        body: bytes,
        headers: dict[str, str],
        *,
        client_timeout: aiohttp.ClientTimeout,
    ) -> web.Response:
        async with self.session.request(
            request.method,
            url,
            data=body or None,
            headers=headers,
            timeout=client_timeout,
            allow_redirects=False,
        ) as upstream:
            payload = await _read_bounded(upstream, service)
            out_headers = {
                h: upstream.headers[h] for h in FORWARD_RESPONSE_HEADERS if h in upstream.headers
            }
            out_headers[UPSTREAM_HEADER] = service
            return web.Response(
                status=upstream.status,
                body=payload,
                headers=out_headers,
                content_type=upstream.content_type or "application/json",
                charset=upstream.charset,
            )


def raise_unavailable(service: str, request: web.Request, reason: str) -> NoReturn:
    raise UpstreamError(
        f"{service} is unavailable ({reason})",
        details={"service": service, "path": request.path},
        headers={UPSTREAM_HEADER: service},
    )


async def _read_bounded(upstream: aiohttp.ClientResponse, service: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise UpstreamError(
                f"{service} answered more than {MAX_RESPONSE_BYTES} bytes",
                code="upstream_too_large",
                details={"service": service},
            )
        chunks.append(chunk)
    return b"".join(chunks)
