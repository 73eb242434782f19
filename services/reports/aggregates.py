"""Pure aggregation logic of the reports service: histogram buckets and percentiles, minute
windows, the increments one stream entry contributes, and uptime from state transitions.

Nothing here touches Redis or aiohttp, so every rule is unit-tested directly.

Latencies (round duration, meta trigger delay) are kept as counts in fixed log-spaced buckets,
20 per decade from 0.1 ms to 10 s. Bucket counts add up across minutes, so a percentile over any
window is the merge of its minutes' histograms, exact to the bucket (about 12 % wide) — unlike
averaging per-minute percentiles, which is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.events import (
    META,
    META_TYPES,
    ROUNDS,
    SYSTEM,
    CompletedEvent,
    RoundEvent,
    StreamRef,
    SystemEvent,
    event_type,
    meta_event,
)

# The buckets are defined once (the services count request latencies in them too).
from shared.histogram import (  # noqa: F401 (re-exported)
    MAX_MS,
    MIN_MS,
    OVERFLOW,
    TOP,
    bucket_of,
    bucket_upper,
)
from shared.keys import Keys

# ---- histogram -------------------------------------------------------------------------------


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) of a bucket histogram, as the upper bound of the bucket that
    holds the value of rank ceil(q·n) (nearest-rank definition); None for an empty histogram."""
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    total = sum(c for c in hist.values() if c > 0)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for index in sorted(hist):
        count = hist[index]
        if count <= 0:
            continue
        seen += count
        if seen >= rank:
            return round(bucket_upper(index), 3)
    return round(bucket_upper(max(hist)), 3)  # unreachable: seen == total >= rank


def merge_hist(into: dict[int, int], prefix: str, fields: Mapping[str, str]) -> None:
    """Add the `<prefix><index>` fields of one minute hash into a histogram."""
    for name, value in fields.items():
        if name.startswith(prefix):
            try:
                index, count = int(name[len(prefix) :]), int(value)
            except ValueError:
                continue
            into[index] = into.get(index, 0) + count


# ---- minute windows --------------------------------------------------------------------------

RETENTION_S = 25 * 3600  # per-minute aggregates live a day plus margin


def minute_of(ms: int) -> int:
    return ms // 60_000


def window_minutes(now_ms: int, window_s: int) -> list[int]:
    """Minute buckets covering [now - window, now]: the current (partial) minute and enough whole
    minutes before it; the first one may start before the window (rounded out to whole minutes)."""
    last = minute_of(now_ms)
    first = minute_of(now_ms - window_s * 1000)
    return list(range(first, last + 1))


def last_minutes(now_ms: int, minutes: int) -> list[int]:
    """The last `minutes` minute buckets, oldest first, ending with the current one."""
    last = minute_of(now_ms)
    return list(range(last - minutes + 1, last + 1))


# ---- stream entries -> increments ------------------------------------------------------------

SERVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
UP_EVENTS = {"service_started"}
DOWN_EVENTS = {"service_stopped", "process_exited", "process_failed"}


@dataclass(frozen=True, slots=True)
class Op:
    """One increment the apply script performs: op in i|f|s|m|z (see reports_apply.lua)."""

    op: str
    key: str
    a: str
    b: str


def id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def transition_member(entry_id: str, state: str) -> str:
    """Sorted-set member of one up/down transition; zero-padded so equal-ms members sort in
    stream order."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):06d}:{state}"


def totals_key(keys: Keys, shard: int | None) -> str:
    """Where a stream's all-time counters go: its shard's totals, or the system stream's."""
    return keys.reports_system_totals if shard is None else keys.reports_totals(shard)


def minute_key(keys: Keys, shard: int | None, minute: int) -> str:
    return (
        keys.reports_system_minute(minute) if shard is None else keys.reports_minute(shard, minute)
    )


def cursor_key(keys: Keys, shard: int | None) -> str:
    return keys.reports_system_cursor if shard is None else keys.reports_cursor(shard)


def entry_ops(
    keys: Keys, stream: StreamRef, entry_id: str, fields: Mapping[str, str] | None
) -> list[Op]:
    """The increments one stream entry contributes (its fields read through shared.events),
    all to keys of the stream's own shard (the system stream's to the `{system}` keys), so the
    apply script that writes them with the XACK touches one slot.
    Time is the entry id's (Redis server) time, which is monotonic per stream and cannot be
    forged by a producer's clock.

    A deleted (trimmed) or malformed entry contributes only to the event counters, so it is
    acknowledged and never retried forever.
    """
    kind = stream.kind
    ms = id_ms(entry_id)
    minute = minute_key(keys, stream.shard, minute_of(ms))
    totals = totals_key(keys, stream.shard)
    ops = [
        Op("i", totals, "events", "1"),
        Op("i", totals, f"events:{kind}", "1"),
        Op("m", totals, "last_event_ms", str(ms)),
        Op("i", minute, f"ev:{kind}", "1"),
    ]
    if not fields:
        return ops
    if kind == ROUNDS:
        rnd = RoundEvent.from_fields(fields)
        ops.append(Op("i", totals, "rounds", "1"))
        ops.append(Op("i", minute, "rounds", "1"))
        if rnd.ms is not None:
            ops.append(Op("i", minute, f"lat:{bucket_of(rnd.ms)}", "1"))
            ops.append(Op("i", minute, "lat_n", "1"))
            ops.append(Op("f", minute, "lat_sum", repr(round(rnd.ms, 3))))
        if rnd.region and NAME_RE.match(rnd.region):
            ops.append(Op("i", minute, f"rr:{rnd.region}", "1"))
    elif kind == META:
        meta_type = event_type(fields)
        if meta_type in META_TYPES:
            ops.append(Op("i", totals, f"meta:{meta_type}", "1"))
            ops.append(Op("i", minute, f"meta:{meta_type}", "1"))
        meta = meta_event(fields)
        if isinstance(meta, CompletedEvent) and meta.delay_ms is not None:
            ops.append(Op("i", minute, f"md:{bucket_of(meta.delay_ms)}", "1"))
            ops.append(Op("f", minute, "md_sum", repr(round(meta.delay_ms, 3))))
    elif kind == SYSTEM:
        event = SystemEvent.from_fields(fields)
        service = event.service
        if not SERVICE_RE.match(service) or not NAME_RE.match(event.type):
            return ops
        ops.append(Op("i", minute, f"sys:{event.type}", "1"))
        if event.type == "process_restarted":
            ops.append(Op("i", minute, f"restart:{service}", "1"))
            ops.append(Op("i", totals, f"restarts:{service}", "1"))
        state = "up" if event.type in UP_EVENTS else "down" if event.type in DOWN_EVENTS else None
        if state is not None:
            ops.append(
                Op("z", keys.reports_service(service), str(ms), transition_member(entry_id, state))
            )
            ops.append(Op("s", keys.reports_service_last, service, f"{state}:{ms}"))
        else:
            # Known to the fleet even before its first up/down transition (e.g. only restarts).
            ops.append(Op("i", keys.reports_services_seen, service, "1"))
    return ops


# ---- uptime ----------------------------------------------------------------------------------


def _at(change: tuple[int, str]) -> int:
    return change[0]


def uptime_fraction(
    start_ms: int,
    end_ms: int,
    before: str | None,
    transitions: Iterable[tuple[int, str]],
    last_state: str | None = None,
) -> float | None:
    """Fraction of [start, end] a service was up.

    `before` is its state at `start` (its last transition before the window), `transitions` the
    (ms, "up"|"down") changes inside the window in stream order, `last_state` its last known state.
    With no transition at all in or before the window the last known state holds for the whole
    window. When the state at the window start is unknown (the service was first seen inside
    the window), only the time since its first transition counts: a fleet started 10 s ago has
    not been "down" for the 50 s before it existed. None when nothing is known.
    """
    # By time only: sorted() is stable, so transitions in the same millisecond keep the order
    # given (stream order, from their sorted-set members), not the order of their state names.
    changes = sorted(((max(start_ms, min(end_ms, t)), s) for t, s in transitions), key=_at)
    if before is None and not changes:
        if last_state is None:
            return None
        return 1.0 if last_state == "up" else 0.0
    if before is None:
        cursor, state = changes[0][0], changes[0][1]
        changes = changes[1:]
    else:
        cursor, state = start_ms, before
    known = end_ms - cursor
    up = 0
    for at, new_state in changes:
        if state == "up":
            up += at - cursor
        cursor, state = at, new_state
    if state == "up":
        up += end_ms - cursor
    if known <= 0:
        return 1.0 if state == "up" else 0.0
    return up / known


def parse_member(member: str) -> str:
    return member.rsplit(":", 1)[-1]
