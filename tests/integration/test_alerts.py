"""Alert webhooks on a live fleet: a real aiohttp receiver on a free port, reports and training as
processes, and an alert provoked for real (a critical service stopped drags uptime under the red
line). The receiver gets the monitoring JSON; a webhook that fails twice then answers gets it on
the third attempt, every attempt recorded; one that never answers ends in `alert_failed`; the
level repeats while red; a webhook URL that is not http(s) stops the start."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis
from aiohttp import web

from harness.fleet import Fleet
from harness.http import probe_json
from harness.polling import wait_for
from harness.ports import free_port
from harness.processes import ROOT
from shared.keys import Keys

pytestmark = pytest.mark.integration


class Receiver:
    """An aiohttp server in its own thread: `/ok` answers 200, `/flaky` answers 500 twice and then
    200; every POSTed JSON body is kept per path."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: dict[str, list[Any]] = {"/ok": [], "/flaky": []}
        self.flaky_calls = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.path == "/flaky":
            self.flaky_calls += 1
            if self.flaky_calls <= 2:
                return web.json_response({"down": True}, status=500)
        self.bodies[request.path].append(body)
        return web.json_response({"ok": True})

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/ok", self._handle)
        app.router.add_post("/flaky", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rec:
        yield rec


@pytest.fixture
def r(fleet: Fleet) -> Iterator[sync_redis.Redis]:
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def _system_events(r: sync_redis.Redis, keys: Keys, kind: str) -> list[dict[str, str]]:
    return [f for _, f in r.xrange(keys.stream_system) if f.get("type") == kind]


def test_an_alert_level_change_is_delivered_retried_and_recorded(
    fleet: Fleet, receiver: Receiver, r: sync_redis.Redis
) -> None:
    keys = Keys(fleet.env["TOOLOO_REDIS_PREFIX"])
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens there
    webhooks = ",".join([receiver.url("/ok"), receiver.url("/flaky"), dead])
    fleet.start("training")
    fleet.start(
        "reports",
        env={
            "TOOLOO_ALERT_WEBHOOKS": webhooks,
            "TOOLOO_ALERT_CHECK_S": "0.3",
            "TOOLOO_ALERT_BACKOFF_S": "0.05",
            "TOOLOO_ALERT_ATTEMPTS": "3",
            "TOOLOO_ALERT_TIMEOUT_S": "2",
            "TOOLOO_ALERT_REPEAT_S": "3",
        },
    )
    reports = fleet["reports"]

    def deliveries() -> dict[str, Any]:
        status, body = reports.get("/api/v1/reports/alerts/deliveries?limit=100")
        assert status == 200, body
        return body

    # A healthy fleet: the first level seen is recorded, nothing is sent.
    first = wait_for(lambda: (d := deliveries())["state"]["level"] and d, "the first level", 15)
    assert first["state"]["level"] == "normal" and first["deliveries"] == []
    assert first["webhooks"] == 3 and first["targets"][0] == f"http://127.0.0.1:{receiver.port}"
    assert receiver.bodies["/ok"] == []

    # A critical service stops for real: its uptime falls under 99.98 % → red.
    fleet.stop("training")
    got = wait_for(lambda: receiver.bodies["/ok"], "the receiver to get the alert", 20)
    alert = got[0]
    assert alert["alert_level"] == "red" and alert["recommendation"] == "throttle"
    assert alert["alert_change"] == {"reason": "changed", "from": "normal", "to": "red"}
    assert any("uptime_pct" in a for a in alert["alerts"]) and "dashboard" in alert

    # The flaky webhook got it on its third attempt; the dead one failed all three.
    flaky = wait_for(lambda: receiver.bodies["/flaky"], "the flaky webhook's delivery", 20)
    assert flaky[0]["alert_level"] == "red" and receiver.flaky_calls >= 3

    def settled() -> list[dict[str, Any]] | None:
        rows = deliveries()["deliveries"]
        return rows if any(d["webhook"] == 2 and d["attempt"] == 3 for d in rows) else None

    rows = wait_for(settled, "the dead webhook's attempts to end", 20)
    first_round = [d for d in reversed(rows) if d["reason"] == "changed"]
    by_hook = {
        i: [(d["attempt"], d["ok"]) for d in first_round if d["webhook"] == i] for i in (0, 1, 2)
    }
    assert by_hook[0] == [(1, True)]
    assert by_hook[1] == [(1, False), (2, False), (3, True)]
    assert by_hook[2] == [(1, False), (2, False), (3, False)]
    flaky_rows = [d for d in first_round if d["webhook"] == 1]
    assert [d["status"] for d in flaky_rows] == [500, 500, 200]
    assert all(d["error"] for d in first_round if d["webhook"] == 2)
    # The recorded target never carries the path (a webhook's secret lives there).
    assert {d["target"] for d in rows} <= {
        f"http://127.0.0.1:{receiver.port}",
        dead[: dead.rindex("/")],
    }

    delivered = _system_events(r, keys, "alert_delivered")
    assert {(e["webhook"], e["attempts"]) for e in delivered if e["reason"] == "changed"} == {
        ("0", "1"),
        ("1", "3"),
    }
    failed = wait_for(lambda: _system_events(r, keys, "alert_failed"), "alert_failed", 10)
    assert failed[0]["webhook"] == "2" and failed[0]["level"] == "red"

    # Still red after TOOLOO_ALERT_REPEAT_S: sent again.
    repeat = wait_for(
        lambda: [b for b in receiver.bodies["/ok"] if b["alert_change"]["reason"] == "repeat"],
        "a repeat while red",
        20,
    )
    assert repeat[0]["alert_level"] == "red"

    # Bad input: 422 JSON, nothing recorded.
    count = len(deliveries()["deliveries"])
    status, body = reports.get("/api/v1/reports/alerts/deliveries?limit=0")
    assert status == 422 and body["ok"] is False
    status, body = reports.get("/api/v1/reports/alerts/deliveries?limit=5&x=1")
    assert status == 422
    assert len(deliveries()["deliveries"]) >= count


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "example.com/hook", "http:///nohost"])
def test_a_webhook_that_is_not_http_stops_the_start(fleet: Fleet, url: str) -> None:
    env = {**os.environ, **fleet.env, "TOOLOO_ALERT_WEBHOOKS": f"http://ok.example/a,{url}"}
    env["REPORTS_PORT"] = str(free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "services.reports"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "TOOLOO_ALERT_WEBHOOKS" in proc.stderr and "http(s)" in proc.stderr
    assert "entry 2" in proc.stderr and "Traceback" not in proc.stderr


def test_two_reports_replicas_send_each_alert_once(fleet: Fleet, receiver: Receiver) -> None:
    fleet.start(
        "orchestrator",
        env={
            "ORCHESTRATOR_SERVICES": "training,reports",
            "REPORTS_REPLICAS": "2",
            "TOOLOO_ALERT_WEBHOOKS": receiver.url("/ok"),
            "TOOLOO_ALERT_CHECK_S": "0.2",
            "TOOLOO_ALERT_REPEAT_S": "1",
        },
    )
    orch = fleet["orchestrator"]
    wait_for(lambda: orch.get("/api/v1/system/status")[1]["phase"] == "armed", "armed", 90)
    table = fleet.process_table()
    assert {"reports#1", "reports#2"} <= set(table), table
    wait_for(
        lambda: (
            fleet["orchestrator"].get("/api/v1/system/status")[1]["phase"] == "armed"
            and _level(fleet) == "normal"
        ),
        "the first level recorded",
        30,
    )

    status, body = orch.post("/api/v1/system/services/training/stop", {})
    assert status == 200, body
    wait_for(lambda: receiver.bodies["/ok"], "the alert", 30)
    # Both replicas check every 0.2 s; one holds shard 0's lease and sends. Twenty more checks
    # of each replica (bounded wait) bring no second copy of the same change.
    for _ in range(20):
        time.sleep(0.2)
    changes = [b for b in receiver.bodies["/ok"] if b["alert_change"]["reason"] == "changed"]
    assert [(b["alert_change"]["from"], b["alert_change"]["to"]) for b in changes] == [
        ("normal", "red")
    ], changes
    # Repeats every second meanwhile, each from the replica holding shard 0's lease. The second
    # replica may join the split after "armed" (a slow machine), and shard 0 can then move to it
    # once: the attempts form at most two runs, one per holder, never interleaved.
    reports = f"http://127.0.0.1:{fleet.ports['reports']}"
    status, body = probe_json("GET", f"{reports}/api/v1/reports/alerts/deliveries?limit=100")
    assert status == 200, body
    senders = [d["sender"] for d in sorted(body["deliveries"], key=lambda d: d["at"])]
    handovers = sum(1 for a, b in itertools.pairwise(senders) if a != b)
    assert len(senders) >= 3 and handovers <= 1, body["deliveries"]


def _level(fleet: Fleet) -> str | None:
    keys = Keys(fleet.env["TOOLOO_REDIS_PREFIX"])
    client = sync_redis.Redis.from_url(fleet.env["REDIS_URL"], decode_responses=True)
    try:
        return client.hget(keys.reports_alert_state, "level")
    finally:
        client.close()
