"""Move a fleet's Redis from the unsharded layout (shared/keys.py `LegacyKeys`) into the sharded one.

    tooloo-migrate            (or: python -m shared.migrate_layout)

uses REDIS_URL, TOOLOO_REDIS_PREFIX and TOOLOO_SHARDS like the services. The orchestrator runs it
before it starts any service; a service that finds the old layout still there refuses to start
and names this command (shared/app_factory.py). It runs on a single Redis only: a fleet never ran
on a Redis Cluster before it had shards, and the moves rename keys across slots.

What moves where (steps in this order, each idempotent; `keys.fleet_layout` records the run:
`migrating`, `done:<step>`, then `version`):
- coach keys named before the `{coach}` tag are merged into the tagged names (the tagged values
  win), as the coach did at start before shards;
- learners, one atomic script each (shared/migrate_learner.lua): the learner's keys, a creation
  number in its shard's index, its region in the shard's counts, its coach queue / ready / fast
  lane / coached entries with their scores. Each script also takes the learner off the old index,
  so the old index is the progress: a run killed half-way moves the rest when run again. Then a
  SCAN catches learner states missing from the old index, and the idempotency records (renamed:
  their remaining lifetime is kept);
- counters: shard 0's round counter takes the old fleet-wide value, so shard 0's next id is above
  every id ever given and the other shards' ids (base shard * 10^12) are above them all: no id is
  ever reissued, ids keep increasing for every learner, and the sum of the shards' counters stays
  the fleet's rounds total. Every shard's coach fence starts at the old fence (a token is never
  handed out twice);
- meta's counters go to shard 0's, reports' totals are split between shard 0's (rounds, meta
  types, events of the rounds and meta streams) and the system stream's (its events, restarts),
  reports' per-minute aggregates go to shard 0's minutes, the service transitions to the system
  stream's keys;
- streams (events the old consumers have not acknowledged must not be lost; they are re-appended
  rather than left for a final drain, so the new consumers need no code for the old layout): the
  events some consumer group has not processed are re-appended, with their ids, to the stream of
  their learner's shard, and every consumer group of the old stream is created on the new ones so
  that it sees exactly what it had not processed: the entries it had read and acknowledged are
  acknowledged for it, the ones it had read but not acknowledged are pending (for a consumer
  named `migrated`; the consumers take idle pending entries over as usual), the ones it had not
  read are new to it. An old stream with no group is copied whole (a group created later starts
  at its beginning). The system stream's unread events are appended to the new system stream
  (which the orchestrator may already be writing) with new ids. So no event is lost and none is
  counted twice;
- last, the old keys are deleted and `version` is set.

Then, on any Redis (a Cluster too), learners' history lists are folded into the compact history
string (shared/migrate_history.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from shared.keys import COACH_NAMES, COACH_PER_SHARD, Keys, LegacyKeys
from shared.logging import get_logger, redact_text
from shared.migrate_history import compact_histories
from shared.redis_types import FleetRedis, field_map, scored, text, text_map, text_or_none
from shared.scripts import lua_source
from shared.shards import ensure_shard_count

log = get_logger(__name__)

LAYOUT_VERSION = "2"  # 1: unsharded; 2: sharded
BATCH = 500  # learners per pipelined batch of move scripts, entries per stream page
MIGRATED_CONSUMER = "migrated"
COMMAND = "tooloo-migrate"


CLUSTER_REFUSED = (
    "the layout migration runs on a single Redis only (the unsharded layout never ran on a "
    "Cluster): migrate on the single Redis, then move the data to the Cluster"
)


class MigrationRefused(RuntimeError):
    """The migration cannot run against this Redis (a Cluster, a learner it cannot move)."""


class LegacyLayoutFound(RuntimeError):
    """A service found the unsharded layout: it must not write into a half-moved keyspace."""


async def legacy_keys_found(redis: FleetRedis, keys: Keys) -> list[str]:
    """Which keys of the unsharded layout this Redis holds (one EXISTS each, pipelined; none of
    them exists in the sharded layout)."""
    markers = LegacyKeys(keys.prefix).legacy_markers()
    async with redis.pipeline(transaction=False) as pipe:
        for key in markers:
            pipe.exists(key)
        found = await pipe.execute()
    return [key for key, n in zip(markers, found, strict=True) if int(n)]


async def refuse_legacy_layout(redis: FleetRedis, keys: Keys) -> None:
    """Raise LegacyLayoutFound (naming the migration command) when the old layout is there;
    reads only."""
    found = await legacy_keys_found(redis, keys)
    if found:
        raise LegacyLayoutFound(
            f"this Redis (prefix {keys.prefix!r}) holds the fleet's unsharded key layout "
            f"({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}); run `{COMMAND}` "
            "(python -m shared.migrate_layout) with the same REDIS_URL, TOOLOO_REDIS_PREFIX and "
            "TOOLOO_SHARDS to move it into the sharded layout, then start the fleet again "
            "(the orchestrator runs it by itself)"
        )


@dataclass
class Report:
    learners: int = 0
    dropped: int = 0  # old index entries without a state
    idempotency_records: int = 0
    stream_entries: dict[str, int] = field(default_factory=dict)
    steps_done: list[str] = field(default_factory=list)
    ran: bool = False
    histories: int = 0  # history lists folded into the compact string (shared/migrate_history.py)


class Migration:
    def __init__(self, redis: Redis, keys: Keys, *, batch: int = BATCH) -> None:
        self.redis = redis
        self.keys = keys
        self.old = LegacyKeys(keys.prefix)
        self.batch = batch
        self.report = Report()
        self._move: AsyncScript = redis.register_script(lua_source("shared", "migrate_learner"))
        # Called after each step (tests stop a run there, as a kill would).
        self.after_step: Callable[[str], Awaitable[None]] | None = None

    # ---- driver ----------------------------------------------------------------------------
    async def run(self) -> Report:
        if not await legacy_keys_found(self.redis, self.keys):
            return self.report  # a fresh or already migrated fleet: nothing to do, nothing written
        await ensure_shard_count(self.redis, self.keys)
        self.report.ran = True
        layout = self.keys.fleet_layout
        await self.redis.hsetnx(layout, "migrating", str(int(time.time() * 1000)))
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("coach_untagged", self._coach_untagged),
            ("learners", self._learners),
            ("stray_learners", self._stray_learners),
            ("idempotency", self._idempotency),
            ("counters", self._counters),
            ("meta_stats", self._meta_stats),
            ("reports", self._reports),
            ("stream_rounds", lambda: self._stream("rounds")),
            ("stream_meta", lambda: self._stream("meta")),
            ("stream_system", lambda: self._stream("system")),
            ("cleanup", self._cleanup),
        ]
        for name, step in steps:
            if await self.redis.hget(layout, f"done:{name}") is not None:
                continue
            await step()
            await self.redis.hset(layout, f"done:{name}", str(int(time.time() * 1000)))
            self.report.steps_done.append(name)
            log.info("layout_migration_step", step=name)
            if self.after_step is not None:
                await self.after_step(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(layout, "version", LAYOUT_VERSION)
            pipe.hdel(layout, "migrating", "system_copied", *(f"done:{name}" for name, _ in steps))
            await pipe.execute()
        log.info(
            "layout_migrated",
            learners=self.report.learners,
            dropped=self.report.dropped,
            streams=self.report.stream_entries,
        )
        return self.report

    # ---- coach keys before the tag ----------------------------------------------------------
    async def _coach_untagged(self) -> None:
        for name in COACH_NAMES:
            old, new = self.old.coach_untagged(name), self.old.coach(name)
            kind = text(await self.redis.type(old))
            if kind == "none":
                continue
            if not await self.redis.exists(new):
                await self.redis.rename(old, new)
                continue
            # Both: merge, the tagged (newer) values win; NX-style writes make a re-run harmless.
            if kind == "hash":
                for k, v in (await self.redis.hgetall(old)).items():
                    await self.redis.hsetnx(new, k, v)
            elif kind == "zset":
                pairs = scored(await self.redis.zrange(old, 0, -1, withscores=True))
                if pairs:
                    await self.redis.zadd(new, dict(pairs), nx=True)
            elif kind == "set":
                members = await self.redis.smembers(old)
                if members:
                    await self.redis.sadd(new, *members)
            await self.redis.delete(old)

    # ---- learners --------------------------------------------------------------------------
    def _move_keys(self, learner: str) -> list[str]:
        s = self.keys.shard_of(learner)
        o, k = self.old, self.keys
        return [
            o.learner_state(learner),
            o.learner_history(learner),
            o.learner_meta(learner),
            o.learner_meta_log(learner),
            o.learner_meta_lock(learner),
            k.learner_state(learner),
            k.learner_history_list(learner),
            k.learner_meta(learner),
            k.learner_meta_log(learner),
            k.learner_meta_lock(learner),
            o.learners_index,
            k.learners_index(s),
            k.learners_seq(s),
            k.learners_regions(s),
            *(o.coach(n) for n in COACH_PER_SHARD),
            k.coach_queue(s),
            k.coach_ready(s),
            k.coach_fastlane(s),
            k.coach_coached(s),
        ]

    async def _move_learners(self, learners: list[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for learner in learners:
                await self._move(keys=self._move_keys(learner), args=[learner], client=pipe)
            results = await pipe.execute(raise_on_error=False)
        for learner, res in zip(learners, results, strict=True):
            if isinstance(res, Exception):
                raise MigrationRefused(f"learner {learner!r} could not be moved: {res}")
            if int(res) == 1:
                self.report.learners += 1
            else:
                self.report.dropped += 1

    async def _learners(self) -> None:
        """In the old index's order (creation order), so each shard numbers its learners in
        the order they were created. Every script removes its learner from the old index."""
        total = int(await self.redis.zcard(self.old.learners_index))
        for _ in range(total // self.batch + 2):  # bounded: each pass empties one batch
            learners = [
                text(x) for x in await self.redis.zrange(self.old.learners_index, 0, self.batch - 1)
            ]
            if not learners:
                return
            await self._move_learners(learners)
        raise MigrationRefused("the old learners index did not empty")

    async def _stray_learners(self) -> None:
        """Learner states under the old names that the old index did not list."""
        pattern = f"{self.old.learner_pattern}}}:state"
        strays: list[str] = []
        async for key in self.redis.scan_iter(match=pattern, count=1000):
            parts = self.old.learner_key_parts(text(key))
            if parts is not None and parts[1] == "state":
                strays.append(parts[0])
            if len(strays) >= self.batch:
                await self._move_learners(strays)
                strays = []
        if strays:
            await self._move_learners(strays)

    async def _idempotency(self) -> None:
        pattern = f"{self.old.learner_pattern}}}:idem:*"
        async for key in self.redis.scan_iter(match=pattern, count=1000):
            parts = self.old.learner_key_parts(text(key))
            if parts is None or not parts[1].startswith("idem:"):
                continue
            learner, idem = parts[0], parts[1][len("idem:") :]
            new = self.keys.learner_idempotency(learner, idem)
            # RENAME keeps the record's remaining lifetime; a key gone since the SCAN (expired)
            # has nothing to move.
            if await self.redis.exists(text(key)):
                await self.redis.rename(text(key), new)
                self.report.idempotency_records += 1

    # ---- counters ----------------------------------------------------------------------------
    async def _raise_to(self, key: str, value: int) -> None:
        current = int(await self.redis.get(key) or 0)
        if current < value:
            await self.redis.set(key, value)

    async def _counters(self) -> None:
        rounds = int(await self.redis.get(self.old.rounds_seq) or 0)
        await self._raise_to(self.keys.rounds_seq(0), rounds)
        fence = max(
            int(await self.redis.get(self.old.coach("fence")) or 0),
            int(await self.redis.get(self.old.coach_untagged("fence")) or 0),
        )
        if fence:
            for shard in self.keys.all_shards():
                await self._raise_to(self.keys.coach_fence(shard), fence)

    async def _merge_hash(self, old: str, targets: dict[str, dict[str, str]]) -> None:
        """Add the counters in `targets` (key -> field -> value) and delete `old`, in one
        MULTI: the move happens whole or not at all, so a re-run cannot add twice (the old
        hash is gone once it has been added)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, fields in targets.items():
                for name, value in fields.items():
                    if name == "last_event_ms":
                        pipe.hset(key, name, value)  # a time, not a counter (max taken below)
                    elif value.lstrip("-").isdigit():
                        pipe.hincrby(key, name, int(value))
                    else:
                        pipe.hincrbyfloat(key, name, float(value))
            pipe.delete(old)
            await pipe.execute()

    async def _meta_stats(self) -> None:
        raw = await self.redis.hgetall(self.old.meta_stats)
        if raw:
            fields = {text(k): text(v) for k, v in raw.items()}
            await self._merge_hash(self.old.meta_stats, {self.keys.meta_stats(0): fields})

    async def _reports(self) -> None:
        old_totals = self.old.reports("totals")
        raw = {text(k): text(v) for k, v in (await self.redis.hgetall(old_totals)).items()}
        if raw:
            shard0: dict[str, str] = {}
            system: dict[str, str] = {}
            for name, value in raw.items():
                if name.startswith("restarts:"):
                    system[name] = value
                elif name == "events:system":
                    system["events"] = value
                elif name != "events":
                    shard0[name] = value
            system_events = int(raw.get("events:system", 0))
            shard0["events"] = str(max(0, int(raw.get("events", 0)) - system_events))
            if "last_event_ms" in shard0:
                current = text_or_none(
                    await self.redis.hget(self.keys.reports_totals(0), "last_event_ms")
                )
                if current is not None and int(current) > int(shard0["last_event_ms"]):
                    shard0["last_event_ms"] = current
            await self._merge_hash(
                old_totals,
                {self.keys.reports_totals(0): shard0, self.keys.reports_system_totals: system},
            )
        head = self.old.reports("")
        async for raw_key in self.redis.scan_iter(match=self.old.reports_pattern, count=1000):
            key = text(raw_key)
            rest = key[len(head) :]
            target: str | None = None
            if rest.startswith("min:") and rest[4:].isdigit():
                target = self.keys.reports_minute(0, int(rest[4:]))
            elif rest == "svc:last":
                target = self.keys.reports_service_last
            elif rest == "svc:seen":
                target = self.keys.reports_services_seen
            elif rest.startswith("svc:"):
                target = self.keys.reports_service(rest[4:])
            if target is not None and not await self.redis.exists(target):
                await self.redis.rename(key, target)  # keeps a minute's remaining lifetime

    # ---- streams -----------------------------------------------------------------------------
    def _stream_keys(self, kind: str) -> tuple[str, list[str]]:
        if kind == "rounds":
            return self.old.stream_rounds, [
                self.keys.stream_rounds(s) for s in self.keys.all_shards()
            ]
        if kind == "meta":
            return self.old.stream_meta, [self.keys.stream_meta(s) for s in self.keys.all_shards()]
        return self.old.stream_system, [self.keys.stream_system]

    def _target(self, kind: str, targets: list[str], fields: dict[str, str]) -> str:
        if kind == "system":
            return targets[0]
        learner = fields.get("learner")
        return targets[self.keys.shard_of(learner) if learner else 0]

    async def _stream(self, kind: str) -> None:
        if kind == "system":
            await self._system_stream()
            return
        old, targets = self._stream_keys(kind)
        # A run killed during this step left some entries in the targets: start them again.
        await self.redis.delete(*targets)
        if not await self.redis.exists(old):
            return
        groups = await self._groups(old)
        # Entries before every group's first unprocessed one (its oldest pending entry, or the
        # one after its last delivered) were processed by all: the copy starts there.
        first = _first_unprocessed(groups)
        # Per target and group: how many copied entries the group had delivered, and which of
        # those it had acknowledged.
        delivered: dict[tuple[str, str], int] = {}
        acked: dict[tuple[str, str], list[str]] = {}
        copied = 0
        cursor = f"{first[0]}-{first[1]}"
        for _ in range(1_000_000):  # bounded: each page moves the cursor past its entries
            page = await self.redis.xrange(old, min=cursor, max="+", count=self.batch)
            if not page:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for raw_id, raw_fields in page:
                    entry_id = text(raw_id)
                    fields = text_map(raw_fields)
                    sid = _stream_id(entry_id)
                    if not _unread(groups, entry_id):
                        continue  # every group has processed it
                    target = self._target(kind, targets, fields)
                    pipe.xadd(target, field_map(fields), id=entry_id)
                    copied += 1
                    for g in groups:
                        if sid <= _stream_id(g.last):
                            delivered[(target, g.name)] = delivered.get((target, g.name), 0) + 1
                            if entry_id not in g.pending_set:
                                acked.setdefault((target, g.name), []).append(entry_id)
                await pipe.execute()
            last = _stream_id(text(page[-1][0]))
            cursor = f"{last[0]}-{last[1] + 1}"
        for g in groups:
            for target in targets:
                await self.redis.xgroup_create(target, g.name, id="0", mkstream=True)
                await self._deliver(target, g.name, delivered.get((target, g.name), 0))
                done = acked.get((target, g.name), [])
                for i in range(0, len(done), self.batch):
                    await self.redis.xack(target, g.name, *done[i : i + self.batch])
        self.report.stream_entries[kind] = copied

    async def _system_stream(self) -> None:
        """The system stream is written by the orchestrator while the migration runs (its own
        start, Redis up/down), so its new key cannot be emptied and refilled: the old unread
        events are appended after what is there, with new ids, each page in one MULTI with the
        old id it reached (`system_copied` in the layout hash), so a re-run copies the rest.
        No group is created: only reports reads this stream, and it creates its group at the
        stream's start, so it reads the orchestrator's new events and the copied ones once."""
        old, target, layout = (
            self.old.stream_system,
            self.keys.stream_system,
            self.keys.fleet_layout,
        )
        if not await self.redis.exists(old):
            return
        groups = await self._groups(old)
        first = _first_unprocessed(groups)
        reached = text_or_none(await self.redis.hget(layout, "system_copied"))
        if reached is not None:
            first = max(first, _next_id(reached))
        cursor = f"{first[0]}-{first[1]}"
        copied = 0
        for _ in range(1_000_000):  # bounded: each page moves the cursor past its entries
            page = await self.redis.xrange(old, min=cursor, max="+", count=self.batch)
            if not page:
                break
            last_id = text(page[-1][0])
            # MULTI: the copies and the progress mark together (one Redis: several slots are fine).
            async with self.redis.pipeline(transaction=True) as pipe:
                for raw_id, raw_fields in page:
                    if _unread(groups, text(raw_id)):
                        pipe.xadd(target, field_map(text_map(raw_fields)))
                        copied += 1
                pipe.hset(layout, "system_copied", last_id)
                await pipe.execute()
            nxt = _next_id(last_id)
            cursor = f"{nxt[0]}-{nxt[1]}"
        self.report.stream_entries["system"] = copied

    async def _deliver(self, stream: str, group: str, count: int) -> None:
        """Deliver the group's first `count` entries to the `migrated` consumer, as the old
        stream had delivered them (they are pending until acknowledged)."""
        left = count
        for _ in range(count // self.batch + 2):  # bounded
            if left <= 0:
                return
            got = cast(
                "list[list[Any]] | None",
                await self.redis.xreadgroup(
                    group, MIGRATED_CONSUMER, {stream: ">"}, count=min(left, self.batch)
                ),
            )
            n = sum(len(entries) for _, entries in got or [])
            if n == 0:
                return
            left -= n

    async def _groups(self, stream: str) -> list[_Group]:
        out: list[_Group] = []
        for info in await self.redis.xinfo_groups(stream):
            name = text(info["name"])
            last = text(info["last-delivered-id"])
            pending: list[str] = []
            total = int(info["pending"])
            start = "-"
            for _ in range(total // self.batch + 2):  # bounded: pages of the group's pending list
                rows = await self.redis.xpending_range(
                    stream, name, min=start, max="+", count=self.batch
                )
                if not rows:
                    break
                pending += [text(r["message_id"]) for r in rows]
                last_id = _stream_id(pending[-1])
                start = f"{last_id[0]}-{last_id[1] + 1}"
            pending.sort(key=_stream_id)
            out.append(_Group(name, last, pending, set(pending)))
        return out

    # ---- the end -----------------------------------------------------------------------------
    async def _cleanup(self) -> None:
        o = self.old
        await self.redis.delete(
            o.learners_index,
            o.learners_seq,
            o.learners_regions,
            o.rounds_seq,
            o.stream_rounds,
            o.stream_meta,
            o.stream_system,
            o.meta_stats,
            o.reports("totals"),
            o.reports("cursor"),
            *(o.coach(n) for n in (*COACH_PER_SHARD, "lease", "fence")),
            *(o.coach_untagged(n) for n in (*COACH_NAMES, "lease", "fence")),
        )


@dataclass
class _Group:
    name: str
    last: str
    pending: list[str]
    pending_set: set[str]


def _first_unprocessed(groups: list[_Group]) -> tuple[int, int]:
    """Entries before every group's first unprocessed one (its oldest pending entry, or the one
    after its last delivered) were processed by all; (0, 0) without groups: all are unread."""
    return min(
        (
            min(_stream_id(g.pending[0]), _next_id(g.last)) if g.pending else _next_id(g.last)
            for g in groups
        ),
        default=(0, 0),
    )


def _unread(groups: list[_Group], entry_id: str) -> bool:
    """Some group has not processed the entry (not delivered to it, or delivered and not
    acknowledged); without groups every entry is unread."""
    if not groups:
        return True
    sid = _stream_id(entry_id)
    return any(sid > _stream_id(g.last) or entry_id in g.pending_set for g in groups)


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> tuple[int, int]:
    ms, seq = _stream_id(entry_id)
    return ms, seq + 1


async def migrate(redis: FleetRedis, keys: Keys) -> Report:
    """Migrate when the old layout is there (a no-op that writes nothing otherwise). On a Redis
    Cluster it only looks: the unsharded layout never ran on one, so finding it there is refused
    (MigrationRefused), and finding nothing is the normal case."""
    if isinstance(redis, RedisCluster):
        if await legacy_keys_found(redis, keys):
            raise MigrationRefused(CLUSTER_REFUSED)
        report = Report()
    else:
        report = await Migration(redis, keys).run()
    # Then the history lists into the compact string (any Redis; a no-op once done).
    report.histories = await compact_histories(redis, keys)
    return report


def after_redis(
    wait: Callable[[], Awaitable[None]], url: str, keys: Keys, wait_s: float = 10.0
) -> Callable[[], Awaitable[None]]:
    """`wait` (for Redis to answer), then the migration: what the orchestrator runs before it
    starts any service. It connects as the services do (`connect_fleet`): on a Redis Cluster a
    single-node client would be answered MOVED for every key of another master's slots."""

    async def waited_and_migrated() -> None:
        from shared.redis_conn import connect_fleet

        await wait()
        try:
            redis = await connect_fleet(url, wait_s=wait_s)
            try:
                await migrate(redis, keys)
            finally:
                await redis.aclose()
        except Exception as exc:
            log.error("layout_migration_failed", error=redact_text(str(exc)), command=COMMAND)
            raise

    return waited_and_migrated


async def _main(argv: list[str] | None = None) -> int:
    from shared.redis_conn import connect_fleet
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    settings = get_settings()
    redis = await connect_fleet(settings.redis_url, wait_s=settings.redis_wait_s)
    try:
        report = await migrate(redis, Keys(settings.redis_prefix, settings.shards))
    except Exception as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if report.histories:
        print(f"{COMMAND}: folded {report.histories} history lists into the compact history")
    if not report.ran:
        print(f"{COMMAND}: nothing to migrate (prefix {settings.redis_prefix!r})")
    else:
        print(
            f"{COMMAND}: migrated {report.learners} learners into {settings.shards} shards "
            f"(dropped {report.dropped} index entries without a state), "
            f"{report.idempotency_records} idempotency records, stream entries {report.stream_entries}"
        )
    return 0


def main() -> None:
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
