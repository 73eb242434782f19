"""Every service's published OpenAPI document against its behaviour, checked by schemathesis's own
CLI as a client's user would run it: `--checks all` (status codes, content types, response
schemas, schema-valid requests accepted and schema-invalid ones refused, the token enforced, no
5xx), a fixed seed and a small example count, on a fleet of real processes this file starts. Any
finding fails the test with schemathesis's report.

Operations that would disturb the other runs (erase a learner, stop/start/restart a service,
pre-arm the fleet, pause meta or onboarding) are left out of the per-service runs and checked
LAST, by `test_disruptive_operations_last`, on the same fleet. The orchestrator runs in observe
mode (it manages no process), so its stop/start/restart answer 409 and stop nothing.

The gateway's (web's) document merges every service's operations it forwards, so its run checks
them again through the proxy, with the gateway's own answers (502/504) documented.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.fleet import Fleet
from harness.redis_server import RedisServer

pytestmark = pytest.mark.integration

SERVICES = ("training", "meta", "coach", "reports", "orchestrator", "web")
TOKEN = "contract-test-token"
SEED = 0
EXAMPLES = 10
# Every phase on each service's own document. The gateway's merged document repeats every other
# service's operations: its coverage phase (every boundary of every schema, whatever
# --max-examples says) would take minutes for checks the services' own runs make, so the
# gateway runs the random phases only. loadtests.fuzz keeps the larger runs.
ALL_PHASES = "examples,coverage,fuzzing,stateful"
RANDOM_PHASES = GATEWAY_PHASES = "examples,fuzzing,stateful"
# operationIds (the gateway's copies carry a `_<n>` suffix when a name repeats).
DISRUPTIVE = (
    r"^(delete_delete_learner|post_(pause|resume|pause_onboarding|resume_onboarding)"
    r"|post_(start|stop|restart)_service|post_prearm)(_[0-9]+)?$"
)
# The gateway's own: its copies of the services' operations were checked on the services.
GATEWAY_DISRUPTIVE = r"^post_(pause|resume)_onboarding$"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def contract_fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    fleet = Fleet(
        redis_server.url, "contract", tmp_path_factory.mktemp("contract-logs"), token=TOKEN
    )
    try:
        fleet.start("training", "meta")
        fleet.start("coach", "reports", "web")
        fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
        yield fleet
    except BaseException:
        for proc in fleet.procs.values():
            print(f"----- {proc.name} log -----\n{proc.logs()}")
        raise
    finally:
        fleet.stop_all()


def schemathesis_run(fleet: Fleet, service: str, phases: str, *selection: str) -> None:
    """One schemathesis run against `service`'s document; fails with its report on a finding."""
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{fleet.url(service)}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--phases",
        phases,
        "--request-timeout",
        "10",
        "--no-color",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        *selection,
    ]
    # In the fleet's log directory: the CLI writes its state (.schemathesis/) where it runs.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=fleet.log_dir)
    # 0: no finding. Anything else (a finding, an error, a crash) shows schemathesis's report.
    assert done.returncode == 0, f"schemathesis on {service}:\n{done.stdout[-12000:]}{done.stderr}"


def test_documents_state_the_token_and_the_error_envelope(contract_fleet: Fleet) -> None:
    doc = requests.get(contract_fleet.url("training") + "/openapi.json", timeout=5).json()
    post = doc["paths"]["/api/v1/learners"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert "201" in post["responses"] and "200" not in post["responses"]
    for status in ("400", "401", "403", "409", "413", "422", "429", "503"):
        schema = post["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, status
    assert "security" not in doc["paths"]["/api/v1/learners"]["get"]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_gateway_document_lists_what_it_forwards(contract_fleet: Fleet) -> None:
    doc = requests.get(contract_fleet.url("web") + "/openapi.json", timeout=5).json()
    for service in ("training", "meta", "coach", "reports", "orchestrator"):
        own = requests.get(contract_fleet.url(service) + "/openapi.json", timeout=5).json()
        forwarded = [p for p in own["paths"] if p.startswith("/api/")]
        assert forwarded, service
        for path in forwarded:
            for method in own["paths"][path]:
                responses = doc["paths"][path][method]["responses"]
                assert {"502", "504"} <= set(responses), (path, method)
    assert "/api/v1/system/scale" in doc["paths"]  # and its own


@pytest.mark.timeout(300)  # the gateway's run repeats every service's operations: ~2 min on CI
@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_nothing(contract_fleet: Fleet, service: str) -> None:
    phases = GATEWAY_PHASES if service == "web" else ALL_PHASES
    # Through the gateway a 502/504 is its documented answer when a service is away or slower
    # than TOOLOO_HTTP_TIMEOUT (a cohort-wide meta boost over the learners the earlier runs
    # created can be), so the no-5xx check runs on each service's own document, where a 5xx
    # is always a defect, and not again through the proxy. Every other check runs on both.
    gateway = ("--exclude-checks", "not_a_server_error") if service == "web" else ()
    schemathesis_run(
        contract_fleet, service, phases, "--exclude-operation-id-regex", DISRUPTIVE, *gateway
    )


def test_disruptive_operations_last(contract_fleet: Fleet) -> None:
    """After every other run of this file (pytest runs a file's tests in order); on the gateway,
    its own pause/resume of onboarding only. The random phases only: these few operations take
    the same middlewares and parsers the coverage phase already went through on the others,
    and the suite's time is better spent elsewhere."""
    for service in SERVICES:
        doc = requests.get(contract_fleet.url(service) + "/openapi.json", timeout=5).json()
        ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
        selected = GATEWAY_DISRUPTIVE if service == "web" else DISRUPTIVE
        if any(re.match(selected, i) for i in ids):
            schemathesis_run(
                contract_fleet, service, RANDOM_PHASES, "--include-operation-id-regex", selected
            )
    assert all(proc.alive for proc in contract_fleet.procs.values())
