"""The Python side of the shared `commit_rounds` script (`shared/lua/commit_rounds.lua`): its
ARGV built in one place, so the script's header, training's store, the benchmarks and the tests
cannot drift apart on argument positions, and its replies read in one place."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from shared.errors import ApiError
from shared.readiness import DEFAULT_MAX_BELOW, DEFAULT_MIN_AVG_MASTERY

# How long an idempotency record answers for its key: a client's retries come within seconds or
# minutes; a day covers a retry after an outage without keeping records forever.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
# The script refuses more rounds per commit (its MAX_ROUNDS); the batch endpoint allows 50.
MAX_ROUNDS_PER_COMMIT = 1000
ERROR_PREFIX = "commit_rounds:"
# What an Idempotency-Key header may hold: it becomes part of a Redis key name, so a bounded
# length and a charset without spaces, braces (hash tags) or control characters.
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{8,128}")
IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key_of(raw: str | None) -> str | None:
    """The Idempotency-Key header's value, None when absent; ValueError when malformed."""
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(raw):
        raise ValueError(f"{IDEMPOTENCY_HEADER} must be 8 to 128 characters of A-Z a-z 0-9 _ . : -")
    return raw


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
    # The readiness thresholds (the coach's settings, as the caller last read them: the script
    # cannot read them itself, they live in another slot than the learner's shard).
    min_avg: float = DEFAULT_MIN_AVG_MASTERY
    max_below: float = DEFAULT_MAX_BELOW
    # The round id base of the learner's shard (`round_id_base(keys.shard_of(learner))`); no
    # default, so that no caller commits into one shard with another's ids.
    round_base: int = field(kw_only=True)
    # The history's anchor after these rounds (shared/history.py: `Anchor.encode()`); '' keeps
    # the stored one (rounds whose entries are all JSON objects).
    history_anchor: str = field(default="", kw_only=True)


def request_hash(*parts: str | bytes) -> str:
    """The idempotency record's fingerprint of a request: SHA-256 over its parts (the endpoint
    and the request in a canonical form), so the same key sent with another body is told apart
    without storing the body."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def commit_rounds_args(
    header: CommitHeader,
    rounds: Sequence[tuple[str, float]],
    guard: str | None = None,
    idempotency_hash: str | None = None,
    idempotency_ttl_ms: int = IDEMPOTENCY_TTL_MS,
    fence: int | None = None,
) -> list[Any]:
    """ARGV for `rounds`, each (history entry: a packed body from `shared.history.encode_entries`
    or a JSON object, duration ms), in the order they were run;
    `guard` is the incarnation guard the script checks against the stored state;
    `idempotency_hash` (with KEYS from `Keys.commit_rounds_keys(learner, idempotency_key)`) makes
    the script record the commit, or answer an earlier one recorded under the same key; `fence`
    (a coach replica's fencing token for the learner's shard) makes the commit happen only while
    the shard's fence still holds that token."""
    args: list[Any] = [
        header.version,
        header.state,
        header.learner,
        header.region,
        header.avg,
        header.below,
        header.next_review_ms,
        header.min_avg,
        header.max_below,
        header.history_limit,
        len(rounds),
        guard or "",
        idempotency_hash or "",
        idempotency_ttl_ms,
        header.round_base,
        "" if fence is None else fence,
        header.history_anchor,
    ]
    for entry, ms in rounds:
        args += [entry, ms]
    return args


@dataclass(frozen=True, slots=True)
class CommitReply:
    """The script's reply, read. `status`: 'committed', 'replayed' (an earlier commit under the
    same idempotency key; nothing written now), 'conflict' (version or incarnation; `version` and
    `state` are the learner's current ones), 'missing' (no such learner), 'mismatch' (the key
    was used for a different request), 'fenced' (the fencing token is no longer the shard's:
    nothing written) or 'inactive' (the learner is deactivated by a throttle: nothing written)."""

    status: str
    version: str = ""
    first_round: int = 0
    ready: bool = False
    became_ready: bool = False
    rounds: int = 0  # for 'replayed' and 'mismatch': how many rounds the recorded commit had
    state: str | bytes | None = None


def read_reply(res: Sequence[Any]) -> CommitReply:
    code = int(res[0])
    if code == 1:
        return CommitReply(
            "committed", str(res[1]), int(res[2]), int(res[3]) == 1, int(res[4]) == 1
        )
    if code == 2:
        return CommitReply(
            "replayed", str(res[1]), int(res[2]), int(res[3]) == 1, int(res[4]) == 1, int(res[5])
        )
    if code == 0:
        return CommitReply("conflict", str(res[1]), state=res[2])
    if code == -2:
        return CommitReply("mismatch", rounds=int(res[1]))
    if code == -3:
        return CommitReply("fenced")
    if code == -4:
        return CommitReply("inactive")
    return CommitReply("missing")


class CommitRejected(ApiError):
    """The script refused its arguments (an error reply raised before any write): a bug of the
    caller, never of the request, so nothing was committed and retrying will not help. Answered
    as a 500 whose message names the refused argument, not as an anonymous internal error."""

    status, code = 500, "commit_rejected"


def rejected_of(exc: ResponseError) -> CommitRejected | None:
    """The CommitRejected an error reply stands for, or None for any other Redis error."""
    message = str(exc)
    at = message.find(ERROR_PREFIX)
    if at < 0:
        return None
    return CommitRejected(message[at:])
