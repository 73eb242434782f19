"""JSON responses encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=_OPTS)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(data), status=status, content_type="application/json", headers=headers
    )


def ok(*, http_status: int = 200, **fields: Any) -> web.Response:
    """The success envelope `{"ok": true, **fields}`; the HTTP status is keyword-only and named
    apart, so a payload may have a field called `status`."""
    return json_response({"ok": True, **fields}, status=http_status)
