"""Service-to-service HTTP: one pooled aiohttp session per service, a timeout on every call,
the request id and the API token forwarded, failures turned into UpstreamError."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from shared.errors import UpstreamError, UpstreamTimeout
from shared.logging import current_request_id
from shared.settings import FleetSettings

# The methods the services serve without the token (auth covers every other one).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ServiceClient:
    def __init__(self, settings: FleetSettings, *, limit: int = 100) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._limit = limit

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30),
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                timeout=aiohttp.ClientTimeout(total=self.settings.http_timeout_s),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ServiceClient.start() was not awaited")
        return self._session

    def _headers(self, method: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        request_id = current_request_id()
        if request_id:
            headers["X-Request-ID"] = str(request_id)
        token = self.settings.token()
        # Only where the callee asks for it: reads (health probes above all, every 0.5 s) do not
        # hand the token to whatever answers on the port (security review 1.2).
        if token and method.upper() not in SAFE_METHODS:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        headers: dict[str, str] | None = None,
        base_url: str | None = None,
    ) -> tuple[int, Any]:
        """Call `service` and return (status, decoded JSON body or None).

        Raises UpstreamTimeout when no answer came within the timeout, UpstreamError when the
        service could not be reached. HTTP error statuses are returned, not raised: the caller
        decides what a 409 from training means.
        """
        # base_url: one process of `service` rather than its port (a replica's control port).
        url = f"{base_url or self.settings.url_of(service)}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.settings.http_timeout_s)
        data = orjson.dumps(json) if json is not None else None
        hdrs = self._headers(method, headers)
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, url, data=data, params=params, timeout=timeout, headers=hdrs
            ) as resp:
                raw = await resp.read()
                body: Any = None
                if raw:
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        body = {"raw": raw[:500].decode(errors="replace")}
                return resp.status, body
        except TimeoutError:
            raise UpstreamTimeout(
                f"{service} did not answer within {timeout.total}s",
                details={"service": service, "path": path},
            ) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(
                f"{service} is unreachable: {exc.__class__.__name__}",
                details={"service": service, "path": path, "reason": str(exc)},
            ) from None

    async def get(self, service: str, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request(service, "GET", path, **kw)

    async def post(self, service: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request(
            service, "POST", path, json=json if json is not None else {}, **kw
        )
