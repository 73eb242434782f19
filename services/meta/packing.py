"""The compact form of the meta document and of its activity-log entries in Redis.

Both are JSON whose keys and many values are the same few dozen words in every learner (metric
names, phase names, the proposals' and strategies' descriptions, log messages) and whose times
are ISO strings. Stored as they are, they cost ~5 KB per learner; here every word of `WORDS` is
written as `~` and a short code, and a millisecond ISO time as `~@` and its epoch ms in base 36,
which makes them about a third as long. It is still JSON (the commit script checks that), and
`unpack(pack(x)) == x` for any JSON value: a string that starts with `~` is stored as `~~…`.

A document written before this form has no `~` strings and reads back unchanged; it is stored
compactly at its next commit.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.clock import iso_ms

# APPEND ONLY: a stored document names a word by its position here.
WORDS: tuple[str, ...] = (
    # keys, most frequent first
    "learningVelocity",
    "adaptationSpeed",
    "knowledgeRetention",
    "transferEfficiency",
    "status",
    "name",
    "startedAt",
    "completedAt",
    "before",
    "after",
    "type",
    "domains",
    "id",
    "description",
    "plan",
    "retentionDelta",
    "transferDelta",
    "metrics",
    "improvements",
    "time",
    "message",
    "data",
    "phases",
    "started",
    "findings",
    "changes",
    "strategies",
    "results",
    "baseline",
    "current",
    "lastTrigger",
    "threshold",
    "recallBelow",
    "practised",
    "known",
    "untouched",
    "proposals",
    "focus",
    "gain",
    "retention",
    "transfer",
    "applied",
    "halfLivesLengthened",
    "phase",
    "metric",
    "delta",
    "at",
    "round",
    "ts",
    "delay_ms",
    "domain",
    "mastery",
    "recall",
    "findingsCount",
    "targets",
    "kr",
    "te",
    # values
    "completed",
    "in_progress",
    "not_started",
    "Learning Analysis",
    "Meta-Learning Algorithms",
    "Adaptive Learning Strategies",
    "Learning Acceleration",
    "weak_domains",
    "fading_domains",
    "coverage",
    "meta_learning_applied",
    "meta_loop_1",
    "meta_opt_1",
    "meta_mem_1",
    "Meta-cognitive loop to evaluate and select learning strategies per task",
    "Optimize learning rate dynamically based on feedback and error signals",
    "Memory consolidation routine to improve retention over time",
    "adaptive_context",
    "user_personalization",
    "uncertainty_driven",
    "Select learning strategy based on context and difficulty",
    "Personalize learning approaches based on user model",
    "Adapt more aggressively when uncertainty is high",
    "acceleration",
    "booster",
    "Meta-Learning Engine started",
    "Baseline captured",
    "Phase 1 analysis complete",
    "Phase 2 meta-learning algorithms applied",
    "Phase 3 adaptive strategies established",
    "Phase 4 learning acceleration complete",
    "Phase 1 completed: Learning Analysis",
    "Phase 2 completed: Meta-Learning Algorithms",
    "Phase 3 completed: Adaptive Learning Strategies",
    "Phase 4 completed: Learning Acceleration",
    "Retention booster applied",
)

MARK = "~"
TIME = "~@"
_DIGITS = string.digits + string.ascii_letters  # 62 one-character codes
_B36 = string.digits + string.ascii_lowercase


def _code(i: int) -> str:
    # One character for the first 62 words, then `!` and one more.
    return MARK + (_DIGITS[i] if i < len(_DIGITS) else "!" + _DIGITS[i - len(_DIGITS)])


_CODE = {word: _code(i) for i, word in enumerate(WORDS)}
_WORD = {code: word for word, code in _CODE.items()}
_ISO_LEN = len("2026-12-03T07:34:43.123Z")


def _b36(n: int) -> str:
    out = []
    while True:
        n, r = divmod(n, 36)
        out.append(_B36[r])
        if not n:
            return "".join(reversed(out))


def _time_ms(s: str) -> int | None:
    """Epoch ms of a millisecond ISO time that `iso_ms` writes back exactly, else None."""
    if len(s) != _ISO_LEN or s[-1] != "Z" or s[10] != "T":
        return None
    try:
        parsed = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    ms = round(parsed.timestamp() * 1000)
    return ms if ms >= 0 and iso_ms(ms) == s else None


def _pack_str(s: str) -> str:
    code = _CODE.get(s)
    if code is not None:
        return code
    if s.startswith(MARK):
        return MARK + s
    ms = _time_ms(s)
    if ms is not None:
        return TIME + _b36(ms)
    return s


def _unpack_str(s: str) -> str:
    if not s.startswith(MARK):
        return s
    if s.startswith(MARK + MARK):
        return s[1:]
    if s.startswith(TIME):
        return iso_ms(int(s[2:], 36))
    word = _WORD.get(s)
    if word is None:
        raise ValueError(f"unknown code {s!r} in a packed meta document")
    return word


def _walk(value: Any, f: Any) -> Any:
    if isinstance(value, str):
        return f(value)
    if isinstance(value, dict):
        return {f(k): _walk(v, f) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, f) for v in value]
    return value


def pack(value: Any) -> str:
    """The stored JSON of a document or log entry."""
    return orjson.dumps(_walk(value, _pack_str)).decode()


def unpack(raw: str | bytes) -> Any:
    """The document or log entry stored by `pack` (or as plain JSON, before it)."""
    return _walk(orjson.loads(raw), _unpack_str)
