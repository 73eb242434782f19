"""The orchestrator's own tunables, on top of the fleet settings (all from the environment)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import FleetSettings


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
