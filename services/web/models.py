"""Request models of the web service's own endpoints."""

from __future__ import annotations

import itertools
from typing import Annotated

from pydantic import Field, field_validator

from shared.validation import QueryModel, StrictModel

MAX_LEARNERS = 10_000_000


class ScaleRequest(StrictModel):
    """The learner population target. With `hold`, the active population is brought down to
    it (the newest learners beyond it deactivated, kept, reactivated when it rises); without,
    a target below the population only stops onboarding. `actor` is recorded with the change
    (`unspecified` when omitted)."""

    learners: int = Field(ge=0, le=MAX_LEARNERS)
    hold: bool = False
    actor: str = Field("unspecified", min_length=1, max_length=100, pattern=r"\S")


class EmptyBody(StrictModel):
    """Pause/resume take no fields (an empty body or `{}`)."""


class GatesQuery(QueryModel):
    """The metrics window (seconds) the gates are evaluated over: reports' own bounds (a shorter
    window would be refused there and show every gate as HOLD, "metrics unavailable")."""

    window: int = Field(60, ge=60, le=86_400)


GATE_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class GatesHistoryQuery(QueryModel):
    """The newest entries of the decision record, of one gate when `gate` is given."""

    limit: int = Field(100, ge=1, le=1000)
    gate: str | None = Field(None, pattern=GATE_ID)


class SignoffRequest(StrictModel):
    """A person's statement for a criterion the fleet cannot measure (revenue, ROI, incidents,
    compliance, staffing): its value in the criterion's unit, who states it, and why."""

    criterion: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    value: float = Field(ge=-1e15, le=1e15)
    actor: str = Field(min_length=1, max_length=100, pattern=r"\S")
    note: str | None = Field(None, max_length=500)


class ActorRequest(StrictModel):
    """Who re-opens a gate, and why."""

    actor: str = Field(min_length=1, max_length=100, pattern=r"\S")
    note: str | None = Field(None, max_length=500)


class PauseRequest(StrictModel):
    """Who pauses (or resumes) the whole fleet, and why; an empty body records `unspecified`."""

    actor: str = Field("unspecified", min_length=1, max_length=100, pattern=r"\S")
    note: str | None = Field(None, max_length=500)


SNAPSHOT_ID = r"^snap-[0-9]{1,16}-[0-9a-f]{6}$"


class SnapshotRequest(StrictModel):
    """Who records a snapshot of the controller settings, and why."""

    actor: str = Field(min_length=1, max_length=100, pattern=r"\S")
    note: str | None = Field(None, max_length=500)


class SnapshotsQuery(QueryModel):
    """The newest snapshots, newest first."""

    limit: int = Field(50, ge=1, le=200)


class RevertRequest(StrictModel):
    """Which snapshot's settings to put back, who does it, and why."""

    snapshot_id: str = Field(pattern=SNAPSHOT_ID)
    actor: str = Field(min_length=1, max_length=100, pattern=r"\S")
    note: str | None = Field(None, max_length=500)


Stage = Annotated[int, Field(ge=1, le=MAX_LEARNERS)]
HoldS = Annotated[int, Field(ge=1, le=10_000_000)]


class RampRequest(StrictModel):
    """Switch the ramp controller on or off; `stages` (strictly increasing population targets)
    and `hold_s` (one for all, or one per stage) replace the settings' for this ramp."""

    enabled: bool
    actor: str = Field(min_length=1, max_length=100, pattern=r"\S")
    stages: list[Stage] | None = Field(None, min_length=1, max_length=64)
    hold_s: list[HoldS] | None = Field(None, min_length=1, max_length=64)

    @field_validator("stages")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("stages must be strictly increasing")
        return value
