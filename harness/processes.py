"""One service as a real OS process, and the signals that stop it.

Every process is started in a session of its own, so a kill of its process group also reaches
whatever it started itself (the orchestrator's children, honcho's processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.http import http_json, probe_json

# The repository: services run with it as their working directory, as `make run` runs them.
ROOT = Path(__file__).resolve().parents[1]


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


def terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> int | None:
    """SIGTERM to a process started in its own session, wait `timeout_s`, then kill -9 its whole
    process group as a last resort; its exit code (None if it was never started)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


class ServiceProcess:
    """One service as a real OS process (`python -m <module>`), output to a log file."""

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

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill() reaches its children
            )
        return self

    def wait_ready(self, timeout_s: float = 30.0, path: str = "/ready") -> float:
        """Poll `path` until 200; returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:  # bounded poll
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}"
                )
            status, _ = probe_json("GET", self.url + path, timeout=1.0)
            if status == 200:
                return time.monotonic() - started
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s:\n{self.logs()}")

    def logs(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9 the process group: no chance to clean up, as in a crash."""
        if self.alive and self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then kill -9 of the group after `timeout_s`; the exit code."""
        return terminate(self.proc, timeout_s)

    # HTTP against this service; these raise when it cannot be reached.
    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return http_json("GET", self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return http_json("POST", self.url + path, body if body is not None else {}, **kw)

    def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return http_json("DELETE", self.url + path, **kw)
