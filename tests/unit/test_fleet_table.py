"""The fleet table against the deployment files that spell the services on their own: they are
read by tools that cannot import `shared.fleet`, so this is where a disagreement shows."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from shared import fleet
from shared.settings import FleetSettings

ROOT = Path(__file__).resolve().parents[2]


def test_console_scripts_run_each_service_module() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    tools = ("tooloo-redis", "tooloo-migrate", "tooloo")  # not services
    services = {k: v for k, v in scripts.items() if k not in tools}
    assert services == {f"tooloo-{s.name}": f"{s.module}.__main__:main" for s in fleet.SERVICES}


def test_compose_runs_each_service_on_its_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    containers = {k: v for k, v in compose["services"].items() if not k.startswith("redis")}
    assert set(containers) == set(fleet.NAMES)
    for svc in fleet.SERVICES:
        container = containers[svc.name]
        assert container["command"] == ["python", "-m", svc.module]
        port = str(svc.default_port)
        # Only web publishes, a range of host ports starting at its own, so it scales too.
        published = [p.rsplit(":", 2)[-2:] for p in container.get("ports", [])]
        if svc.name == "web":
            assert len(published) == 1 and published[0][1] == port, published
            assert published[0][0].split("-")[0] == port, published
        else:
            assert published == [] and container.get("expose") == [port], svc.name
        assert f"127.0.0.1:{port}/ready" in container["healthcheck"]["test"][-1]
        assert container["environment"][svc.url_env] == f"http://{svc.name}:{port}"


def test_procfile_starts_the_orchestrator_module() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert f"orchestrator: exec python -m {fleet.service('orchestrator').module}" in lines


def test_settings_have_a_port_and_url_per_service() -> None:
    settings = FleetSettings()
    for svc in fleet.SERVICES:
        assert settings.port_of(svc.name) == svc.default_port
        assert settings.url_of(svc.name) == f"http://127.0.0.1:{svc.default_port}"
    moved = FleetSettings(ORCH_CTRL_PORT="4000", TRAINING_URL="http://training:3001/")
    assert moved.port_of("orchestrator") == 4000
    assert moved.url_of("training") == "http://training:3001"


def test_stop_sequence_puts_the_coach_first_and_training_last() -> None:
    order = fleet.stop_sequence(["training", "web", "coach", "meta", "stranger"])
    assert order == ["coach", "web", "meta", "training", "stranger"]
