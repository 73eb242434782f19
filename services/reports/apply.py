"""Applying a batch of stream entries: turn each entry into its increments (aggregates.entry_ops)
and hand them, with the entry ids, to the `reports_apply` Lua script (beside this module), which
applies only the entries still pending in the consumer group and acknowledges them in the same
atomic step. This module is the Python side of the script's KEYS/ARGV protocol.

One call applies entries of ONE stream, and every key it passes is in that stream's slot: a
shard's rounds or meta stream with that shard's cursor, totals and minute hashes, or the system
stream with the `{system}` aggregates (aggregates.entry_ops builds the ops that way)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from services.reports.aggregates import RETENTION_S, Op, cursor_key, entry_ops, totals_key
from shared.events import StreamRef
from shared.keys import Keys
from shared.redis_types import FleetRedis
from shared.scripts import lua_source

GROUP = "reports"

Entry = tuple[str, Mapping[str, str] | None]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int


def apply_script(redis: FleetRedis) -> AsyncScript:
    """The `reports_apply` script registered on `redis` (called by SHA, reloaded on NOSCRIPT)."""
    return redis.register_script(lua_source(__package__, "reports_apply"))


def build_call(
    keys: Keys, stream: StreamRef, entries: Sequence[Entry]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one reports_apply call (layout documented in reports_apply.lua)."""
    per_entry: list[tuple[str, list[Op]]] = [
        (entry_id, entry_ops(keys, stream, entry_id, fields)) for entry_id, fields in entries
    ]
    # Keys with a retention TTL first (the script expires the first n_ttl targets); the last
    # known state of each service must outlive quiet periods, so it is kept without a TTL.
    persistent = {
        keys.reports_service_last,
        totals_key(keys, stream.shard),
        keys.reports_services_seen,
    }
    targets: list[str] = []
    for _, ops in per_entry:
        for op in ops:
            if op.key not in targets and op.key not in persistent:
                targets.append(op.key)
    n_ttl = len(targets)
    for _, ops in per_entry:
        for op in ops:
            if op.key not in targets:
                targets.append(op.key)
    index = {key: i + 1 for i, key in enumerate(targets)}
    args: list[Any] = [GROUP, stream.kind, RETENTION_S, n_ttl, len(per_entry)]
    for entry_id, ops in per_entry:
        args += [entry_id, len(ops)]
        for op in ops:
            args += [op.op, index[op.key], op.a, op.b]
    return [stream.key, cursor_key(keys, stream.shard), *targets], args


async def apply_entries(
    script: AsyncScript, keys: Keys, stream: StreamRef, entries: Sequence[Entry]
) -> ApplyResult:
    if not entries:
        return ApplyResult(0, 0)
    script_keys, args = build_call(keys, stream, entries)
    applied, skipped = await script(keys=script_keys, args=args)
    return ApplyResult(int(applied), int(skipped))
