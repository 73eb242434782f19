"""The web gateway against real service processes: prefixes reach their services, a down
upstream is a JSON 502 naming it, local system routes win over the proxy."""

from __future__ import annotations

import json
import urllib.request

import pytest

from harness.fleet import Fleet

pytestmark = pytest.mark.integration


def test_each_prefix_reaches_its_service(fleet: Fleet) -> None:
    fleet.start("training", "meta", "coach", "reports", "web")
    web = fleet["web"]
    probes = {
        "/api/v1/training/status": "training",
        "/api/v1/next-domain": "training",
        "/api/v1/learners?limit=5": "training",
        "/api/v4/meta-learning/status": "meta",
        "/api/v1/auto-coach/status": "coach",
        "/api/v1/reports/status": "reports",
    }
    for path, service in probes.items():
        direct_status, direct = fleet[service].get(path)
        status, body, headers = _get(web.url + path)
        assert status == direct_status, (path, body)
        assert headers.get("X-Upstream-Service") == service, path
        assert isinstance(body, dict) and body.get("ok") is True, (path, body)
        assert set(body) == set(direct), path  # same answer shape as asking the service itself


def test_orchestrator_prefixes_go_to_the_orchestrator(fleet: Fleet) -> None:
    # The orchestrator supervises its own children; here it only needs to answer.
    orch_env = {"ORCHESTRATOR_MANAGE": "false"}
    fleet.start("web")
    fleet.start("orchestrator", env=orch_env)
    status, body, headers = _get(fleet["web"].url + "/api/v1/system/processes")
    assert status == 200 and body["ok"] is True and "processes" in body
    assert headers["X-Upstream-Service"] == "orchestrator"
    status, body, headers = _get(fleet["web"].url + "/api/v1/system/status")
    assert status == 200 and headers["X-Upstream-Service"] == "orchestrator"


def test_forwards_method_body_query_and_request_id(fleet: Fleet) -> None:
    fleet.start("training", "web")
    web = fleet["web"]
    status, body = web.post("/api/v1/training/start", {"learner": "gw-1"})
    assert status == 200 and body["result"]["learner"] == "gw-1"
    status, body = web.post("/api/v1/training/round", {"learner": "gw-1"})
    assert status == 200 and body["result"]["learner"] == "gw-1"
    status, direct = fleet["training"].get("/api/v1/learners/gw-1")
    assert status == 200 and direct["learner"]["rounds"] == 1
    # Query string passes through; upstream validation errors are mirrored as they are.
    status, body = web.get("/api/v1/training/status?learner=gw-1")
    assert status == 200
    status, body = web.post("/api/v1/training/round", {"learner": "gw-1", "bogus": 1})
    assert status == 422 and body["ok"] is False
    # The caller's request id is kept.
    status, _, headers = _get(
        web.url + "/api/v1/training/status", headers={"X-Request-ID": "gw-req-42"}
    )
    assert status == 200 and headers["X-Request-ID"] == "gw-req-42"


def test_forwards_authorization(fleet: Fleet) -> None:
    # Training requires a token, web does not: only the caller's header can get the call through.
    fleet.start("training", env={"TOOLOO_API_TOKEN": "s3cret"})
    fleet.start("web")
    web = fleet["web"]
    status, body = web.post("/api/v1/training/start", {"learner": "gw-2"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = web.post(
        "/api/v1/training/start",
        {"learner": "gw-2"},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert status == 200 and body["result"]["learner"] == "gw-2"


def test_down_upstream_is_a_json_502_naming_it(fleet: Fleet) -> None:
    fleet.start("web")  # nothing else runs
    for path, service in (
        ("/api/v1/auto-coach/status", "coach"),
        ("/api/v1/reports/metrics", "reports"),
        ("/api/v1/system/processes", "orchestrator"),
    ):
        status, body = fleet["web"].get(path)
        assert status == 502, (path, body)
        assert body["ok"] is False
        assert body["error"]["code"] == "upstream_unavailable"
        assert service in body["error"]["message"]
        assert body["error"]["details"]["service"] == service
    status, body = fleet["web"].post("/api/v1/training/round", {})
    assert status == 502 and body["error"]["details"]["service"] == "training"


def test_unknown_api_path_is_a_json_404(fleet: Fleet) -> None:
    fleet.start("web")
    status, body = fleet["web"].get("/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "no_route"
    # Prefixes match whole path segments only.
    status, body = fleet["web"].get("/api/v1/trainingX")
    assert status == 404


def test_local_system_routes_win_over_the_proxy(fleet: Fleet) -> None:
    # No orchestrator runs: if these reached the proxy they would be 404/502, not answered here.
    fleet.start("web")
    web = fleet["web"]
    status, body, headers = _get(web.url + "/api/v1/system/scale")
    assert status == 200 and "X-Upstream-Service" not in headers and "scale" in body
    status, body = web.post("/api/v1/system/pause-onboarding")
    assert status == 200 and body["paused"] is True
    status, body = web.get("/api/v1/system/gates")
    assert status == 200 and body["metrics_available"] is False
    status, body = web.get("/api/v1/system/routes")
    assert status == 200
    names = {r["name"]: r for r in body["routes"]}
    assert names["training"]["prefixes"][0].startswith("/api/v1/")
    assert "/api/v1/system/scale" in names["web"]["prefixes"]
    # A local path with the wrong method is a 405 here, never forwarded.
    status, body = web.get("/api/v1/system/pause-onboarding")
    assert status == 405 and body["error"]["details"]["allowed"] == ["POST"]
    status, body = web.get("/api/v1/health")
    assert status == 200 and body["server"] == "web"


def test_control_room_page_and_static_files_are_served(fleet: Fleet) -> None:
    fleet.start("web")
    for path in ("/", "/control-room"):
        with urllib.request.urlopen(fleet["web"].url + path, timeout=5) as resp:
            html = resp.read().decode()
        assert resp.status == 200 and "<title>TooLoo Control Room</title>" in html
        assert "http://" not in html and "https://" not in html  # nothing from the network
    for name, kind in (("control-room.js", "javascript"), ("control-room.css", "text/css")):
        with urllib.request.urlopen(fleet["web"].url + "/static/" + name, timeout=5) as resp:
            assert resp.status == 200 and kind in resp.headers["Content-Type"]
    # Missing files and paths out of the directory: the JSON error envelope like every 404.
    for path in ("/static/nope.js", "/static/", "/static/..%2Fapp.py", "/static/a/b.js"):
        status, body = fleet["web"].get(path)
        assert status == 404 and body["ok"] is False and body["error"]["code"] == "not_found", path


def test_events_stream_carries_snapshots_and_upstream_errors(fleet: Fleet) -> None:
    fleet.start("web")
    req = urllib.request.Request(fleet["web"].url + "/api/v1/system/events")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        data = _first_event(resp)
    # Nothing but web runs: every upstream is an error entry, the stream still flows.
    assert data["fleet"]["error"]["code"] == "upstream_unavailable"
    assert "error" in data["coach"] and "error" in data["metrics"]
    assert data["fleet"]["health"]["coach"]["up"] is False
    assert data["scale"]["paused"] is False
    assert data["gates"]["metrics_available"] is False
    assert {g["verdict"] for g in data["gates"]["gates"]} == {"HOLD"}


def _first_event(resp) -> dict:  # type: ignore[no-untyped-def]
    event = None
    for _ in range(200):  # bounded: a snapshot arrives within a few lines
        line = resp.readline().decode().rstrip("\r\n")
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        if line.startswith("data:") and event == "snapshot":
            return json.loads(line[5:])
    raise AssertionError("no snapshot event")


def _get(url: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)
