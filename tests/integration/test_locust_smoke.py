"""A few seconds of the Locust scenarios against a real fleet: every user class (control-room
operator, training client, onboarding) makes successful requests and none fails.

Locust runs in a subprocess: it monkey-patches the standard library with gevent, which must not
happen inside the pytest process (pytest-asyncio runs the other tests on asyncio). The long
scenarios and the benchmarks stay out of the test suite (loadtests/gate.py, loadtests/bench.py).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.fleet import Fleet
from harness.processes import ROOT

pytestmark = pytest.mark.integration

USER_KINDS = ("operator", "training", "onboarding")


def test_every_user_class_makes_successful_requests(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("training", "meta", "coach", "reports", "web")
    # Observe mode: it starts nothing, and answers /api/v1/system/status as the operator polls it.
    fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
    # Pre-arm as the orchestrator does: training started, the coach running.
    assert fleet["training"].post("/api/v1/training/start", {})[0] == 200
    assert fleet["coach"].post("/api/v1/auto-coach/start", {})[0] == 200

    csv_prefix = tmp_path / "smoke"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
    cmd = [
        sys.executable, "-m", "locust",
        "-f", str(ROOT / "loadtests" / "locustfile.py"),
        "--headless", "--host", fleet.url("web"),
        "--users", "4", "--spawn-rate", "4", "--run-time", "5s", "--stop-timeout", "3",
        "--csv", str(csv_prefix), "--only-summary", "--loglevel", "WARNING",
        # A small population, so onboarding and the clients' starts stay quick.
        "--scale-target", "20", "--population", "40", "--learners-per-user", "5",
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    output = f"exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"

    with Path(f"{csv_prefix}_stats.csv").open(newline="") as fh:
        stats = {row["Name"]: row for row in csv.DictReader(fh)}
    with Path(f"{csv_prefix}_failures.csv").open(newline="") as fh:
        failures = list(csv.DictReader(fh))
    assert not failures, f"{failures}\n{output}"
    assert run.returncode == 0, output

    for kind in USER_KINDS:
        rows = [row for name, row in stats.items() if name.startswith(f"{kind} ")]
        requests = sum(int(row["Request Count"]) for row in rows)
        failed = sum(int(row["Failure Count"]) for row in rows)
        assert requests > 0, f"{kind} made no request\n{output}"
        assert failed == 0, f"{kind} had {failed} failed requests\n{output}"
    # The throughput path really ran rounds, and the onboarding user set the target.
    assert int(stats["training POST /api/v1/training/round"]["Request Count"]) > 0, output
    assert int(stats["onboarding POST /api/v1/system/scale"]["Request Count"]) == 1, output
    status, scale = fleet["web"].get("/api/v1/system/scale")
    assert status == 200
    assert scale["scale"]["target"] == 20, scale
