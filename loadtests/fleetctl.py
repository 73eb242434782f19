"""Start and stop a fleet for benchmarks and load tests: every service on a free port, sharing a
private redis-server, so a benchmark never touches the operator's fleet on the documented ports.

Used as a library by the benchmarks, the gate runner and the fuzzer
(`with BenchFleet() as fleet: fleet.start(...)`), and as a command that keeps a private fleet up
until Ctrl-C, for Locust runs by hand:

    python -m loadtests.fleetctl                       # every service, pre-armed, prints URLs
                                                       # (+ the orchestrator in observe mode)
    python -m loadtests.fleetctl --services training   # just training

The processes, ports and the redis-server come from the harness package the tests use too.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.fleet import Fleet
from harness.processes import ROOT, ServiceProcess
from harness.redis_server import RedisServer
from shared.fleet import BY_NAME, SUPERVISED

# What `start()` starts by default: every service the orchestrator would, in start order.
ALL_SERVICES = SUPERVISED


class BenchFleet(Fleet):
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
        super().__init__(
            redis_url or "",
            prefix,
            self.workdir / "logs",
            extra_env,
            token=token,
            var_dir=self.workdir / "var",
        )
        self.redis: RedisServer | None = None
        self._appendonly = appendonly

    # ---- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> BenchFleet:
        if not self.redis_url:
            self.redis = RedisServer(self.workdir / "redis", appendonly=self._appendonly).start()
            self.redis_url = self.redis.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self, *names: str, wait: bool = True, env: dict[str, str] | None = None
    ) -> list[ServiceProcess]:
        if not self.redis_url:
            raise RuntimeError("BenchFleet not entered")
        return super().start(*(names or ALL_SERVICES), wait=wait, env=env)

    def close(self) -> None:
        self.stop_all()
        if self.redis is not None:
            self.redis.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

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
    unknown = [n for n in names if n not in BY_NAME]
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
