"""Training's own settings (environment variables), on top of the fleet settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from shared.settings import FleetSettings


class TrainingSettings(FleetSettings):
    history_limit: int = Field(100, ge=1, le=10_000, validation_alias="TRAINING_HISTORY_LIMIT")
    # Topics in the curriculum, the nine built-ins included (POST new-topic answers 409 beyond).
    max_topics: int = Field(64, ge=9, le=1_000, validation_alias="TOOLOO_MAX_TOPICS")
    # Learner states cached in-process for single rounds (LRU; 0 = off; ~1 KB each). A stale entry
    # only costs a retry: see services/training/state_cache.py.
    state_cache: int = Field(50_000, ge=0, le=1_000_000, validation_alias="TRAINING_STATE_CACHE")
    # Connections of the single-round auto-pipeline (each carries one batch at a time).
    pipeline_connections: int = Field(
        2, ge=1, le=16, validation_alias="TRAINING_PIPELINE_CONNECTIONS"
    )
    # Concurrent single rounds of one learner committed together, at most this many per commit
    # (1: each commits alone, one round trip after another). See services/training/coalesce.py.
    round_coalesce_max: int = Field(
        32, ge=1, le=100, validation_alias="TRAINING_ROUND_COALESCE_MAX"
    )
    # Redis replicas that must have a round's commit before it is acknowledged (WAIT after each
    # pipelined batch; a timeout answers 503). Unset: 1 on a Redis Cluster whose every master has
    # a replica, else 0. See docs/OPERATIONS.md, "Redis Cluster".
    commit_wait_replicas: int | None = Field(
        None, ge=0, le=16, validation_alias="TOOLOO_COMMIT_WAIT_REPLICAS"
    )
    commit_wait_timeout_ms: int = Field(
        500, ge=1, le=60_000, validation_alias="TOOLOO_COMMIT_WAIT_TIMEOUT_MS"
    )
    # Learners created per second while the population is below scale.target.
    onboarding_rate: float = Field(
        5_000.0, gt=0, le=1_000_000, validation_alias="TRAINING_ONBOARDING_RATE"
    )
    # Unset: the fleet's regions (TOOLOO_REGIONS).
    onboarding_regions: str = Field("", validation_alias="TRAINING_ONBOARDING_REGIONS")
    # One tick creates at most this many learners (one pipelined round trip).
    onboarding_batch_max: int = Field(
        2_000, ge=1, le=50_000, validation_alias="TRAINING_ONBOARDING_BATCH"
    )
    onboarding_tick_s: float = Field(
        0.2, ge=0.01, le=10.0, validation_alias="TRAINING_ONBOARDING_TICK"
    )

    @field_validator("onboarding_regions")
    @classmethod
    def _regions(cls, value: str) -> str:
        return ",".join(r.strip() for r in value.split(",") if r.strip())

    def regions(self) -> list[str]:
        return self.onboarding_regions.split(",") if self.onboarding_regions else self.region_list()
