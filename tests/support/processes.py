"""Real service processes for integration tests.

`Fleet` gives every service a free port and starts the ones a test asks for as real OS processes
(`python -m <module>`), each with the same environment, so they find each other over HTTP exactly
as in production. Output goes to a log file per process, which a failing test can print.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.settings import SERVICE_PORTS
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "training": "services.training",
    "meta": "services.meta",
    "coach": "services.coach",
    "reports": "services.reports",
    "web": "services.web",
    "orchestrator": "orchestrator",
}


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


class ServiceProcess:
    def __init__(
        self, name: str, module: str, port: int, env: dict[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.module = module
        self.port = port
        self.env = env
        self.log_path = log_dir / f"{name}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 20.0, path: str = "/ready") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded poll
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}"
                )
            try:
                status, _ = http_json("GET", self.url + path, timeout=1.0)
                if status == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s:\n{self.logs()}")

    def logs(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 the process (and anything it started, its process group)."""
        if self.alive and self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

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
        self.ports = {name: free_port() for name in SERVICE_PORTS}
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
        for name, (var, _) in SERVICE_PORTS.items():
            env[var] = str(self.ports[name])
        env.update(extra_env or {})
        self.env = env
        self.procs: dict[str, ServiceProcess] = {}

    def start(
        self, *names: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> list[ServiceProcess]:
        started = []
        for name in names:
            proc_env = dict(self.env, **(env or {}))
            proc = ServiceProcess(name, MODULES[name], self.ports[name], proc_env, self.log_dir)
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
        # Coach first: it drives the others.
        order = ["coach", "orchestrator", "web", "reports", "meta", "training"]
        for name in sorted(self.procs, key=lambda n: order.index(n) if n in order else 99):
            self.procs[name].stop()
