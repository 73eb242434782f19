"""Real service processes for integration tests.

`Fleet` gives every service a free port and starts the ones a test asks for as real OS processes
(`python -m <module>`), each with the same environment, so they find each other over HTTP exactly
as in production. Output goes to a log file per process, which a failing test can print.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from loadtests import fleetctl
from shared import fleet
from tests.support.ports import free_port

ROOT = fleetctl.ROOT


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A blocking HTTP call returning (status, decoded JSON or raw text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class ServiceProcess(fleetctl.ServiceProcess):
    """The load-test library's service process, plus HTTP helpers that raise when the service
    cannot be reached (a test must not read "unreachable" as a status)."""

    # Convenience HTTP helpers against this service.
    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return http_json("GET", self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return http_json("POST", self.url + path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return http_json("DELETE", self.url + path, **kw)


class Fleet:
    """Ports for every service, one shared environment, and the processes started so far."""

    def __init__(
        self, redis_url: str, prefix: str, log_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.ports = {name: free_port() for name in fleet.NAMES}
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
        env.update(
            {
                "REDIS_URL": redis_url,
                "TOOLOO_REDIS_PREFIX": prefix,
                "TOOLOO_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for svc in fleet.SERVICES:
            env[svc.port_env] = str(self.ports[svc.name])
        env.update(extra_env or {})
        self.env = env
        self.procs: dict[str, ServiceProcess] = {}

    def start(
        self, *names: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> list[ServiceProcess]:
        started = []
        for name in names:
            proc_env = dict(self.env, **(env or {}))
            module = fleet.service(name).module
            proc = ServiceProcess(name, module, self.ports[name], proc_env, self.log_dir)
            self.procs[name] = proc.start()
            started.append(proc)
        if wait:
            for proc in started:
                proc.wait_ready()
        return started

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop_all(self) -> None:
        for name in fleet.stop_sequence(self.procs):
            self.procs[name].stop()
