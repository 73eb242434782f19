"""deploy/: the scrape config and alert rules pass promtool, and a real Prometheus scraping a
running fleet under a short load answers every Grafana panel's query with data (a rounds rate
among them) through its HTTP API. Skipped, with the reason, where Prometheus is not installed
(`scripts/install-test-deps.sh` installs Debian's `prometheus` package)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.fleet import Fleet
from harness.http import http_json, probe_json
from harness.polling import wait_for
from harness.ports import free_port
from harness.processes import ROOT, terminate

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "tooloo.json"
SERVICES = ("web", "training", "meta", "coach", "reports", "orchestrator")


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (Debian package `prometheus`)")
    return path


def panel_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in board["panels"]
        for target in panel["targets"]
    ]


def test_dashboard_covers_the_fleets_figures() -> None:
    titles = {title.rsplit(" [", 1)[0] for title, _ in panel_queries()}
    assert {
        "Rounds / min",
        "Round latency p95 / p99",
        "Error rate",
        "Coach throughput",
        "Coach coverage",
        "Meta trigger delay p50 / p99",
        "Learners",
        "Gates",
    } <= titles


def test_promtool_accepts_config_and_rules() -> None:
    promtool = _need("promtool")
    for args in (
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "rules", str(PROMETHEUS_DIR / "alerts.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert jobs == {f"tooloo-{name}" for name in SERVICES}


def _config_for(fleet: Fleet, path: Path) -> None:
    """The shipped config, with this fleet's ports and a 1 s scrape interval."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    for job in config["scrape_configs"]:
        name = job["job_name"].removeprefix("tooloo-")
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{fleet.ports[name]}"]
    path.write_text(yaml.safe_dump(config))


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, body = http_json("GET", url, timeout=10)
    assert status == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _has_value(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


@pytest.mark.timeout(300)
def test_prometheus_scrapes_a_fleet_under_load(fleet: Fleet, tmp_path: Path) -> None:
    prometheus = _need("prometheus")
    fleet.start("training", "meta", "reports", "coach", "web")
    fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
    # Every learner ready after a round, so the coach triggers meta and its delay is measured.
    status, _ = fleet.call(
        "coach", "POST", "/api/v1/auto-coach/settings", {"minAvgMastery": 0, "maxBelow80": 1000}
    )
    assert status == 200
    assert fleet.call("coach", "POST", "/api/v1/auto-coach/start")[0] == 200
    assert fleet.call("web", "POST", "/api/v1/system/scale", {"learners": 20})[0] == 200

    config = tmp_path / "prometheus.yml"
    _config_for(fleet, config)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stop = threading.Event()

    def load() -> None:
        """Single rounds and batches from outside, next to the coach's own, and a new learner
        every few rounds: it becomes ready on its first round, so meta triggers keep coming."""
        learners = [f"p{i}" for i in range(4)]
        for learner in learners:
            fleet.call("training", "POST", "/api/v1/training/start", {"learner": learner})
        n = 0
        while not stop.is_set():
            n += 1
            fresh = f"q{n}"
            fleet.call("training", "POST", "/api/v1/training/start", {"learner": fresh})
            fleet.call("training", "POST", "/api/v1/training/round", {"learner": fresh})
            fleet.call(
                "training",
                "POST",
                "/api/v1/training/rounds",
                {"learners": learners, "rounds_per_learner": 2},
            )
            time.sleep(0.2)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_for(lambda: probe_json("GET", base + "/-/ready")[0] == 200, "prometheus ready", 60)
        up = wait_for(
            lambda: len(r := _query(base, 'up{job=~"tooloo-.*"} == 1')) == len(SERVICES) and r,
            "every service scraped",
            60,
        )
        assert {r["metric"]["job"] for r in up} == {f"tooloo-{name}" for name in SERVICES}

        rate = wait_for(
            lambda: (
                _has_value(r := _query(base, "sum(rate(tooloo_rounds_total[1m]))"))
                and float(r[0]["value"][1]) > 0
                and r
            ),
            "a rounds rate",
            60,
        )
        assert float(rate[0]["value"][1]) > 0

        # Every panel's query answers a value (not NaN), polled together within one deadline.
        missing = dict(panel_queries())
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            missing = {t: e for t, e in missing.items() if not _has_value(_query(base, e))}
            time.sleep(1)
        assert not missing, f"panels without data: {missing}"
        # The recording rules evaluate too.
        wait_for(lambda: _has_value(_query(base, "tooloo:rounds:rate1m")), "recorded rate", 30)
    finally:
        stop.set()
        loader.join(timeout=30)
        terminate(proc, 10)
        log.close()
