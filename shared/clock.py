"""Wall-clock helpers every service formats time with: milliseconds since the epoch, as the
streams and counters store it, and ISO-8601 UTC text, as the API answers it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(epoch_s: float) -> str:
    """`2026-12-03T07:34:43.123Z`: UTC with millisecond precision."""
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def iso_ms(epoch_ms: int) -> str:
    return iso(epoch_ms / 1000)
