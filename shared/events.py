"""The fleet's stream events: one frozen dataclass per entry shape, whose attribute names are the
entry's field names, with `to_fields()` (the entry as XADD takes it) and `from_fields()` (the
entry as XRANGE/XREADGROUP return it with `decode_responses=True`: a dict of strings).

Streams and their entries (keys from shared/keys.py; `fleet_streams` lists them all):
- `…:{s:<n>}:events:rounds`, one per shard: `RoundEvent`, one per round committed for a learner
  of that shard;
- `…:{s:<n>}:events:meta`, one per shard: `ReadyEvent` (a learner became ready) and
  `CompletedEvent` (meta ran for a learner), told apart by their `type` field;
- `…:{system}:events`, one for the fleet: `SystemEvent` (a service started or stopped, a process
  restarted, a setting changed, …), appended with `emit_system_event`.
A learner's events go to its own shard's streams (they are written in the same atomic step as
its state), so one stream holds a learner's events in commit order; there is no order between
two shards' streams.

Reading is lenient by design, because a stream is input from other processes and readers
must keep going past a bad entry: a text field that is missing reads as "", a number that is
missing or does not parse reads as None, and each reader decides what it can do without it
(reports still counts the entry; the coach gives up on a ready event without round or ts).
`to_fields()` leaves None numbers out, so `from_fields(e.to_fields()) == e`. The attribute
names are the field names, spelled only there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, cast

from shared.clock import now_ms
from shared.keys import Keys
from shared.redis_types import FleetRedis, field_map, text

TYPE = "type"  # the field naming an entry's kind on the meta and system streams
# The coach's consumer group on the meta stream. Named here because the stream trimmer
# (reports) creates it too when missing: a ready event must stay until the coach has read it,
# even if no coach has started yet (shared/stream_trim.py trims below every group's progress).
COACH_META_GROUP = "coach"

Fields = Mapping[str, str]  # one stream entry as redis-py returns it (decode_responses=True)

# The kinds of stream: a shard has one rounds and one meta stream, the fleet one system stream.
ROUNDS = "rounds"
META = "meta"
SYSTEM = "system"
STREAM_KINDS = (ROUNDS, META, SYSTEM)
SHARD_STREAM_KINDS = (ROUNDS, META)


@dataclass(frozen=True, slots=True)
class StreamRef:
    """One stream of the fleet: its kind, its shard (None for the system stream) and its key."""

    kind: str
    shard: int | None
    key: str


def shard_streams(keys: Keys, shard: int) -> list[StreamRef]:
    """The rounds and meta streams of one shard (one hash tag: one XREADGROUP may read both)."""
    return [
        StreamRef(ROUNDS, shard, keys.stream_rounds(shard)),
        StreamRef(META, shard, keys.stream_meta(shard)),
    ]


def system_stream(keys: Keys) -> StreamRef:
    return StreamRef(SYSTEM, None, keys.stream_system)


def fleet_streams(keys: Keys) -> list[StreamRef]:
    """Every stream of the fleet: each shard's rounds and meta streams, then the system stream."""
    return [
        *(ref for shard in keys.all_shards() for ref in shard_streams(keys, shard)),
        system_stream(keys),
    ]


def _text(fields: Fields, name: str) -> str:
    return fields.get(name, "")


def _int(fields: Fields, name: str) -> int | None:
    try:
        return int(fields[name])
    except (KeyError, ValueError):
        return None


def _amount(fields: Fields, name: str) -> float | None:
    """A duration or mastery: finite and not negative, else None (a NaN or a negative latency
    would poison every aggregate it is added to)."""
    try:
        value = float(fields[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _ints(fields: Fields, name: str) -> tuple[int, ...]:
    """A comma-separated list of integers ("" is the empty list)."""
    try:
        return tuple(int(n) for n in _text(fields, name).split(",") if n)
    except ValueError:
        return ()


# How a field is read, by its annotation: the one place a field's type meets its text.
_READERS: dict[str, Callable[[Fields, str], Any]] = {
    "str": _text,
    "int | None": _int,
    "float | None": _amount,
    "tuple[int, ...]": _ints,
}


def _text_of(value: Any) -> str:
    """A field value as Redis stores it: a bool as 0/1, an int or float as its str() (the bytes
    redis-py sends for one), anything else as its str()."""
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def event_type(fields: Fields) -> str:
    """The `type` of a meta or system entry ("" when it has none)."""
    return _text(fields, TYPE)


class _Entry:
    """to_fields/from_fields of an event dataclass, from its attributes: the attribute names
    are the entry's field names, in the order the writers put them; `TYPE`, when set, is
    written first as the `type` field."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""

    def to_fields(self) -> dict[str, str]:
        out = {TYPE: self.TYPE} if self.TYPE else {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out[f.name] = ",".join(str(v) for v in value)
            elif value is not None:
                out[f.name] = _text_of(value)
        return out

    @classmethod
    def from_fields(cls, fields: Fields) -> Self:
        return cls(
            # The annotations are text (`from __future__ import annotations`): the readers' keys.
            **{
                f.name: _READERS[cast(str, f.type)](fields, f.name)
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            }
        )


@dataclass(frozen=True, slots=True)
class RoundEvent(_Entry):
    """One committed training round, on its learner's shard's rounds stream.

    Written by `shared/lua/commit_rounds.lua` (one XADD per round of the commit), from its ARGV:
    `ts` is the Redis server's clock at commit, `ms` the round's duration, `avg` the learner's
    average mastery after the commit. Read by reports (round counts, latency, regions)."""

    round: int | None = None  # round id, unique fleet-wide (see shared.keys.ROUND_ID_STRIDE)
    learner: str = ""
    region: str = ""
    ts: int | None = None  # epoch ms of the commit
    ms: float | None = None  # the round's duration in ms
    avg: float | None = None  # the learner's average mastery


@dataclass(frozen=True, slots=True)
class ReadyEvent(_Entry):
    """A learner became ready (`type=ready`), on its shard's meta stream.

    Written by `shared/lua/commit_rounds.lua` when a commit moves the learner from not ready to
    ready: `round` is the last round id of that commit, `ts` the server's clock at commit (the
    meta trigger delay is measured from it), `avg`/`below` the readiness inputs. Read by the
    coach's meta trigger (which runs meta for the learner) and by reports (counts)."""

    TYPE: ClassVar[str] = "ready"

    learner: str = ""
    round: int | None = None
    ts: int | None = None  # epoch ms of the commit
    avg: float | None = None  # average mastery
    below: int | None = None  # domains below the learner's target


@dataclass(frozen=True, slots=True)
class CompletedEvent(_Entry):
    """Meta ran for a learner (`type=completed`), on its shard's meta stream.

    Built by the meta engine and written by `services/meta/meta_commit.lua`, which takes these
    fields as ARGV pairs (`to_fields()`) and XADDs them in the commit that records the phases;
    the script also reads `delay_ms` by name for the meta stats. `round` and `delay_ms` are None
    (left out) when the run had no trigger. Read by reports (counts, meta trigger delay)."""

    TYPE: ClassVar[str] = "completed"

    learner: str = ""
    round: int | None = None  # the round of the ready event that triggered the run
    delay_ms: float | None = None  # from that round's commit to this run
    ts: int | None = None  # epoch ms of the run
    ran: tuple[int, ...] = ()  # phases run now


# Counted by reports like the two above; no producer writes it today.
FAILED_TYPE = "failed"
META_TYPES = (ReadyEvent.TYPE, CompletedEvent.TYPE, FAILED_TYPE)


def meta_event(fields: Fields) -> ReadyEvent | CompletedEvent | None:
    """The typed event of one meta stream entry; None for a type without a schema."""
    kind = event_type(fields)
    if kind == ReadyEvent.TYPE:
        return ReadyEvent.from_fields(fields)
    if kind == CompletedEvent.TYPE:
        return CompletedEvent.from_fields(fields)
    return None


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """One entry of the system stream (`…:{system}:events`): `type` names what happened (service_started,
    process_restarted, settings_changed, …), `service` who reports it, `extra` the
    event's own fields (pid, port, setting, …) as text.

    Written by `emit_system_event` (every service and the orchestrator) and by the web service's
    scale/pause settings. Read by reports (restarts, uptime) and the Control Room."""

    type: str = ""
    service: str = ""
    ts: int | None = None  # epoch ms, the writer's clock
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        out = {TYPE: self.type, "service": self.service}
        if self.ts is not None:
            out["ts"] = str(self.ts)
        return {**out, **self.extra}

    @classmethod
    def from_fields(cls, fields: Fields) -> SystemEvent:
        own = (TYPE, "service", "ts")
        return cls(
            type=_text(fields, TYPE),
            service=_text(fields, "service"),
            ts=_int(fields, "ts"),
            extra={name: value for name, value in fields.items() if name not in own},
        )


async def emit_system_event(
    redis: FleetRedis, keys: Keys, *, service: str, kind: str, **fields: Any
) -> str:
    """Append one event (start, exit, restart, prearm step, settings change, …)."""
    event = SystemEvent(
        type=kind,
        service=service,
        ts=now_ms(),
        extra={name: _text_of(v) for name, v in fields.items() if v is not None},
    )
    # No MAXLEN: a length cap would delete entries reports has not read yet; the stream is
    # trimmed by its consumers' progress instead (shared/stream_trim.py).
    entry_id = await redis.xadd(keys.stream_system, field_map(event.to_fields()))
    return text(entry_id)
