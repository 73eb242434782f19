"""Request models of the training API (bounded, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from shared.keys import MAX_SHARDS
from shared.validation import LearnerId, QueryModel, StrictModel

TopicKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=40, strip_whitespace=True)]

MAX_BATCH_ROUNDS = 1000
ShardNumber = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,3})$")]


class LearnerBody(StrictModel):
    learner: LearnerId | None = None


class StartRequest(StrictModel):
    learner: LearnerId | None = None
    reset: bool = False


class RoundRequest(LearnerBody):
    pass


class BatchRequest(StrictModel):
    learners: list[LearnerId] = Field(min_length=1, max_length=MAX_BATCH_ROUNDS)
    rounds_per_learner: int = Field(1, ge=1, le=50)
    # A coach replica's fencing tokens, by shard: each learner's commit carries its shard's and is
    # refused (outcome `fenced`) once the shard's lease has moved on. A shard not listed is
    # committed unfenced. Shard numbers above the fleet's shard count are refused by the route.
    fences: dict[ShardNumber, Annotated[int, Field(ge=0, le=2**62)]] | None = Field(
        None, max_length=MAX_SHARDS
    )

    @model_validator(mode="after")
    def _total(self) -> BatchRequest:
        unique = list(dict.fromkeys(self.learners))
        if len(unique) * self.rounds_per_learner > MAX_BATCH_ROUNDS:
            raise ValueError(f"at most {MAX_BATCH_ROUNDS} rounds per call (learners × rounds)")
        self.learners = unique
        return self


class SelectionPatch(StrictModel):
    targetedMode: bool | None = None
    targetThreshold: int | None = Field(None, ge=1, le=100)
    roundRobinZeros: bool | None = None
    autoFillGaps: bool | None = None
    gapsCount: int | None = Field(None, ge=1, le=9)
    stickyBatch: bool | None = None
    minAttemptsInBatch: int | None = Field(None, ge=0, le=100)


class SettingsRequest(StrictModel):
    learner: LearnerId | None = None
    parallelTraining: bool | None = None
    maxParallel: int | None = Field(None, ge=1, le=9)
    spacedRepetition: bool | None = None
    selection: SelectionPatch | None = None


class ProblemIn(StrictModel):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,48}$")] | None = None
    topic: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    difficulty: Literal["easy", "medium", "hard"] = "easy"
    problem: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    keywords: list[Keyword] = Field(min_length=1, max_length=20)


class NewTopicRequest(StrictModel):
    key: TopicKey
    name: Annotated[str, StringConstraints(min_length=1, max_length=80, strip_whitespace=True)]
    problems: list[ProblemIn] = Field(min_length=1, max_length=10)
    background: bool = True
    force: bool = False


class CreateLearnerRequest(StrictModel):
    id: LearnerId | None = None
    region: Region = "local"
    active: bool = True


class LearnerQuery(QueryModel):
    learner: LearnerId | None = None


class HistoryQuery(QueryModel):
    learner: LearnerId | None = None
    limit: int = Field(20, ge=1, le=1000)


class ListQuery(QueryModel):
    # The `seq` of the last learner of the previous page (its position in the listing order).
    cursor: int = Field(0, ge=0, le=2**62)
    limit: int = Field(50, ge=1, le=500)
