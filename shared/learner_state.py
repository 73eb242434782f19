"""The learner's persisted state and its compact encoding.

One learner is one Redis hash (`Keys.learner_state`) with three fields: `v`, a version bumped by
every write, `s`, this state encoded by `encode()`, and `r`, the readiness flag that only the
round-commit script sets (it compares the round's mastery with the coach thresholds in Redis).
Training writes it with the round-commit script, meta with the compare-and-set script; both check
`v`, so neither can overwrite the other's update.

The encoding is deliberately compact (short keys, domains as arrays, untouched domains absent):
a freshly onboarded learner must cost well under 1 KiB of Redis memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

SCORE_WINDOW = 10  # scores kept per domain
DEFAULT_HALF_LIFE_S = 6 * 3600.0  # memory half-life of a never-practised skill


@dataclass(slots=True)
class DomainState:
    skill: float = 0.0  # latent skill in [0, 1] at `last`
    half_life: float = DEFAULT_HALF_LIFE_S  # seconds for recall probability to halve
    last: float = 0.0  # epoch seconds of last practice (0 = never)
    attempts: int = 0
    completed: int = 0  # attempts that scored >= 70
    mastery: float = 0.0  # 0-100, exponentially weighted average of recent scores
    confidence: float = 50.0
    next_review: float = 0.0  # epoch seconds (0 = none scheduled)
    scores: list[int] = field(default_factory=list)  # last SCORE_WINDOW scores, oldest first

    def to_list(self) -> list[Any]:
        # round(x * 10**k) / 10**k rather than round(x, k): the latter goes through a decimal
        # conversion and costs ~4x as much, and a round encodes every domain (~45 of them). Both
        # give the double nearest to a k-decimal number (they may pick the other neighbour on a
        # near-tie), so the text is as short, decoding is unchanged and re-encoding is stable.
        return [
            round(self.skill * 1e5) / 1e5,
            round(self.half_life * 10.0) / 10.0,
            round(self.last * 1e3) / 1e3,
            self.attempts,
            self.completed,
            round(self.mastery * 1e3) / 1e3,
            round(self.confidence * 100.0) / 100.0,
            round(self.next_review * 1e3) / 1e3,
            self.scores,
        ]

    @classmethod
    def from_list(cls, raw: list[Any]) -> DomainState:
        # Only encode() writes these lists, so the JSON types are already right (floats stay
        # floats; an integral float written by an older encoder may read back as an int, which
        # every computation accepts): no per-field conversion on the hot path.
        skill, half_life, last, attempts, completed, mastery, conf, next_review, scores = raw
        return cls(skill, half_life, last, attempts, completed, mastery, conf, next_review, scores)


@dataclass(slots=True)
class SelectionRuntime:
    """The selection engine's memory between rounds, stored with the learner so that a restart
    and every replica pick up where the last round left off."""

    locked_batch: list[str] = field(default_factory=list)
    join_attempts: dict[str, int] = field(default_factory=dict)
    untouched_cursor: int = 0
    background_cursor: int = 0


@dataclass(slots=True)
class LearnerState:
    id: str
    seed: int
    region: str = "local"
    created: float = 0.0  # epoch seconds
    active: bool = False  # training started for this learner
    rounds: int = 0  # rounds committed for this learner; with `seed` it seeds each round's RNG
    started_at: float = 0.0
    domains: dict[str, DomainState] = field(default_factory=dict)
    selection: SelectionRuntime = field(default_factory=SelectionRuntime)
    settings: dict[str, Any] = field(default_factory=dict)  # overrides of selection settings
    retention: float = 1.0  # meta: multiplier on half-life growth (>= 1)
    transfer: float = 0.0  # meta: share of a skill gain spread to related domains, [0, 1]
    # The round history's anchor (shared/history.py), committed with every round so the next
    # round's record is a small step from it: the topic keys records name by position (only
    # ever appended to), and the newest record's ts (ms) and average (hundredths).
    hist_topics: list[str] = field(default_factory=list)
    hist_ts: int = 0
    hist_avg: int = 0

    def domain(self, key: str) -> DomainState:
        """The domain's state; a never-practised domain reads as the zero state."""
        found = self.domains.get(key)
        return found if found is not None else DomainState()


def incarnation_marker(state: LearnerState) -> str:
    """A substring of `encode(state)` that identifies this incarnation of the learner (its random
    seed, which no write changes): the round-commit script's guard for callers that computed from
    a cached state (a deleted and re-created learner starts again at version 1)."""
    return f'"sd":{state.seed},'


def encode(state: LearnerState) -> str:
    doc: dict[str, Any] = {
        "id": state.id,
        "sd": state.seed,
        "rg": state.region,
        "cr": round(state.created * 1e3) / 1e3,
    }
    if state.active:
        doc["a"] = 1
    if state.rounds:
        doc["n"] = state.rounds
    if state.started_at:
        doc["st"] = round(state.started_at * 1e3) / 1e3
    if state.domains:
        doc["d"] = {k: v.to_list() for k, v in state.domains.items()}
    sel = state.selection
    if sel.locked_batch or sel.join_attempts or sel.untouched_cursor or sel.background_cursor:
        doc["sel"] = [
            sel.locked_batch,
            sel.join_attempts,
            sel.untouched_cursor,
            sel.background_cursor,
        ]
    if state.settings:
        doc["set"] = state.settings
    if state.retention != 1.0:
        doc["ret"] = round(state.retention, 4)
    if state.transfer:
        doc["xf"] = round(state.transfer, 4)
    if state.hist_topics:
        doc["hk"] = state.hist_topics
    if state.hist_ts:
        doc["ht"] = state.hist_ts
    if state.hist_avg:
        doc["ha"] = state.hist_avg
    return orjson.dumps(doc).decode()


def decode(raw: str | bytes) -> LearnerState:
    doc = orjson.loads(raw)
    from_list = DomainState.from_list
    sel_raw = doc.get("sel")
    selection = (
        SelectionRuntime(
            locked_batch=list(sel_raw[0]),
            join_attempts={k: int(v) for k, v in sel_raw[1].items()},
            untouched_cursor=int(sel_raw[2]),
            background_cursor=int(sel_raw[3]),
        )
        if sel_raw
        else SelectionRuntime()
    )
    return LearnerState(
        id=doc["id"],
        seed=int(doc["sd"]),
        region=doc.get("rg", "local"),
        created=float(doc.get("cr", 0.0)),
        active=bool(doc.get("a", 0)),
        rounds=int(doc.get("n", 0)),
        started_at=float(doc.get("st", 0.0)),
        domains={k: from_list(v) for k, v in doc.get("d", {}).items()},
        selection=selection,
        settings=dict(doc.get("set", {})),
        retention=float(doc.get("ret", 1.0)),
        transfer=float(doc.get("xf", 0.0)),
        hist_topics=list(doc.get("hk", ())),
        hist_ts=int(doc.get("ht", 0)),
        hist_avg=int(doc.get("ha", 0)),
    )
