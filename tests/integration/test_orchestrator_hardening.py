"""The orchestrator against a squatted port and an absent Redis (security review 1.2, 5.1), with
real processes: a real HTTP server squatting a service's port, a real redis-server started late."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.fleet import Fleet
from harness.polling import wait_for
from harness.ports import free_port
from harness.redis_server import RedisServer

pytestmark = pytest.mark.integration

STATUS = "/api/v1/system/status"
TOKEN = "squat-test-token-0123456789abcdef"


class Squatter:
    """An HTTP server on someone else's port that answers 200 to everything, as a stale or
    hostile process would, and records the Authorization headers it was sent."""

    def __init__(self, port: int) -> None:
        self.requests = 0
        self.authorizations: list[str] = []
        squatter = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                squatter.requests += 1
                if self.headers.get("Authorization"):
                    squatter.authorizations.append(self.headers["Authorization"])
                body = json.dumps({"ok": True, "ready": True, "service": "training"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Squatter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


@pytest.fixture
def secured_fleet(fleet: Fleet) -> Iterator[Fleet]:
    fleet.token = TOKEN
    yield fleet


def test_a_squatter_on_a_port_is_not_taken_for_the_service_nor_sent_the_token(
    secured_fleet: Fleet,
) -> None:
    fleet = secured_fleet
    with Squatter(fleet.ports["training"]) as squatter:
        fleet.start(
            "orchestrator",
            env={
                "ORCHESTRATOR_SERVICES": "training",
                "ORCHESTRATOR_RESTART_BUDGET": "2",
                "ORCHESTRATOR_BACKOFF_MAX": "0.2",
                # Retried long after in real use; here soon, to see the retry succeed below.
                "ORCHESTRATOR_FAILED_RETRY": "3",
            },
        )
        orch = fleet["orchestrator"]
        seen: list[tuple[str, str]] = []

        def failed() -> bool:
            _, body = orch.get(STATUS)
            seen.append((body["phase"], body["services"]["training"]["state"]))
            return body["services"]["training"]["state"] == "failed"

        wait_for(failed, "training failed while its port is squatted")
        assert squatter.requests > 0  # it was probed ...
        assert squatter.authorizations == []  # ... and never sent the token
        assert all(phase != "armed" and state != "running" for phase, state in seen), seen
        _, processes = orch.get("/api/v1/system/processes")
        error = next(p for p in processes["processes"] if p["name"] == "training")["error"]
        assert "not by the service's child" in error, error
        squatter.stop()

        # The squatter gone, the failed service is retried later with a fresh budget.
        def armed() -> bool:
            _, body = orch.get(STATUS)
            return body["phase"] == "armed" and body["services"]["training"]["state"] == "running"

        wait_for(armed, "the fleet armed once the port is free")


def test_orchestrator_waits_for_redis_then_arms(tmp_path: Path, prefix: str) -> None:
    # Not started yet. Its maxmemory, with an alert threshold far below what Redis uses on
    # start, shows the memory alert once it is up.
    redis = RedisServer(tmp_path / "redis", port=free_port(), maxmemory=256 * 1024**2)
    fleet = Fleet(redis.url, prefix, tmp_path / "logs")
    try:
        fleet.start(
            "orchestrator",
            wait=False,
            env={"ORCHESTRATOR_SERVICES": "training,meta", "TOOLOO_REDIS_MEMORY_ALERT_PCT": "0.01"},
        )
        orch = fleet["orchestrator"]

        def status() -> dict[str, Any] | None:
            code, body = fleet.call("orchestrator", "GET", STATUS, timeout=2.0)
            return body if code == 200 else None

        body = wait_for(status, "the control API without Redis")
        assert body["phase"] == "waiting_for_redis", body
        assert body["redis"]["state"] == "waiting_for_redis"
        # It waits (the old orchestrator's API never listened, and it exited ~11 s after start),
        # says why, and has started nothing.
        wait_for(lambda: (s := status()) and s["redis"]["error"], "the Redis error reported")
        assert orch.alive, orch.logs()
        body = status()
        assert body is not None and body["phase"] == "waiting_for_redis", body
        assert all(s["state"] == "starting" for s in body["services"].values()), body

        redis.start()
        wait_for(
            lambda: (s := status()) and s["phase"] == "armed" and s["redis"]["state"] == "up",
            "the fleet armed once Redis is up",
        )
        body = wait_for(
            lambda: (s := status()) and s["redis"].get("memory_alert") and s,
            "the memory alert",
        )
        assert body["redis"]["maxmemory"] == 256 * 1024**2
        assert any(a.startswith("redis memory at") for a in body["alerts"]), body["alerts"]
    finally:
        fleet.stop_all()
        redis.stop()


def test_a_service_started_before_redis_waits_for_it(tmp_path: Path, prefix: str) -> None:
    # Under compose a service may start (or restart) while Redis is down: it waits for Redis
    # instead of exiting after a few seconds, and is ready once Redis answers.
    redis = RedisServer(tmp_path / "redis", port=free_port())
    fleet = Fleet(redis.url, prefix, tmp_path / "logs")
    try:
        fleet.start("meta", wait=False)
        meta = fleet["meta"]
        time.sleep(15.0)  # well past the old ~11 s of retries after which it exited
        assert meta.alive, meta.logs()
        redis.start()
        wait_for(lambda: fleet.call("meta", "GET", "/ready", timeout=2.0)[0] == 200, "meta ready")
    finally:
        fleet.stop_all()
        redis.stop()
