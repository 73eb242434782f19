"""Request models of the training API (bounded, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from shared.keys import MAX_SHARDS
from shared.validation import LearnerId, QueryModel, StrictModel

TopicKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
# `\S`: the value is stripped before its length is checked, so blanks alone are refused; the
# pattern says so in the schema.
Keyword = Annotated[
    str, StringConstraints(min_length=1, max_length=40, strip_whitespace=True, pattern=r"\S")
]

MAX_BATCH_ROUNDS = 1000
ShardNumber = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,3})$")]


class LearnerBody(StrictModel):
    learner: LearnerId | None = None


class StartRequest(StrictModel):
    learner: LearnerId | None = None
    reset: bool = False


class RoundRequest(LearnerBody):
    pass


MAX_ROUNDS_PER_LEARNER = 50


def _batch_bound(schema: dict[str, Any]) -> None:
    # The bound on learners × rounds, in the schema's own terms: one branch per range of
    # rounds_per_learner that allows the same longest list. The branches are whole objects and
    # exclusive (each but the first requires rounds_per_learner; absent, it is 1): `oneOf` of
    # such branches is a form schemathesis's generator takes, where `anyOf` of partial
    # branches, or `if`/`then`, it refuses.
    props = schema["properties"]
    # Shard numbers are the fences' only keys: the pattern is not a filter of some keys among
    # others (JSON Schema's patternProperties alone would let any other key through).
    for option in props.get("fences", {}).get("anyOf", []):
        if option.get("type") == "object":
            option["additionalProperties"] = False
    ranges: dict[int, list[int]] = {}
    for r in range(1, MAX_ROUNDS_PER_LEARNER + 1):
        ranges.setdefault(MAX_BATCH_ROUNDS // r, []).append(r)
    branches = []
    for most, rs in ranges.items():
        branch: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["learners"] if min(rs) == 1 else ["learners", "rounds_per_learner"],
            "properties": {
                "learners": {**props["learners"], "maxItems": most},
                "rounds_per_learner": {"type": "integer", "minimum": min(rs), "maximum": max(rs)},
                # The coach's fencing tokens are allowed in every branch alike.
                **({"fences": props["fences"]} if "fences" in props else {}),
            },
        }
        branches.append(branch)
    schema["oneOf"] = branches


class BatchRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra=_batch_bound)

    learners: list[LearnerId] = Field(
        min_length=1,
        max_length=MAX_BATCH_ROUNDS,
        description=f"At most {MAX_BATCH_ROUNDS} learners × rounds_per_learner, as listed",
    )
    rounds_per_learner: int = Field(1, ge=1, le=MAX_ROUNDS_PER_LEARNER)
    # A coach replica's fencing tokens, by shard: each learner's commit carries its shard's and is
    # refused (outcome `fenced`) once the shard's lease has moved on. A shard not listed is
    # committed unfenced. Shard numbers above the fleet's shard count are refused by the route.
    fences: dict[ShardNumber, Annotated[int, Field(ge=0, le=2**62)]] | None = Field(
        None, max_length=MAX_SHARDS
    )

    @model_validator(mode="after")
    def _total(self) -> BatchRequest:
        # Counted as listed, duplicates included (a list the bound allows stays allowed however
        # many repeats it has); a learner listed twice still runs once.
        if len(self.learners) * self.rounds_per_learner > MAX_BATCH_ROUNDS:
            raise ValueError(f"at most {MAX_BATCH_ROUNDS} rounds per call (learners × rounds)")
        self.learners = list(dict.fromkeys(self.learners))
        return self


class SelectionPatch(StrictModel):
    targetedMode: bool | None = None
    targetThreshold: int | None = Field(None, ge=1, le=100)
    roundRobinZeros: bool | None = None
    autoFillGaps: bool | None = None
    gapsCount: int | None = Field(None, ge=1, le=9)
    stickyBatch: bool | None = None
    minAttemptsInBatch: int | None = Field(None, ge=0, le=100)


SETTINGS_FIELDS = ("parallelTraining", "maxParallel", "spacedRepetition", "selection")


def _some_setting(schema: dict[str, Any]) -> None:
    # An update that sets nothing is refused (empty_settings): at least one setting not null.
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in SETTINGS_FIELDS
    ]


class SettingsRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra=_some_setting)

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
    name: Annotated[
        str, StringConstraints(min_length=1, max_length=80, strip_whitespace=True, pattern=r"\S")
    ]
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
