"""The orchestrator's own tunables, on top of the fleet settings (all from the environment)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError

from shared.settings import FleetSettings

# The services that can run as several processes behind their one port (`<NAME>_REPLICAS`).
REPLICATED = ("training", "meta", "coach", "reports", "web")
MAX_REPLICAS = 16
# The control ports of replicas (ORCHESTRATOR_CONTROL_PORT_BASE) are laid out in blocks of this
# many per service, so a replica's port does not move when another service's count changes.
CONTROL_PORT_BLOCK = MAX_REPLICAS


def _whole_number(value: Any) -> Any:
    """A replica count is written as digits only: "2.0", "1e1" or "true" are refused rather
    than read as a number the operator may not have meant."""
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= MAX_REPLICAS:
            raise ValueError(f"must be a whole number from 1 to {MAX_REPLICAS}")
        return int(text)
    return value


ReplicaCount = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=MAX_REPLICAS)]


class OrchestratorSettings(FleetSettings):
    # manage: start the services as children; observe (false): the platform runs them, the
    # orchestrator only pre-arms and monitors them at their URLs (docker-compose).
    manage: bool = Field(True, validation_alias="ORCHESTRATOR_MANAGE")
    # Comma-separated subset of the service table to supervise (default: the whole table).
    services: str | None = Field(None, validation_alias="ORCHESTRATOR_SERVICES")

    health_interval_s: float = Field(
        0.5, ge=0.05, le=60, validation_alias="ORCHESTRATOR_HEALTH_INTERVAL"
    )
    health_timeout_s: float = Field(
        1.0, gt=0, le=30, validation_alias="ORCHESTRATOR_HEALTH_TIMEOUT"
    )
    health_failures: int = Field(3, ge=1, le=100, validation_alias="ORCHESTRATOR_HEALTH_FAILURES")
    ready_timeout_s: float = Field(
        20.0, gt=0, le=300, validation_alias="ORCHESTRATOR_READY_TIMEOUT"
    )
    stop_grace_s: float = Field(1.5, gt=0, le=60, validation_alias="ORCHESTRATOR_STOP_GRACE")

    restart_budget: int = Field(5, ge=1, le=100, validation_alias="ORCHESTRATOR_RESTART_BUDGET")
    restart_window_s: float = Field(
        60.0, gt=0, le=3600, validation_alias="ORCHESTRATOR_RESTART_WINDOW"
    )
    backoff_base_s: float = Field(0.2, ge=0, le=60, validation_alias="ORCHESTRATOR_BACKOFF_BASE")
    backoff_max_s: float = Field(5.0, ge=0, le=300, validation_alias="ORCHESTRATOR_BACKOFF_MAX")
    # A service that spent its restart budget (`failed`) is started again this long after, with
    # a fresh budget, rather than never: what failed it (Redis, a squatted port, a full disk)
    # may have been fixed meanwhile. 0 turns the retry off.
    failed_retry_s: float = Field(
        120.0, ge=0, le=86_400, validation_alias="ORCHESTRATOR_FAILED_RETRY"
    )

    # ---- replicas: N processes of a service behind its one port (docs/OPERATIONS.md, "Replicas")
    training_replicas: ReplicaCount = Field(1, validation_alias="TRAINING_REPLICAS")
    meta_replicas: ReplicaCount = Field(1, validation_alias="META_REPLICAS")
    coach_replicas: ReplicaCount = Field(1, validation_alias="COACH_REPLICAS")
    reports_replicas: ReplicaCount = Field(1, validation_alias="REPORTS_REPLICAS")
    web_replicas: ReplicaCount = Field(1, validation_alias="WEB_REPLICAS")
    # First control port of the replicas: replica k of the i-th service of the table answers on
    # base + i*16 + k-1, stable across restarts (for a static Prometheus scrape list). 0: each
    # replica's control port is chosen by the OS when the orchestrator first binds it.
    control_port_base: int = Field(
        0,
        ge=0,
        le=65535 - CONTROL_PORT_BLOCK * len(REPLICATED),
        validation_alias="ORCHESTRATOR_CONTROL_PORT_BASE",
    )

    prearm_attempts: int = Field(6, ge=1, le=50, validation_alias="ORCHESTRATOR_PREARM_ATTEMPTS")
    prearm_backoff_max_s: float = Field(
        2.0, ge=0, le=60, validation_alias="ORCHESTRATOR_PREARM_BACKOFF_MAX"
    )
    # FAST_LANE_ON (default on) and the fast-lane settings the coach is pre-armed with.
    fast_lane_on: bool = Field(True, validation_alias="FAST_LANE_ON")
    fast_lane_weight: int = Field(2, ge=1, le=20, validation_alias="FAST_LANE_WEIGHT")
    fast_lane_interval_ms: int = Field(
        600, ge=50, le=60_000, validation_alias="FAST_LANE_INTERVAL_MS"
    )

    def replicas_of(self, service: str) -> int:
        """How many processes of `service` run behind its port (1 for a service that is not
        replicated)."""
        return int(getattr(self, f"{service}_replicas", 1)) if service in REPLICATED else 1

    def control_port_for(self, service: str, replica: int) -> int:
        """The control port replica `replica` (1-based) of `service` asks for: 0 (the OS picks)
        unless ORCHESTRATOR_CONTROL_PORT_BASE lays them out."""
        if not self.control_port_base:
            return 0
        block = REPLICATED.index(service) if service in REPLICATED else len(REPLICATED)
        return self.control_port_base + block * CONTROL_PORT_BLOCK + replica - 1


def settings_error(exc: ValidationError) -> str:
    """One line per refused variable, naming it and what it must be, for an operator's eyes."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}={error.get('input')!r}: {message}")
    return "; ".join(lines)
