"""Rate limits against real processes (shared/rate_limit.py): a client on loopback cannot buy a
fresh budget by rotating X-Forwarded-For; the gateway passes the real client through (believed
by the services only with its hop secret); every newly limited endpoint answers 429 with the
envelope past its limit; the gateway caps its concurrent event streams."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from harness.fleet import Fleet
from harness.http import http_json

pytestmark = pytest.mark.integration


def _post(fleet: Fleet, service: str, path: str, body: Any, xff: str | None = None) -> tuple:
    headers = {"X-Forwarded-For": xff} if xff else {}
    return http_json("POST", fleet.url(service) + path, body, headers=headers)


def _rotating(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"198.51.{i // 250}.{i % 250 + 1}"


@pytest.fixture
def coach_fleet(fleet: Fleet) -> Fleet:
    # The gateway believes its caller's X-Forwarded-For (as behind a local reverse proxy), so a
    # test can play several clients; the coach trusts no proxy at all.
    fleet.start("training", "meta")
    fleet.start("coach")
    fleet.start("web", env={"TOOLOO_TRUSTED_PROXIES": "127.0.0.1"})
    return fleet


def test_rotating_forwarded_for_no_longer_bypasses_the_boost_limit(coach_fleet: Fleet) -> None:
    statuses = [
        _post(coach_fleet, "coach", "/api/v1/auto-coach/boost", {"learner": "rl-nobody"}, xff)[0]
        for xff in _rotating(80)
    ]
    # 60 per 10 s: an unknown learner is counted, then 404.
    assert statuses.count(429) >= 20 and set(statuses) <= {404, 429}, statuses


def test_the_gateway_passes_the_real_client_and_cannot_be_forged_past(coach_fleet: Fleet) -> None:
    path, body = "/api/v1/auto-coach/boost", {"learner": "rl-nobody"}
    client = f"203.0.113.{secrets.randbelow(200) + 1}"
    statuses = [_post(coach_fleet, "web", path, body, client)[0] for _ in range(61)]
    assert statuses[:60] == [404] * 60 and statuses[60] == 429
    status, answer = _post(coach_fleet, "web", path, body, client)
    assert status == 429 and answer["error"]["code"] == "rate_limited"
    # Another client behind the same gateway has its own budget.
    assert _post(coach_fleet, "web", path, body, "203.0.113.250")[0] == 404
    # The hop secret is the gateway's: a caller sending its own is not believed, so rotating
    # X-Forwarded-For with a guessed secret still counts against the caller's own address.
    statuses = [
        http_json(
            "POST",
            coach_fleet.url("coach") + path,
            body,
            headers={"X-Forwarded-For": xff, "X-Tooloo-Gateway": "guess"},
        )[0]
        for xff in _rotating(61)
    ]
    assert statuses.count(429) >= 1, statuses


# Added by the first call; the next ones are 409 (it exists), counted all the same.
NEW_TOPIC = {"key": "rl_topic", "name": "RL", "problems": [{"problem": "p", "keywords": ["k"]}]}


@pytest.mark.parametrize(
    ("service", "path", "body", "limit"),
    [
        ("training", "/api/v1/training/new-topic", NEW_TOPIC, 10),
        ("training", "/api/v1/learners", {"id": "rl-learner"}, 100),
        ("meta", "/api/v4/meta-learning/boost-retention", {"learner": "rl-ghost"}, 30),
        ("meta", "/api/v4/meta-learning/boost-retention", {"cohort": "all"}, 1),
        ("orchestrator", "/api/v1/system/services/training/stop", {}, 20),
        ("reports", "/api/v1/reports/metrics?window=86400", None, 4),
        ("reports", "/api/v1/reports/export?minutes=1440&format=json", None, 4),
    ],
)
def test_each_newly_limited_endpoint_answers_429_past_its_limit(
    fleet: Fleet, service: str, path: str, body: Any, limit: int
) -> None:
    env = {"ORCHESTRATOR_MANAGE": "false"} if service == "orchestrator" else None
    fleet.start(service, env=env)
    method = "GET" if body is None else "POST"
    statuses = []
    for _ in range(limit):
        status, answer = http_json(method, fleet.url(service) + path, body)
        statuses.append(status)
        assert status != 429, (statuses, answer)
    status, answer = http_json(method, fleet.url(service) + path, body)
    assert status == 429, answer
    assert answer["ok"] is False and answer["error"]["code"] == "rate_limited"
    assert answer["error"]["details"]["retry_after_s"] >= 1
    if service == "orchestrator":  # every action draws on the same budget, pre-arm included
        status, answer = http_json("POST", fleet.url(service) + "/api/v1/system/prearm", {})
        assert status == 429, answer
    if service == "reports":  # a short window stays free
        assert http_json("GET", fleet.url(service) + "/api/v1/reports/metrics?window=60")[0] == 200


def test_the_event_stream_cap_refuses_one_past_it(fleet: Fleet) -> None:
    fleet.start("web", env={"TOOLOO_SSE_MAX_STREAMS": "2"})
    url = fleet.url("web") + "/api/v1/system/events"
    opened = [urllib.request.urlopen(url, timeout=10) for _ in range(2)]
    try:
        for resp in opened:  # both are streaming (their first line arrived)
            assert resp.status == 200 and resp.readline()
        status, answer = http_json("GET", url)
        assert status == 503 and answer["error"]["code"] == "too_many_streams"
        assert answer["error"]["details"] == {"max_streams": 2}
    finally:
        for resp in opened:
            resp.close()
