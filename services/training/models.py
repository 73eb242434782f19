"""Request models of the training API (bounded, unknown fields refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from shared.compat import ignored
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


# The selection settings the original fleet's clients send at the top level of the body.
TOP_LEVEL_SELECTION = ("targetThreshold", "autoFillGaps", "gapsCount")
SETTINGS_FIELDS = ("parallelTraining", "maxParallel", "spacedRepetition", "selection")


def _not_null(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _some_setting(schema: dict[str, Any]) -> None:
    # An update that sets nothing is refused (empty_settings): at least one setting not null.
    schema["anyOf"] = [_not_null(name) for name in (*SETTINGS_FIELDS, *TOP_LEVEL_SELECTION)]
    # A top-level selection field and the same field inside `selection` are not given together.
    schema["allOf"] = [
        {
            "not": {
                **_not_null(name),
                "required": [name, "selection"],
                "properties": {
                    name: {"not": {"type": "null"}},
                    "selection": {"type": "object", **_not_null(name)},
                },
            }
        }
        for name in TOP_LEVEL_SELECTION
    ]


class SettingsRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra=_some_setting)

    learner: LearnerId | None = None
    parallelTraining: bool | None = None
    maxParallel: int | None = Field(None, ge=1, le=9)
    spacedRepetition: bool | None = None
    selection: SelectionPatch | None = None
    # Accepted at the top level too, as the original fleet's clients send them; applied as the
    # `selection` field of the same name (a different value in both places is refused).
    targetThreshold: int | None = Field(
        None, ge=1, le=100, description="Same as selection.targetThreshold"
    )
    autoFillGaps: bool | None = Field(None, description="Same as selection.autoFillGaps")
    gapsCount: int | None = Field(None, ge=1, le=9, description="Same as selection.gapsCount")
    _folded: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _fold_top_level(self) -> SettingsRequest:
        given = {
            name: getattr(self, name)
            for name in TOP_LEVEL_SELECTION
            if getattr(self, name) is not None
        }
        if not given:
            return self
        selection = self.selection or SelectionPatch()
        for name, value in given.items():
            if getattr(selection, name) is not None:
                raise ValueError(f"{name} and selection.{name} name the same setting; give one")
            setattr(selection, name, value)
            setattr(self, name, None)
            self._folded.append(name)
        self.selection = selection
        return self

    def folded(self) -> list[str]:
        """Notes on the top-level fields applied as selection fields."""
        return [f"{name}: applied as selection.{name}" for name in self._folded]


class ProblemIn(StrictModel):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,48}$")] | None = None
    topic: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None
    difficulty: Literal["easy", "medium", "hard"] = "easy"
    problem: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    keywords: list[Keyword] = Field(min_length=1, max_length=20)


TopicName = Annotated[
    str, StringConstraints(min_length=1, max_length=80, strip_whitespace=True, pattern=r"\S")
]


def _key_or_topic(schema: dict[str, Any]) -> None:
    # Exactly one of the two names, not null (the validator below says the same).
    schema["oneOf"] = [
        {
            **_not_null("key"),
            "not": {"required": ["topic"], "properties": {"topic": {"not": {"type": "null"}}}},
        },
        {
            **_not_null("topic"),
            "not": {"required": ["key"], "properties": {"key": {"not": {"type": "null"}}}},
        },
    ]


class NewTopicRequest(StrictModel):
    """`key` or `topic` (the name the original fleet's clients use), not both. Without `name`
    the topic is named after its key; without `problems` it gets three generic system-design
    problems, as the original did (a topic without problems could never be trained)."""

    model_config = ConfigDict(json_schema_extra=_key_or_topic)

    key: TopicKey | None = None
    topic: TopicKey | None = Field(None, description="Same as key")
    name: TopicName | None = None
    problems: list[ProblemIn] | None = Field(None, min_length=1, max_length=10)
    background: bool = True
    force: bool = False
    description: Annotated[str, StringConstraints(max_length=500)] | None = ignored(
        "a topic here is its name and its problems"
    )
    difficulty: Annotated[str, StringConstraints(max_length=32)] | None = ignored(
        "each problem has its own difficulty (easy, medium, hard)"
    )

    @model_validator(mode="after")
    def _key(self) -> NewTopicRequest:
        if self.key is None and self.topic is None:
            raise ValueError("key (or topic) is required")
        if self.key is not None and self.topic is not None:
            raise ValueError("key and topic name the same thing; give one")
        self.key = self.key or self.topic
        return self

    @property
    def topic_key(self) -> str:
        assert self.key is not None  # set by the validator
        return self.key


class CalibrateRequest(StrictModel):
    """Lift the learner's topics that are within `delta` below `threshold` to it (all of them
    below it with `force`), if they have at least `minAttempts` attempts (any with `force`)."""

    learner: LearnerId | None = None
    threshold: int | None = Field(None, ge=1, le=100, description="default: targetThreshold")
    minAttempts: int | None = Field(None, ge=0, le=100, description="default: 2")
    delta: int = Field(3, ge=0, le=100)
    force: bool = False


class ForceMasteriesRequest(StrictModel):
    """Lift every topic of the learner below `threshold` to it."""

    learner: LearnerId | None = None
    threshold: int | None = Field(None, ge=1, le=100, description="default: targetThreshold")


class HyperStartRequest(StrictModel):
    learner: LearnerId | None = None
    rounds: int | None = Field(None, ge=1, le=10, description="cycles (one round each); 3")


class HyperStartQuery(QueryModel):
    learner: LearnerId | None = None
    rounds: int | None = Field(None, ge=1, le=10, description="cycles, as the original took")


class MicroBatchQuestion(StrictModel):
    domain: Annotated[str, StringConstraints(max_length=80)] | None = None
    question: Annotated[str, StringConstraints(max_length=500)] | None = None


class MicroBatchRequest(StrictModel):
    learner: LearnerId | None = None
    domain: Annotated[str, StringConstraints(max_length=80)] | None = ignored(
        "the learner's selection engine picks a round's domains"
    )
    question: MicroBatchQuestion | None = ignored(
        "questions come from the curriculum's problems, graded by keyword coverage"
    )


class TurboRoundRequest(StrictModel):
    learner: LearnerId | None = None
    rounds: int = Field(3, ge=1, le=10, description="rounds committed in one batch")


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
