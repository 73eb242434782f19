"""Request models of the meta service (unknown fields refused, no coercion, no NaN)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from shared.compat import ignored
from shared.validation import LearnerId, QueryModel, StrictModel

MAX_DELTA = 0.5


class LearnerBody(StrictModel):
    learner: LearnerId | None = None


# Both are stored as Redis integers (64-bit signed): a larger value is refused, and says so.
MAX_INT64 = 2**63 - 1


class TriggerModel(StrictModel):
    round: int = Field(ge=0, le=MAX_INT64)
    ts: int = Field(
        ge=0, le=MAX_INT64, description="epoch ms of the commit of the round that made it ready"
    )


class RunAllRequest(StrictModel):
    learner: LearnerId | None = None
    trigger: TriggerModel | None = None


MAX_BATCH = 100


class RunBatchItem(StrictModel):
    learner: LearnerId
    trigger: TriggerModel | None = None


class RunBatchRequest(StrictModel):
    items: list[RunBatchItem] = Field(
        min_length=1, max_length=MAX_BATCH, description="A learner listed again runs once"
    )

    @model_validator(mode="after")
    def _distinct(self) -> RunBatchRequest:
        # One learner twice would wait on its own run lock: it runs once, with its first item.
        # Merged rather than refused, because no schema can say "distinct by one field of the
        # items", and a request the schema allows must be accepted.
        first: dict[str, RunBatchItem] = {}
        for item in self.items:
            first.setdefault(item.learner, item)
        self.items = list(first.values())
        return self


def _one_target(schema: dict[str, Any]) -> None:
    schema["not"] = {
        "required": ["learner", "cohort"],
        "properties": {"learner": {"type": "string"}, "cohort": {"type": "string"}},
    }


class BoostRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra=_one_target)

    learner: LearnerId | None = None
    cohort: Literal["all"] | None = Field(None, description='"all": boost every learner')
    retentionDelta: float = Field(0.05, ge=0.0, le=MAX_DELTA)
    transferDelta: float = Field(0.04, ge=0.0, le=MAX_DELTA)
    # Sent by the original fleet's clients, which its boost never read either.
    targetAreas: list[Annotated[str, Field(max_length=80)]] | None = ignored(
        "a boost lengthens the half-life of every practised domain of the learner",
        max_length=50,
    )
    intensity: Annotated[str, Field(max_length=32)] | float | None = ignored(
        "retentionDelta and transferDelta size a boost"
    )

    @model_validator(mode="after")
    def _one_target(self) -> BoostRequest:
        if self.cohort is not None and self.learner is not None:
            raise ValueError("give either learner or cohort, not both")
        return self


class EmptyBody(StrictModel):
    pass


class LearnerQuery(QueryModel):
    learner: LearnerId | None = None


class ActivityQuery(QueryModel):
    learner: LearnerId | None = None
    limit: int = Field(50, ge=1, le=200)
