"""Start and stop a fleet for benchmarks and load tests: every service on a free port, sharing a
private redis-server, so a benchmark never touches the operator's fleet on the documented ports.

Used as a library by the benchmark harness (`with BenchFleet() as fleet: fleet.start(...)`) and
as a command that keeps a private fleet up until Ctrl-C, for Locust runs by hand:

    python -m loadtests.fleetctl                       # every service, pre-armed, prints URLs
                                                       # (+ the orchestrator in observe mode)
    python -m loadtests.fleetctl --services training   # just training

The redis-server and service-process helpers here are also the test suite's (tests/support
re-exports them): loadtests is an installed package and must not depend on the tests, the tests may
depend on it. It kills only the processes it started, by their process group.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared import fleet
from shared.embedded_redis import find_redis_server, server_args

ROOT = Path(__file__).resolve().parents[1]
# What `start()` starts by default: every service the orchestrator would, in start order.
ALL_SERVICES = fleet.SUPERVISED


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 10.0,
    token: str | None = None,
) -> tuple[int, Any]:
    """A blocking HTTP call returning (status, decoded JSON or text); status 0 if unreachable."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


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


class RedisServer:
    """A redis-server of our own on a free port (or `port`), data in `data_dir`."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, appendonly: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        self.proc = subprocess.Popen(
            [binary, *server_args(self.port, self.data_dir, appendonly=self.appendonly)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded wait for the server to answer
            try:
                client.ping()
                client.close()
                return self
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in time")

    def kill(self) -> None:
        """kill -9: no chance to write anything more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


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
            status, _ = http_json("GET", self.url + path, timeout=1.0)
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


class BenchFleet:
    """A private Redis plus services on free ports; a context manager that stops everything.

    `redis_url` may point at an existing Redis instead (then no private one is started).
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        prefix: str = "bench",
        token: str | None = None,
        extra_env: dict[str, str] | None = None,
        workdir: Path | None = None,
        appendonly: bool = False,
    ) -> None:
        self._tmp = None if workdir else tempfile.mkdtemp(prefix="tooloo-bench-")
        self.workdir = workdir or Path(self._tmp or ".")
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis: RedisServer | None = None
        self._redis_url = redis_url
        self._appendonly = appendonly
        self.prefix = prefix
        self.token = token
        self.ports = {name: free_port() for name in fleet.NAMES}
        self.extra_env = dict(extra_env or {})
        self.procs: dict[str, ServiceProcess] = {}

    # ---- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> BenchFleet:
        if self._redis_url is None:
            self.redis = RedisServer(self.workdir / "redis", appendonly=self._appendonly).start()
            self._redis_url = self.redis.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def redis_url(self) -> str:
        if self._redis_url is None:
            raise RuntimeError("BenchFleet not entered")
        return self._redis_url

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLOO_")}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "TOOLOO_REDIS_PREFIX": self.prefix,
                "TOOLOO_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
                "TOOLOO_VAR_DIR": str(self.workdir / "var"),
            }
        )
        if self.token:
            env["TOOLOO_API_TOKEN"] = self.token
        for svc in fleet.SERVICES:
            env[svc.port_env] = str(self.ports[svc.name])
        env.update(self.extra_env)
        return env

    def start(self, *names: str, wait: bool = True, env: dict[str, str] | None = None) -> None:
        started = []
        for name in names or ALL_SERVICES:
            proc = ServiceProcess(
                name,
                fleet.service(name).module,
                self.ports[name],
                dict(self.env, **(env or {})),
                self.log_dir,
            )
            self.procs[name] = proc.start()
            started.append(proc)
        if wait:
            for proc in started:
                proc.wait_ready()

    def restart(self, name: str) -> ServiceProcess:
        old = self.procs[name]
        proc = ServiceProcess(name, old.module, old.port, old.env, self.log_dir)
        self.procs[name] = proc.start()
        return proc

    def stop(self, name: str) -> None:
        self.procs[name].stop()

    def close(self) -> None:
        for name in fleet.stop_sequence(self.procs):
            self.procs[name].stop()
        if self.redis is not None:
            self.redis.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- access -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def call(
        self, name: str, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        return http_json(method, self.url(name) + path, body, timeout=timeout, token=self.token)

    def prearm(self, *, learner: str = "default") -> list[tuple[str, int]]:
        """The orchestrator's pre-arm, for a fleet started without it: training started for one
        learner, meta started, coach started with the fast-lane defaults (weight 2, 600 ms).
        Returns each step with its status; raises if a step of a running service failed."""
        steps: list[tuple[str, str, str, Any]] = [
            ("training", "POST", "/api/v1/training/start", {"learner": learner}),
            ("meta", "POST", "/api/v4/meta-learning/start", {}),
            ("coach", "POST", "/api/v1/auto-coach/start", {}),
            (
                "coach",
                "POST",
                "/api/v1/auto-coach/fast-lane",
                {"enable": True, "weight": 2, "intervalMs": 600},
            ),
        ]
        done = []
        for service, method, path, body in steps:
            if service not in self.procs:
                continue
            status, answer = self.call(service, method, path, body)
            if status != 200:
                raise RuntimeError(f"pre-arm {service} {path} answered {status}: {answer}")
            done.append((f"{service} {path}", status))
        return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default=",".join(ALL_SERVICES))
    parser.add_argument("--no-prearm", action="store_true")
    parser.add_argument(
        "--no-orchestrator", action="store_true", help="skip the orchestrator (observe mode)"
    )
    parser.add_argument("--token", default=None, help="TOOLOO_API_TOKEN for the fleet")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.services.split(",") if n.strip()]
    unknown = [n for n in names if n not in fleet.BY_NAME]
    if unknown:
        parser.error(f"unknown services: {unknown}")
    with BenchFleet(token=args.token) as fleet:
        fleet.start(*names)
        if not args.no_prearm:
            fleet.prearm()
        if not args.no_orchestrator and (ROOT / "orchestrator" / "__main__.py").exists():
            # Observe mode: supervises nothing, answers /api/v1/system/status as in production.
            fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
            names.append("orchestrator")
        print(f"redis {fleet.redis_url} (prefix {fleet.prefix})")
        for name in names:
            print(f"{name:<12} {fleet.url(name)}  pid {fleet[name].pid}")
        print("Ctrl-C stops the fleet", flush=True)
        try:
            while all(p.alive for p in fleet.procs.values()):  # ends on Ctrl-C or a crash
                time.sleep(0.5)
            print("a service exited; stopping", file=sys.stderr)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
