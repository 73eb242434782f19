"""What the orchestrator knows about the fleet: the process table, the pre-arm steps and the
fleet phase derived from them. Plain data; the supervisor and pre-arm change it, the routes read
it. Everything here runs on the event loop thread, so no locking is needed for reads."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.fleet import Service

# Start times remembered per observed service: more than the replicas a platform would run.
SEEN_STARTS_KEPT = 64


class ProcState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"
    EXTERNAL = "external"


class Phase(StrEnum):
    WAITING_FOR_REDIS = "waiting_for_redis"
    STARTING = "starting"
    PRE_ARMING = "pre-arming"
    ARMED = "armed"
    DEGRADED = "degraded"
    STOPPING = "stopping"


@dataclass(eq=False)
class ProcessRecord:
    """One supervised process: a service, or one replica of a service run as several."""

    spec: Service
    port: int
    state: ProcState
    # 1..N when the service runs as N > 1 replicas behind its port; None for a single process.
    replica: int | None = None
    # The replica's private control port (health, ready, metrics); None for a single process,
    # which is probed on the service's port.
    control_port: int | None = None
    pid: int | None = None
    healthy: bool = False
    restarts: int = 0
    started_at: float | None = None  # wall clock of the current process's spawn
    last_exit: dict[str, Any] | None = None
    error: str | None = None
    health_failures: int = 0  # consecutive
    # Monotonic times of the restarts inside the budget window.
    restart_times: deque[float] = field(default_factory=deque)
    # Monotonic time it was marked failed for spending its restart budget: it is started again
    # ORCHESTRATOR_FAILED_RETRY seconds later (None: not failed, or failed for good).
    failed_at: float | None = None
    # In observe mode: the service's own uptime at the last check, and the start times (by its
    # clock) of the processes seen answering, to notice a platform restart that was quicker than
    # the health-check failure threshold. Several: a service scaled by the platform answers from
    # any of its replicas, each with its own start time.
    seen_uptime_s: float | None = None
    seen_starts: deque[float] = field(default_factory=lambda: deque(maxlen=SEEN_STARTS_KEPT))
    # One restart (or stop/start) of this service at a time.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    proc: Any = None  # asyncio.subprocess.Process of the current child
    watcher: Any = None  # the task awaiting the current child's exit
    # Set when the orchestrator itself stops the child, so its exit is not treated as a crash.
    stopping: bool = False

    @property
    def name(self) -> str:
        """`coach` for a single process, `coach#2` for a replica."""
        return self.spec.name if self.replica is None else f"{self.spec.name}#{self.replica}"

    @property
    def service(self) -> str:
        return self.spec.name

    @property
    def up(self) -> bool:
        if self.state is ProcState.EXTERNAL:
            return self.healthy
        return self.state is ProcState.RUNNING

    def view(self) -> dict[str, Any]:
        uptime = None
        if self.state is ProcState.EXTERNAL:
            uptime = self.seen_uptime_s if self.healthy else None
        elif self.pid is not None and self.started_at is not None:
            uptime = round(max(0.0, time.time() - self.started_at), 3)
        return {
            "name": self.name,
            "service": self.service,
            "replica": self.replica,
            "port": self.port,
            "control_port": self.control_port,
            "pid": self.pid,
            "state": self.state.value,
            "healthy": self.healthy,
            "restarts": self.restarts,
            "uptime_s": uptime,
            "last_exit": self.last_exit,
            "module": self.spec.module,
            "error": self.error,
        }


@dataclass(eq=False)
class StepRecord:
    name: str
    service: str
    ok: bool | None = None  # None: not run yet
    attempts: int = 0
    started_at: float | None = None
    duration_ms: float | None = None
    error: str | None = None
    # False once the step's service restarted (or went down) after the step last succeeded.
    valid: bool = False
    runs: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "ok": self.ok,
            "valid": self.valid,
            "attempts": self.attempts,
            "runs": self.runs,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


class FleetState:
    def __init__(self, mode: str, records: list[ProcessRecord], steps: list[StepRecord]) -> None:
        self.mode = mode
        self.started_at = time.time()
        self.processes: dict[str, ProcessRecord] = {r.name: r for r in records}
        self.steps: dict[str, StepRecord] = {s.name: s for s in steps}
        self.stopping = False
        self.prearm_running = False
        self.armed_at: float | None = None
        self.last_phase: Phase | None = None
        # Until Redis has answered once: nothing is started before (each service needs it).
        self.waiting_for_redis = False

    def replicas_of(self, service: str) -> list[ProcessRecord]:
        """The records of `service`: one, or one per replica."""
        return [r for r in self.processes.values() if r.service == service]

    def service_up(self, service: str) -> bool:
        """Whether calls to the service's port are answered: by any one of its replicas."""
        return any(r.up for r in self.replicas_of(service))

    def service_given_up(self, service: str) -> bool:
        """Whether no replica of `service` will answer unless an operator acts (all failed or
        stopped)."""
        records = self.replicas_of(service)
        return bool(records) and all(
            r.state in (ProcState.FAILED, ProcState.STOPPED) for r in records
        )

    def invalidate_steps_of(self, service: str) -> None:
        for step in self.steps.values():
            if step.service == service:
                step.valid = False

    def steps_of(self, service: str) -> list[str]:
        return [s.name for s in self.steps.values() if s.service == service]

    def phase(self) -> Phase:
        if self.stopping:
            return Phase.STOPPING
        if self.waiting_for_redis:
            return Phase.WAITING_FOR_REDIS
        records = self.processes.values()
        # A failed service, or one an operator stopped, leaves the fleet short of a service.
        if any(r.state in (ProcState.FAILED, ProcState.STOPPED) for r in records):
            return Phase.DEGRADED
        if not all(r.up for r in records):
            return Phase.STARTING
        if self.prearm_running or not all(s.valid for s in self.steps.values()):
            return Phase.PRE_ARMING
        return Phase.ARMED

    def update_phase(self) -> tuple[Phase, bool]:
        """The current phase, and whether it changed since the last call (armed_at follows)."""
        phase = self.phase()
        changed = phase is not self.last_phase
        if changed:
            self.last_phase = phase
            if phase is Phase.ARMED:
                self.armed_at = time.time()
        return phase, changed

    def status_view(self) -> dict[str, Any]:
        phase = self.phase()
        return {
            "phase": phase.value,
            "armed": phase is Phase.ARMED,
            "armed_at": self.armed_at if phase is Phase.ARMED else None,
            "started_at": self.started_at,
            "mode": self.mode,
            "prearm": {
                "running": self.prearm_running,
                "steps": [s.view() for s in self.steps.values()],
            },
            "services": {
                r.name: {"state": r.state.value, "healthy": r.healthy, "restarts": r.restarts}
                for r in self.processes.values()
            },
        }

    def processes_view(self) -> list[dict[str, Any]]:
        return [r.view() for r in self.processes.values()]
