"""Blocking JSON-over-HTTP calls against a service, for harness code that runs outside an event
loop (tests, fleet control, benchmarks' set-up)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 10.0,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON or raw text) of one request. Raises OSError (`urllib.error.URLError`
    is one) when nothing answers: a test must not read "unreachable" as a status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def probe_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 10.0,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """`http_json`, but status 0 (and None) when nothing answers: for polls, where "not up yet"
    is an answer rather than a failure."""
    try:
        return http_json(method, url, body, timeout=timeout, token=token, headers=headers)
    except OSError:
        return 0, None
