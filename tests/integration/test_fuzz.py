"""Fuzzed input against the real fleet: every service's published OpenAPI document is complete
and valid, and a few hundred schemathesis-generated requests per service (plus hostile inputs a
schema generator rarely makes) give no 5xx, a JSON error envelope on every 4xx, and no state
change from any rejected request. The engine (what is generated, guarded, compared) is
loadtests/fuzz.py, whose long run sends 10,000 requests per service.

One fleet for the whole file: starting it is the slow part.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis

from harness.fleet import Fleet
from harness.redis_server import RedisServer
from loadtests.fuzz import SERVICES, Fuzzer, ServiceResult, envelope_problem

pytestmark = pytest.mark.integration

REQUESTS_PER_SERVICE = 200  # generated; the hostile inputs come on top (~40-130 per service)
SEED = 0


@pytest.fixture(scope="module")
def fuzz_fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Fleet, Fuzzer]]:
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    fleet = Fleet(redis_server.url, "fuzz", tmp_path_factory.mktemp("fuzz-logs"))
    fuzzer = None
    try:
        fleet.start("training", "meta")
        fleet.start("coach", "reports", "web")
        # Observe mode: it pre-arms the fleet and answers its API, but manages no process, so
        # fuzzed service stop/restart calls answer 409 and touch nothing.
        fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
        fuzzer = Fuzzer({name: fleet.url(name) for name in SERVICES}, redis_server.url, "fuzz")
        fuzzer.prepare()
        yield fleet, fuzzer
    except BaseException:
        for proc in fleet.procs.values():
            print(f"----- {proc.name} log -----\n{proc.logs()}")
        raise
    finally:
        if fuzzer is not None:
            fuzzer.close()
        fleet.stop_all()


@pytest.mark.parametrize("service", SERVICES)
def test_openapi_document_is_valid_and_lists_every_route(fuzz_fleet, service: str) -> None:
    fleet, _ = fuzz_fleet
    doc = requests.get(fleet.url(service) + "/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()  # raises on an invalid document
    paths = doc["paths"]
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert "get" in paths[path], path
    for path, operations in paths.items():
        for method, op in operations.items():
            # Every body is a named model in components; every operation id is unique.
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if ref:
                name = ref["schema"]["$ref"].rsplit("/", 1)[1]
                assert doc["components"]["schemas"][name]["additionalProperties"] is False
            assert method in ("get", "post", "delete"), (path, method)
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    # Each path parameter of the template is declared.
    for path, operations in paths.items():
        for op in operations.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_documents_declare_the_request_models() -> None:
    # The models, not hand-written schemas: a bound of a model is a bound of the document.
    from services.coach.routes import routes as coach_routes

    schemas = coach_routes.openapi()["components"]["schemas"]
    assert schemas["BoostRequest"]["properties"]["rounds"]["maximum"] == 20
    from services.training.routes import api as training_routes

    learner = training_routes.openapi()["paths"]["/api/v1/training/status"]["get"]["parameters"]
    assert learner[0]["schema"]["pattern"] == "^[A-Za-z0-9_.-]{1,64}$"  # no null in a query


def test_envelope_check_refuses_what_is_not_the_envelope() -> None:
    assert envelope_problem(422, {"ok": False, "error": {"code": "x", "message": "y"}}) is None
    assert envelope_problem(404, "Not Found")
    assert envelope_problem(400, {"ok": False, "error": "bad"})
    assert envelope_problem(400, {"ok": False, "error": {"code": 1, "message": "y"}})


def test_state_check_sees_a_change(fuzz_fleet) -> None:
    # The comparison is real: a change of any compared value is seen.
    fleet, fuzzer = fuzz_fleet
    before = fuzzer.snapshot()
    status, _ = fleet["training"].post("/api/v1/training/round", {"learner": "default"})
    assert status == 200
    assert fuzzer.snapshot() != before
    fuzzer.settle()


@pytest.mark.parametrize("service", SERVICES)
def test_fuzzed_requests_no_5xx_json_rejections_no_state_change(fuzz_fleet, service: str) -> None:
    fleet, fuzzer = fuzz_fleet
    result: ServiceResult = fuzzer.run_service(service, REQUESTS_PER_SERVICE, SEED)
    assert result.requests >= REQUESTS_PER_SERVICE
    assert result.rejected_4xx > 0 and result.ok_2xx > 0  # both kinds were exercised
    assert result.failures == [], "\n".join(result.failures[:20])
    assert result.clean
    assert all(proc.alive for proc in fleet.procs.values())
