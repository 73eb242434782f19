"""Request models of the web service's own endpoints."""

from __future__ import annotations

from pydantic import Field

from shared.validation import QueryModel, StrictModel

MAX_LEARNERS = 10_000_000


class ScaleRequest(StrictModel):
    """The learner population target; `hold` stops onboarding at the current population."""

    learners: int = Field(ge=0, le=MAX_LEARNERS)
    hold: bool = False


class EmptyBody(StrictModel):
    """Pause/resume take no fields (an empty body or `{}`)."""


class GatesQuery(QueryModel):
    """The metrics window (seconds) the gates are evaluated over."""

    window: int = Field(60, ge=10, le=86_400)
