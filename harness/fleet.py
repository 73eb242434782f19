"""A fleet of real service processes: every service of the fleet table gets a free port, and the
ones asked for are started as OS processes with one shared environment, so they find each other
over HTTP exactly as in production. Output goes to a log file per process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.http import probe_json
from harness.ports import free_port
from harness.processes import ServiceProcess
from harness.redis_clients import SyncRedis, sync_client
from shared.fleet import NAMES, SERVICES, service, stop_sequence


class Fleet:
    """Ports for every service, one shared environment, and the processes started so far."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        *,
        token: str | None = None,
        var_dir: Path | None = None,
    ) -> None:
        self.ports = {name: free_port() for name in NAMES}
        self.redis_url = redis_url
        self.prefix = prefix
        self.token = token
        self.var_dir = var_dir
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(extra_env or {})
        self.procs: dict[str, ServiceProcess] = {}

    @property
    def env(self) -> dict[str, str]:
        """The environment every process starts with: the caller's, minus the fleet's own and
        pytest's variables, plus this fleet's Redis, prefix and ports."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "TOOLOO_REDIS_PREFIX": self.prefix,
                "TOOLOO_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.var_dir is not None:
            env["TOOLOO_VAR_DIR"] = str(self.var_dir)
        if self.token:
            env["TOOLOO_API_TOKEN"] = self.token
        for svc in SERVICES:
            env[svc.port_env] = str(self.ports[svc.name])
        env.update(self.extra_env)
        return env

    def start(
        self, *names: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> list[ServiceProcess]:
        started = []
        for name in names:
            proc_env = dict(self.env, **(env or {}))
            module = service(name).module
            proc = ServiceProcess(name, module, self.ports[name], proc_env, self.log_dir)
            self.procs[name] = proc.start()
            started.append(proc)
        if wait:
            for proc in started:
                proc.wait_ready()
        return started

    def restart(self, name: str) -> ServiceProcess:
        """Start `name` again, with the module, port and environment it had. A process still
        running is stopped first: left running it would keep the port, the new one would fail to
        bind, and requests meant for the new one would reach the old (and it would outlive the
        test)."""
        old = self.procs[name]
        old.stop()
        proc = ServiceProcess(name, old.module, old.port, old.env, self.log_dir)
        self.procs[name] = proc.start()
        return proc

    def stop(self, name: str) -> None:
        self.procs[name].stop()

    def stop_all(self) -> None:
        for name in stop_sequence(self.procs):
            self.procs[name].stop()

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def process_table(self) -> dict[str, dict[str, Any]]:
        """The orchestrator's `/api/v1/system/processes`, by process name (`coach#2`, ...)."""
        status, body = self["orchestrator"].get("/api/v1/system/processes")
        if status != 200:
            raise AssertionError(f"processes answered {status}: {body}")
        return {p["name"]: p for p in body["processes"]}

    def redis(self) -> SyncRedis:
        """A synchronous client of the fleet's Redis (a RedisCluster when it is a cluster's
        node), decoded replies; the caller closes it."""
        return sync_client(self.redis_url)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def call(
        self, name: str, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """One request with the fleet's token; status 0 when the service does not answer."""
        return probe_json(method, self.url(name) + path, body, timeout=timeout, token=self.token)
