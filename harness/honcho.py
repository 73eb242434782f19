"""The whole fleet as an operator starts it: `honcho start` on the repository's Procfile, with the
embedded Redis on a free port and its data in a temporary directory, and every service on a free
port, so nothing touches an operator's fleet on the documented ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from harness.http import http_json
from harness.ports import free_port
from harness.processes import ROOT, pid_alive, terminate
from shared.embedded_redis import fleet_password, fleet_url
from shared.fleet import NAMES, SERVICES
from shared.fleet_totals import rounds_total_sync
from shared.keys import DEFAULT_SHARDS, Keys


class HonchoFleet:
    """`honcho start` on the repository's Procfile, on free ports and a private embedded Redis."""

    def __init__(self, extra_env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.ports = {name: free_port() for name in NAMES}
        self.redis_port = free_port()
        self.var_dir = Path(tempfile.mkdtemp(prefix="tooloo-fleet-"))
        self.log_path = (log_dir or self.var_dir) / "honcho.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        drop = ("TOOLOO_", "PYTEST_", "ORCHESTRATOR_", "REDIS_URL", "FAST_LANE_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        for svc in SERVICES:
            env.pop(svc.url_env, None)
        env.update(
            {
                # `python` in the Procfile is this interpreter (the project's venv).
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "TOOLOO_VAR_DIR": str(self.var_dir),
                "TOOLOO_REDIS_PORT": str(self.redis_port),
                "TOOLOO_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for svc in SERVICES:
            env[svc.port_env] = str(self.ports[svc.name])
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.pids_seen: set[int] = set()
        self.keys = Keys(
            env.get("TOOLOO_REDIS_PREFIX", "tooloo"),
            int(env.get("TOOLOO_SHARDS", DEFAULT_SHARDS)),
        )

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HonchoFleet:
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "--no-colour", "-f", str(ROOT / "Procfile")],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pids_seen.add(self.proc.pid)
        return self

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM to honcho (as Ctrl-C would), then wait; force only as a last resort."""
        if self.proc is None:
            return None
        self.record_pids()
        return terminate(self.proc, timeout_s)

    def cleanup(self) -> None:
        """After stop(): kill -9 any process of this fleet still alive (only pids it reported),
        and remove the data directory."""
        for pid in self.pids_seen:
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.var_dir, ignore_errors=True)

    def __enter__(self) -> HonchoFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()

    # ---- observation -------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def get(self, name: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return http_json("GET", self.url(name) + path, timeout=timeout)

    def post(
        self, name: str, path: str, body: Any = None, timeout: float = 15.0
    ) -> tuple[int, Any]:
        return http_json("POST", self.url(name) + path, body or {}, timeout=timeout)

    def logs(self, tail: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    def status(self) -> dict[str, Any] | None:
        try:
            status, body = self.get("orchestrator", "/api/v1/system/status", timeout=2.0)
        except (urllib.error.URLError, OSError):
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def processes(self) -> dict[str, dict[str, Any]]:
        try:
            status, body = self.get("orchestrator", "/api/v1/system/processes", timeout=2.0)
        except (urllib.error.URLError, OSError):
            return {}
        if status != 200 or not isinstance(body, dict):
            return {}
        self.pids_seen.add(int(body["orchestrator"]["pid"]))
        table = {p["name"]: p for p in body["processes"]}
        self.pids_seen.update(p["pid"] for p in table.values() if p["pid"])
        return table

    def record_pids(self) -> None:
        self.processes()
        # honcho prints "<name> started (pid=N)" for the processes of the Procfile.
        for match in re.finditer(r"started \(pid=(\d+)\)", self.logs(tail=100_000)):
            self.pids_seen.add(int(match.group(1)))

    def wait_for(self, predicate: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded poll
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"honcho exited ({self.proc.returncode}):\n{self.logs()}")
            value = predicate()
            if value:
                return value
            time.sleep(poll_s)
        raise TimeoutError(f"{what} not seen within {timeout_s}s:\n{self.logs()}")

    def wait_armed(self, timeout_s: float = 60.0) -> dict[str, Any]:
        def armed() -> dict[str, Any] | None:
            status = self.status()
            return status if status and status.get("phase") == "armed" else None

        return self.wait_for(armed, timeout_s, "phase armed")

    @property
    def redis_url(self) -> str:
        """The embedded Redis's URL, with the fleet user's password from the var directory."""
        return fleet_url(self.redis_port, fleet_password(self.var_dir))

    def redis(self) -> Any:
        import redis as sync_redis

        return sync_redis.Redis.from_url(self.redis_url, decode_responses=True)

    def rounds_committed(self) -> int:
        with self.redis() as client:
            return rounds_total_sync(client, self.keys)

    def system_events(self, kind: str | None = None, service: str | None = None) -> list[dict]:
        with self.redis() as client:
            entries = client.xrange(self.keys.stream_system)
        return [
            fields
            for _, fields in entries
            if (kind is None or fields.get("type") == kind)
            and (service is None or fields.get("service") == service)
        ]


@contextmanager
def armed_fleet(
    extra_env: dict[str, str] | None = None,
    *,
    log_dir: Path | None = None,
    armed_timeout_s: float = 90.0,
) -> Iterator[HonchoFleet]:
    """A `HonchoFleet` started and armed. Its log is printed when anything inside the block
    fails, and everything it started is stopped (and its data removed) after."""
    fleet = HonchoFleet(extra_env=extra_env, log_dir=log_dir)
    fleet.start()
    try:
        fleet.wait_armed(timeout_s=armed_timeout_s)
        yield fleet
    except BaseException:
        print(fleet.logs(tail=200))
        raise
    finally:
        fleet.stop()
        fleet.cleanup()


# What the tests' `honcho_fleet` fixture is: `armed_fleet` with a log directory of the test run's.
ArmedFleetFactory = Callable[..., AbstractContextManager[HonchoFleet]]
