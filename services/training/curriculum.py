"""The curriculum: the nine built-in domains (curriculum.json), topics added at run time, and the
relation map that meta's transfer efficiency spreads skill gains along.

Pure data and helpers; the Redis copy (so every replica sees added topics) is kept by
`curriculum_store.CurriculumStore`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    topic: str  # sub-topic label
    difficulty: str
    problem: str
    keywords: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "difficulty": self.difficulty,
            "problem": self.problem,
            "keywords": list(self.keywords),
        }


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    name: str
    problems: tuple[Problem, ...]
    background: bool = False
    order: int = 0
    # One of curriculum.json's domains: always part of readiness, and cannot be deleted. A topic
    # added at run time counts toward a learner's readiness only once that learner practised it.
    builtin: bool = False
    # Problem index per difficulty, nearest available when a tier is missing; computed once so the
    # round loop does no searching.
    by_difficulty: dict[str, Problem] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "problems": [p.to_dict() for p in self.problems],
            "background": self.background,
            "order": self.order,
        }


def make_topic(
    key: str, name: str, problems: list[dict[str, Any]], background: bool, order: int
) -> Topic:
    if not problems:
        # A topic with no problems would hold a gap slot in selection forever: such a topic
        # cannot be built at all.
        raise ValueError(f"topic {key!r} needs at least one problem")
    built = tuple(
        Problem(
            id=str(p.get("id") or f"{key}_{i + 1:03d}"),
            topic=str(p.get("topic") or name),
            difficulty=str(p.get("difficulty") or DIFFICULTIES[min(i, 2)]),
            problem=str(p["problem"]),
            keywords=tuple(str(k) for k in p["keywords"]),
        )
        for i, p in enumerate(problems)
    )
    for p in built:
        if not p.keywords:
            raise ValueError(f"problem {p.id!r} needs at least one keyword")
    tiers: dict[str, Problem] = {}
    for rank, difficulty in enumerate(DIFFICULTIES):
        exact = [p for p in built if p.difficulty == difficulty]
        if exact:
            tiers[difficulty] = exact[0]
            continue
        # nearest tier by rank distance, preferring the easier one on a tie
        tiers[difficulty] = min(
            built,
            key=lambda p: (
                abs(DIFFICULTIES.index(p.difficulty) - rank),
                DIFFICULTIES.index(p.difficulty),
            ),
        )
    return Topic(key, name, built, background, order, key in builtin_keys(), tiers)


def topic_from_dict(key: str, doc: dict[str, Any]) -> Topic:
    return make_topic(
        key, doc["name"], doc["problems"], bool(doc.get("background")), int(doc.get("order", 0))
    )


@functools.cache
def builtin_keys() -> frozenset[str]:
    """The keys of curriculum.json's domains."""
    doc = orjson.loads(resources.files(__package__).joinpath("curriculum.json").read_bytes())
    return frozenset(str(t["key"]) for t in doc)


# Which domains share enough ideas that practising one helps the other (meta's transfer efficiency
# spreads `state.transfer` of a skill gain along these edges). Symmetric by construction below.
_RELATED_EDGES = [
    ("dsa", "theory"),
    ("dsa", "compilers"),
    ("os", "networks"),
    ("os", "distributed"),
    ("networks", "security"),
    ("networks", "distributed"),
    ("databases", "distributed"),
    ("ml", "dsa"),
    ("theory", "compilers"),
    ("security", "os"),
]
RELATED: dict[str, tuple[str, ...]] = {}
for _a, _b in _RELATED_EDGES:
    RELATED[_a] = (*RELATED.get(_a, ()), _b)
    RELATED[_b] = (*RELATED.get(_b, ()), _a)


@functools.cache
def _builtin() -> tuple[Topic, ...]:
    # curriculum.json lists the domains in their fixed order (order breaks ties in selection);
    # each has an easy, a medium and a hard problem.
    doc = orjson.loads(resources.files(__package__).joinpath("curriculum.json").read_bytes())
    return tuple(
        make_topic(t["key"], t["name"], t["problems"], False, i) for i, t in enumerate(doc)
    )


def builtin_topics() -> list[Topic]:
    """The built-in topics, read from curriculum.json once per process."""
    return list(_builtin())


@dataclass(frozen=True, slots=True)
class Curriculum:
    """An immutable snapshot of the topics in selection order (built-ins first, then additions)."""

    topics: tuple[Topic, ...]
    version: int = 0
    by_key: dict[str, Topic] = field(default_factory=dict, compare=False)
    keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, topics: list[Topic], version: int = 0) -> Curriculum:
        ordered = tuple(sorted(topics, key=lambda t: (t.order, t.key)))
        return cls(ordered, version, {t.key: t for t in ordered}, tuple(t.key for t in ordered))

    def get(self, key: str) -> Topic | None:
        return self.by_key.get(key)
