"""Security of the fleet as an operator runs it (`honcho start`, the orchestrator managing every
service) with `TOOLOO_API_TOKEN` set: the fleet still arms (pre-arm and the coach send the token),
no mutating endpoint of any service accepts a call without the token or with a wrong one, reads
work without it, the gateway forwards it, boost / hyper-boost / scale answer 429 with
Retry-After beyond their limits, and neither token appears in any log line. Plus: binding beyond
loopback without a token refuses to start, and the gateway's CORS admits only its own origin.

One honcho fleet for the module (starting it is the slow part); the log check runs last, after
every other test made its calls.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.fleet import Fleet
from harness.honcho import ArmedFleetFactory, HonchoFleet
from harness.http import http_json
from harness.processes import ROOT
from shared.fleet import NAMES, SUPERVISED

pytestmark = pytest.mark.integration

TOKEN = f"tok-{secrets.token_hex(16)}"
WRONG = f"wrong-{secrets.token_hex(16)}"
SERVICES = list(NAMES)
MUTATING = ("post", "delete")
STREAMS = {"/api/v1/system/events"}  # server-sent events: never ends, read elsewhere


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture(scope="module")
def secured(honcho_fleet: ArmedFleetFactory) -> Iterator[HonchoFleet]:
    # Loopback is a trusted proxy here (as behind a local reverse proxy), so the rate-limit test
    # can play several clients with X-Forwarded-For; by default no proxy is believed
    # (tests/integration/test_rate_limits.py).
    env = {
        "TOOLOO_API_TOKEN": TOKEN,
        "TOOLOO_LOG_LEVEL": "debug",
        "TOOLOO_TRUSTED_PROXIES": "127.0.0.1",
    }
    with honcho_fleet(env) as fleet:
        yield fleet


def call(
    fleet: HonchoFleet, service: str, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, response headers); urllib, so nothing is reused between calls."""
    import urllib.error
    import urllib.request

    data = None if body is None else __import__("json").dumps(body).encode()
    req = urllib.request.Request(fleet.url(service) + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in headers.items():
        req.add_header(key.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, __import__("json").loads(raw) if raw else None, hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def _operations(fleet: HonchoFleet, service: str) -> list[tuple[str, str]]:
    status, doc = fleet.get(service, "/openapi.json")
    assert status == 200
    ops = []
    for template, methods in doc["paths"].items():
        # Path parameters name nothing that exists: the call must be refused before any lookup.
        path = re.sub(r"\{([^}]+)\}", lambda m: "1" if m[1] == "n" else "sec-nobody", template)
        for method, op in methods.items():
            # Required query parameters get a valid value (the first of an enum).
            required = [
                f"{q['name']}={q['schema'].get('enum', ['1'])[0]}"
                for q in op.get("parameters", [])
                if q["in"] == "query" and q["required"]
            ]
            if template not in STREAMS:
                ops.append((method, path + ("?" + "&".join(required) if required else "")))
    return ops


def test_the_fleet_arms_with_a_token(secured: HonchoFleet) -> None:
    status = secured.status()
    assert status and status["armed"] and status["mode"] == "manage"
    assert all(step["ok"] for step in status["prearm"]["steps"])
    # The coach's calls to training carry the token: rounds get committed.
    secured.wait_for(lambda: secured.rounds_committed() > 0, 60, "rounds committed")
    coach = secured.get("coach", "/api/v1/auto-coach/status")[1]["status"]
    assert coach["active"] is True and coach["outage"]["training"] is None


@pytest.mark.parametrize("service", SERVICES)
def test_no_mutation_without_the_token_or_with_a_wrong_one(
    secured: HonchoFleet, service: str
) -> None:
    mutating = [(m, p) for m, p in _operations(secured, service) if m in MUTATING]
    if service != "reports":  # reports has no mutating endpoint
        assert mutating, service
    for method, path in mutating:
        for headers in ({}, _auth(WRONG), {"Authorization": TOKEN}, _auth(TOKEN + "x")):
            status, body, hdrs = call(secured, service, method.upper(), path, {}, **headers)
            assert status == 401, (service, method, path, headers, status, body)
            assert body["error"]["code"] == "unauthorized"
            assert hdrs.get("WWW-Authenticate") == "Bearer"


@pytest.mark.parametrize("service", SERVICES)
def test_reads_work_without_the_token(secured: HonchoFleet, service: str) -> None:
    reads = [p for m, p in _operations(secured, service) if m == "get"]
    assert reads
    for path in reads:
        status, body, _ = call(secured, service, "GET", path)
        # 404 for the made-up path parameters; never 401, never a server error.
        assert status in (200, 404), (service, path, status, body)


def test_the_gateway_forwards_the_token(secured: HonchoFleet) -> None:
    body = {"learner": "sec-gateway"}
    status, answer, _ = call(secured, "web", "POST", "/api/v1/training/start", body)
    assert status == 401
    status, answer, hdrs = call(
        secured, "web", "POST", "/api/v1/training/start", body, **_auth(TOKEN)
    )
    # Training itself demands the token: a 200 through the gateway means it was forwarded.
    assert status == 200, answer
    assert hdrs.get("X-Upstream-Service") == "training"
    status, _, _ = call(secured, "web", "POST", "/api/v1/training/round", body, **_auth(TOKEN))
    assert status == 200


def _until_limited(
    fleet: HonchoFleet, service: str, path: str, body: dict, limit: int, client: str
) -> tuple[int, dict, dict]:
    """Call until the first 429 (at most two windows' worth, so a window boundary in the middle
    cannot hide the limit); returns (calls made, body, headers) of the 429."""
    for n in range(1, 2 * limit + 2):
        status, answer, hdrs = call(
            fleet, service, "POST", path, body, X_Forwarded_For=client, **_auth(TOKEN)
        )
        assert status != 401
        if status == 429:
            return n, answer, hdrs
    raise AssertionError(f"no 429 from {path} after {2 * limit + 1} calls")


@pytest.mark.parametrize(
    ("service", "path", "body", "limit"),
    [
        # An unknown learner: counted against the limit, then 404, so no rounds are run.
        ("coach", "/api/v1/auto-coach/boost", {"learner": "sec-nobody"}, 60),
        ("coach", "/api/v1/auto-coach/hyper-boost", {"learner": "sec-nobody"}, 20),
        ("web", "/api/v1/auto-coach/boost", {"learner": "sec-nobody"}, 60),
        ("web", "/api/v1/system/scale", {"learners": 0, "hold": True}, 30),
    ],
)
def test_rate_limits_answer_429_with_retry_after(
    secured: HonchoFleet, service: str, path: str, body: dict, limit: int
) -> None:
    client = f"198.51.100.{secrets.randbelow(250) + 1}"  # a client of its own (TEST-NET-2)
    calls, answer, hdrs = _until_limited(secured, service, path, body, limit, client)
    assert calls > limit
    assert answer["ok"] is False and answer["error"]["code"] == "rate_limited"
    assert 1 <= int(hdrs["Retry-After"]) <= 10
    # Per client: another client is not limited by this one's calls.
    status, _, _ = call(
        secured, service, "POST", path, body, X_Forwarded_For="198.51.100.251", **_auth(TOKEN)
    )
    assert status != 429


def test_binding_beyond_loopback_without_a_token_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
    env.update(TOOLOO_HOST="0.0.0.0", REDIS_URL="redis://127.0.0.1:1/0")
    done = subprocess.run(
        [sys.executable, "-m", "services.reports"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "refusing to bind to 0.0.0.0" in done.stderr and "TOOLOO_API_TOKEN" in done.stderr


@pytest.fixture
def web_only(fleet: Fleet) -> Fleet:
    fleet.start("web", env={"TOOLOO_CORS_ORIGINS": "http://ops.example:8080"})
    return fleet


def test_cors_admits_only_the_gateways_own_origin(web_only: Fleet) -> None:
    web = web_only["web"]
    own = [
        f"http://127.0.0.1:{web.port}",
        f"http://localhost:{web.port}",
        "http://ops.example:8080",
    ]
    preflight = {"Access-Control-Request-Method": "POST"}
    for origin in own:
        status, body = web.get("/api/v1/system/scale", headers={"Origin": origin})
        assert status == 200
        # http_json hides headers; the preflight is checked through raw urllib below.
    for origin in ["http://evil.example", f"http://127.0.0.1:{web.port + 1}", "null"]:
        status, body = http_json(
            "OPTIONS", web.url + "/api/v1/system/scale", headers={"Origin": origin, **preflight}
        )
        assert status == 403 and body["error"]["code"] == "cors_forbidden"
        # A "simple" cross-site POST (no preflight) is refused too; nothing changes.
        status, body = web.post("/api/v1/system/scale", {"learners": 7}, headers={"Origin": origin})
        assert status == 403
    assert web.get("/api/v1/system/scale")[1]["scale"]["target"] is None
    import urllib.request

    def headers_of(method: str, origin: str, extra: dict[str, str]) -> tuple[int, Any]:
        req = urllib.request.Request(web.url + "/api/v1/system/scale", method=method)
        req.add_header("Origin", origin)
        for key, value in extra.items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers

    for origin in own:
        status, hdrs = headers_of("OPTIONS", origin, preflight)
        assert status == 204 and hdrs["Access-Control-Allow-Origin"] == origin
        assert "Authorization" in hdrs["Access-Control-Allow-Headers"]
        status, hdrs = headers_of("GET", origin, {})
        assert status == 200 and hdrs["Access-Control-Allow-Origin"] == origin
    status, hdrs = headers_of("GET", "http://evil.example", {})
    assert status == 200 and "Access-Control-Allow-Origin" not in hdrs
    # Without an Origin (curl, Locust, services) nothing changes.
    assert web.post("/api/v1/system/scale", {"learners": 0})[0] == 200


def test_no_token_in_any_log_line(secured: HonchoFleet) -> None:
    """Last: every call above (and these) sent the right or a wrong token; none may be logged,
    nor kept in Redis' files."""
    import socket

    for token in (TOKEN, WRONG):
        call(secured, "web", "POST", "/api/v1/training/round", {"bad": 1}, **_auth(token))
        call(secured, "coach", "POST", "/api/v1/auto-coach/boost", {"rounds": 0}, **_auth(token))
        call(secured, "training", "DELETE", "/api/v1/learners/sec-nobody", **_auth(token))
        # A malformed header line: aiohttp's own error log quotes the offending line.
        with socket.create_connection(("127.0.0.1", secured.ports["training"])) as sock:
            sock.sendall(
                f"POST /api/v1/training/round HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\x01\r\nContent-Length: 2\r\n\r\n{{}}".encode()
            )
            sock.recv(1024)
    secured.stop(timeout_s=30)  # every process flushed and gone
    logs = secured.log_path.read_text(errors="replace")
    # The services' own lines are in it (the orchestrator relays its children's output).
    assert logs.count('"event":"service_started"') >= len(SERVICES) - 1, logs[-2000:]
    # Each under its own service's name, not only honcho's `orchestrator.1`.
    for name in SUPERVISED:
        prefix = f"orchestrator.1 | {name} | "
        started = [line for line in logs.splitlines() if prefix in line]
        assert any('"event":"service_started"' in line for line in started), name
    assert TOKEN not in logs and WRONG not in logs
    for path in Path(secured.var_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and WRONG.encode() not in data, path
