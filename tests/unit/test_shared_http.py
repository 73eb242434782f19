"""The shared app factory over real HTTP: error envelope, 404/405 JSON, body limit, auth, ids."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from shared.app_factory import create_base_app
from shared.responses import ok
from shared.settings import FleetSettings
from shared.validation import StrictModel, parse_body


class Body(StrictModel):
    n: int


async def echo(request: web.Request) -> web.Response:
    body = await parse_body(request, Body)
    return ok(n=body.n)


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


@pytest.fixture
async def client(redis_server):
    settings = FleetSettings(REDIS_URL=redis_server.url, TOOLOO_API_TOKEN="s3cret")
    app = create_base_app("training", settings)
    app.router.add_post("/echo", echo)
    app.router.add_get("/boom", boom)
    async with TestClient(TestServer(app)) as client:
        yield client


AUTH = {"Authorization": "Bearer s3cret"}


async def test_valid_body_and_request_id_echo(client):
    resp = await client.post("/echo", json={"n": 3}, headers={**AUTH, "X-Request-ID": "abc"})
    assert resp.status == 200 and (await resp.json()) == {"ok": True, "n": 3}
    assert resp.headers["X-Request-ID"] == "abc"


@pytest.mark.parametrize(
    "payload,status,code",
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"n": "3"}', 422, "validation_error"),
        (b'{"n": 3, "extra": 1}', 422, "validation_error"),
        (b"[1, 2]", 422, "validation_error"),
        (b'{"n": ' + b"1" * 70000 + b"}", 413, "payload_too_large"),
    ],
)
async def test_bad_input_is_a_json_4xx(client, payload, status, code):
    resp = await client.post(
        "/echo", data=payload, headers={**AUTH, "Content-Type": "application/json"}
    )
    body = await resp.json()
    assert resp.status == status
    assert body["ok"] is False and body["error"]["code"] == code


async def test_unknown_route_and_wrong_method_are_json(client):
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/echo")
    body = await resp.json()
    assert resp.status == 405 and "POST" in body["error"]["message"]


async def test_unexpected_error_is_a_500_envelope_without_internals(client):
    resp = await client.get("/boom")
    body = await resp.json()
    assert resp.status == 500 and "secret" not in str(body)


async def test_mutation_needs_the_token_but_reads_do_not(client):
    assert (await client.post("/echo", json={"n": 1})).status == 401
    assert (
        await client.post("/echo", json={"n": 1}, headers={"Authorization": "Bearer nope"})
    ).status == 401
    assert (await client.get("/health")).status == 200


async def test_health_ready_metrics(client):
    assert (await (await client.get("/health")).json())["ok"] is True
    assert (await client.get("/ready")).status == 200
    text = await (await client.get("/metrics")).text()
    assert "tooloo_http_requests_total" in text
