"""The Python side of the shared `commit_rounds` script (`shared/lua/commit_rounds.lua`): its
ARGV built in one place, so the script's header, training's store, the benchmarks and the tests
cannot drift apart on argument positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.readiness import DEFAULT_MAX_BELOW, DEFAULT_MIN_AVG_MASTERY


@dataclass(frozen=True, slots=True)
class CommitHeader:
    """What one commit says about the learner after its last round."""

    version: str  # the state version the rounds were computed from
    state: str  # the new encoded LearnerState
    learner: str
    region: str
    avg: float  # average mastery after the last round
    below: int  # domains below the learner's target threshold
    next_review_ms: int
    history_limit: int
    stream_maxlen: int
    min_avg_default: float = DEFAULT_MIN_AVG_MASTERY
    max_below_default: float = DEFAULT_MAX_BELOW


def commit_rounds_args(
    header: CommitHeader, rounds: Sequence[tuple[str, float]], guard: str | None = None
) -> list[Any]:
    """ARGV for `rounds`, each (history entry JSON, duration ms), in the order they were run;
    `guard` is the incarnation guard the script checks against the stored state."""
    args: list[Any] = [
        header.version,
        header.state,
        header.learner,
        header.region,
        header.avg,
        header.below,
        header.next_review_ms,
        header.min_avg_default,
        header.max_below_default,
        header.history_limit,
        header.stream_maxlen,
        len(rounds),
    ]
    for entry, ms in rounds:
        args += [entry, ms]
    if guard is not None:
        args.append(guard)
    return args
