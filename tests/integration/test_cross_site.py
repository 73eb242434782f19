"""Cross-site control on every service (shared/middlewares.py `edge_middleware`), against real
processes: a page on another site cannot change anything on any service (a "simple" text/plain
POST, the kind a browser sends without a preflight), nor read anything under a foreign `Host`
(DNS rebinding); curl and the services, which send no `Origin`, work as before, bodies without a
Content-Type included; an origin listed in TOOLOO_CORS_ORIGINS works; the gateway's forwarded
calls and its own origin (the Control Room's) work.

The orchestrator runs in observe mode (it supervises nothing here), so its actions answer 409
once they get through the edge: a 403 before that shows the edge refused them.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from shared.keys import Keys

pytestmark = pytest.mark.integration

EVIL = "http://evil.example"
OPS = "http://ops.example:8080"  # listed in TOOLOO_CORS_ORIGINS below


@pytest.fixture
def edge_fleet(fleet: Fleet) -> Iterator[Fleet]:
    fleet.extra_env.update(TOOLOO_CORS_ORIGINS=OPS, ORCHESTRATOR_MANAGE="false")
    fleet.start("training", "meta", "reports")
    fleet.start("coach", "web", "orchestrator")
    yield fleet


def raw(
    fleet: Fleet,
    service: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request exactly as given: no Content-Type unless listed, the Host header replaceable
    (http.client adds neither by itself when told not to)."""
    conn = http.client.HTTPConnection("127.0.0.1", fleet.ports[service], timeout=15)
    try:
        hdrs = {"Host": f"127.0.0.1:{fleet.ports[service]}", **(headers or {})}
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in hdrs.items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


# (service, path, body): one state-changing call per service; reports has none, so any POST.
CALLS = [
    ("training", "/api/v1/learners", b'{"id": "xs-learner"}'),
    ("meta", "/api/v4/meta-learning/pause", b"{}"),
    ("coach", "/api/v1/auto-coach/settings", b'{"batchSize": 7}'),
    ("reports", "/api/v1/reports/metrics", b"{}"),
    ("orchestrator", "/api/v1/system/services/training/stop", b"{}"),
    ("web", "/api/v1/system/scale", b'{"learners": 7}'),
    ("web", "/api/v1/learners", b'{"id": "xs-learner"}'),  # through the gateway to training
]


def _nothing_changed(fleet: Fleet, prefix: str) -> None:
    keys = Keys(prefix)
    with sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True) as r:
        assert not r.exists(keys.meta_paused) or r.get(keys.meta_paused) in (None, "0")
    assert fleet["training"].get("/api/v1/learners/xs-learner")[0] == 404
    assert fleet["coach"].get("/api/v1/auto-coach/settings")[1]["settings"]["batchSize"] != 7
    assert fleet["web"].get("/api/v1/system/scale")[1]["scale"]["target"] is None


def test_a_cross_site_simple_post_is_refused_by_every_service(
    edge_fleet: Fleet, prefix: str
) -> None:
    plain = {"Content-Type": "text/plain"}
    for service, path, body in CALLS:
        for headers in (
            {"Origin": EVIL},
            {"Origin": "null"},  # a sandboxed frame or a file:// page
            {"Origin": f"http://127.0.0.1:{edge_fleet.ports['web'] + 1}"},  # another local app
            {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
        ):
            status, answer = raw(edge_fleet, service, "POST", path, body, {**plain, **headers})
            assert status == 403, (service, path, headers, status, answer)
            assert answer["ok"] is False and answer["error"]["code"] == "cors_forbidden"
    _nothing_changed(edge_fleet, prefix)


def test_without_an_origin_the_same_calls_work_with_any_content_type_or_none(
    edge_fleet: Fleet,
) -> None:
    expected = {"training": 201, "meta": 200, "coach": 200, "reports": 405, "orchestrator": 409}
    for service, path, body in CALLS[:5]:
        # No Content-Type at all: curl -d, or a rollback script's bare POST.
        status, answer = raw(edge_fleet, service, "POST", path, body)
        assert status == expected[service], (service, status, answer)
    status, answer = raw(
        edge_fleet, "web", "POST", "/api/v1/system/scale", b'{"learners": 0}', {"X-A": "b"}
    )
    assert status == 200, answer
    # text/plain from a script is fine too.
    status, _ = raw(
        edge_fleet, "meta", "POST", "/api/v4/meta-learning/resume", b"{}", {"Content-Type": "x/y"}
    )
    assert status == 200


def test_a_foreign_host_is_refused_even_on_a_get(edge_fleet: Fleet) -> None:
    for service in ("training", "meta", "coach", "reports", "orchestrator", "web"):
        port = edge_fleet.ports[service]
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.2:{port}"):
            status, answer = raw(edge_fleet, service, "GET", "/health", headers={"Host": host})
            assert status == 421, (service, host, status)
            assert answer["error"]["code"] == "host_not_allowed"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            assert raw(edge_fleet, service, "GET", "/health", headers={"Host": host})[0] == 200


def test_listed_and_own_origins_work(edge_fleet: Fleet, prefix: str) -> None:
    web_origin = f"http://127.0.0.1:{edge_fleet.ports['web']}"
    json_type = {"Content-Type": "application/json"}
    # The Control Room (served by web) calling the gateway, which forwards to training.
    status, answer = raw(
        edge_fleet,
        "web",
        "POST",
        "/api/v1/learners",
        b'{"id": "xs-own"}',
        {**json_type, "Origin": web_origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert status == 201, answer
    # An operator's page listed in TOOLOO_CORS_ORIGINS, directly and through the gateway; it is
    # on another site, and believed because it is listed.
    for service in ("meta", "web"):
        status, answer = raw(
            edge_fleet,
            service,
            "POST",
            "/api/v4/meta-learning/pause",
            b"{}",
            {**json_type, "Origin": OPS, "Sec-Fetch-Site": "cross-site"},
        )
        assert status == 200, (service, answer)
    assert raw(edge_fleet, "meta", "POST", "/api/v4/meta-learning/resume", b"{}")[0] == 200
    # Its preflight at the gateway is answered as before.
    status, _ = raw(
        edge_fleet,
        "web",
        "OPTIONS",
        "/api/v1/system/scale",
        headers={"Origin": OPS, "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
