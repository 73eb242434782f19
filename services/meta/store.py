"""Redis access of the meta service: the per-learner meta document and activity log, the
per-learner run lock, the pause flag and the meta stats (one hash per shard; the fleet's figures
are their sums).

The meta service is the only writer of a learner's `…:meta` and `…:meta:log` (in the learner's
shard, like its state: `Keys.meta_commit_keys` is one slot); every write goes
through the `meta_commit` script (`meta_commit.lua`, beside this module, registered here on the
store's own client), which checks the meta version (and, when meta changes the learner model, the
learner-state version) in the same atomic step. This module is the Python side of the script's
KEYS/ARGV protocol (`_commit_args`). The document and the log entries are stored in the compact
JSON of packing.py, read and written only here.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from services.meta.packing import pack, unpack
from shared.events import CompletedEvent
from shared.keys import Keys
from shared.learner_state import LearnerState, decode, encode
from shared.redis_types import FleetRedis, scored, text_map
from shared.scripts import ScriptCall, Scripts, evalsha_pipelined, lua_source

LOG_CAP = 200  # activity-log entries kept per learner, so a long-lived learner's log stays bounded
LOCK_TTL_MS = 5_000  # a run holds the lock for milliseconds; the TTL only matters after a crash
LOCK_WAIT_S = 2.0
LOCK_POLL_S = 0.005
COHORT_PAGE = 500


@dataclass(slots=True)
class Snapshot:
    """One learner as read in one round trip (not a transaction: writes re-check versions)."""

    meta_version: str  # '0' when the learner has no meta document yet
    doc: dict[str, Any] | None
    state_version: str | None  # None when the learner does not exist
    state: LearnerState | None
    # The newest activity-log entries (newest first), when asked for. Read after the meta
    # version in the same pipeline: a commit made from this snapshot succeeds only if no other
    # commit (the log's only writer) came in between, so after it the log is exactly
    # the committed entries (newest first) followed by these.
    log: list[dict[str, Any]] = field(default_factory=list)
    # The server's record of the learner's last readiness transition, written by commit_rounds in
    # the state hash (`rr`, `rt`): the round id and the Redis time (epoch ms) of that commit. The
    # meta trigger's delay is measured from these, never from what a caller sends.
    ready_round: int | None = None
    ready_ts: int | None = None


@dataclass(slots=True)
class CommitResult:
    ok: bool
    missing: bool = False
    conflict: str = ""  # 'meta' | 'state' on a version conflict


class MetaStore:
    def __init__(self, redis: FleetRedis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts  # the shared ones: lease_release for the run lock
        self.commit_script = redis.register_script(lua_source(__package__, "meta_commit"))

    async def load_scripts(self) -> None:
        """Load the commit script now, so the first commit does not pay for a NOSCRIPT reply."""
        self.commit_script.sha = await self.redis.script_load(self.commit_script.script)

    # ---- reads -------------------------------------------------------------------------------
    async def snapshot(self, learner: str, log_entries: int = 0) -> Snapshot:
        pipe = self.redis.pipeline(transaction=False)
        self._queue_snapshot(pipe, learner)
        if log_entries:
            pipe.lrange(self.keys.learner_meta_log(learner), 0, log_entries - 1)
        meta, state, *rest = await pipe.execute()
        snap = _snapshot_of(meta, state)
        if rest:
            snap.log = [unpack(x) for x in rest[0]]
        return snap

    def _queue_snapshot(self, pipe: Any, learner: str) -> None:
        pipe.hmget(self.keys.learner_meta(learner), ["v", "s"])
        pipe.hmget(self.keys.learner_state(learner), ["v", "s", "rr", "rt"])

    async def activity_log(self, learner: str, limit: int) -> tuple[list[dict[str, Any]], int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(self.keys.learner_meta_log(learner), 0, limit - 1)
        pipe.llen(self.keys.learner_meta_log(learner))
        raw, total = await pipe.execute()
        return [unpack(x) for x in raw], int(total)

    def shards(self) -> range:
        return self.keys.all_shards()

    def shard_of(self, learner: str) -> int:
        return self.keys.shard_of(learner)

    async def learners_after(
        self, shard: int, after: float | None, count: int
    ) -> list[tuple[str, float]]:
        """Up to `count` of the shard's learners whose creation score is above `after`, in order
        (ZRANGE BYSCORE with LIMIT on the shard's index: a bounded page that deletions elsewhere
        cannot shift)."""
        low = "-inf" if after is None else f"({after}"
        return scored(
            await self.redis.zrange(
                self.keys.learners_index(shard),
                low,
                "+inf",
                byscore=True,
                offset=0,
                num=count,
                withscores=True,
            )
        )

    # ---- writes ------------------------------------------------------------------------------
    async def commit(
        self,
        learner: str,
        meta_version: str,
        doc: dict[str, Any],
        *,
        log: list[dict[str, Any]],
        state_version: str | None = None,
        state: LearnerState | None = None,
        phases_run: int = 0,
        event: CompletedEvent | None = None,
        lock_token: str | None = None,
    ) -> CommitResult:
        """Commit; on success the run lock held with `lock_token` is released in the same step."""
        change = MetaCommit(
            learner, meta_version, doc, log, state_version, state, phases_run, event, lock_token
        )
        return (await self.commit_many([change]))[0]

    async def commit_many(self, changes: list[MetaCommit]) -> list[CommitResult]:
        """Many commits in one round trip. Each is its own `meta_commit` run, atomic and
        version-checked on its own: one learner's conflict does not hold back the others."""
        calls = [(self.keys.meta_commit_keys(c.learner), _commit_args(c)) for c in changes]
        return [_commit_result(r) for r in await self._evalsha_all(self.commit_script, calls)]

    async def _evalsha_all(self, script: Any, calls: list[ScriptCall]) -> list[Any]:
        """One pipeline of EVALSHAs (see shared.scripts.evalsha_each)."""
        return await evalsha_pipelined(self.redis, script, calls)

    # ---- the per-learner run lock --------------------------------------------------------------
    async def paused_or_lock(self, learner: str) -> tuple[bool, str | None]:
        """The pause flag and the learner's run lock in one round trip: (paused, token).

        The lock is tried at once (SET NX PX with our own token); when another run holds it,
        waits up to LOCK_WAIT_S for it. The token is None when the wait timed out (callers then
        rely on the version check alone, which is what makes a phase run once; the lock only
        saves duplicate work). A caller told `paused` must release the token it got."""
        token = secrets.token_hex(8)
        key = self.keys.learner_meta_lock(learner)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.meta_paused)
        pipe.set(key, token, nx=True, px=LOCK_TTL_MS)
        paused, got = await pipe.execute()
        if paused == "1":
            return True, token if got else None
        if got:
            return False, token
        deadline = time.monotonic() + LOCK_WAIT_S
        while time.monotonic() < deadline:  # bounded by the deadline
            await asyncio.sleep(LOCK_POLL_S)
            if await self.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
                return False, token
        return False, None

    async def lock_and_snapshot_many(
        self, learners: list[str]
    ) -> tuple[bool, dict[str, str], dict[str, Snapshot]]:
        """The pause flag, every learner's run lock (each tried once) and every snapshot, in one
        round trip: (paused, {learner: token} for the locks taken, {learner: snapshot} for
        those). A learner missing from the maps is being run by someone else right now; the
        caller decides whether to wait (see paused_or_lock). Every token returned must be
        released or consumed by a commit.

        The snapshot is read after the SET NX in the same pipeline, so for a lock we got it
        already shows the commit of the run that held it before (that commit released it)."""
        tokens = {learner: secrets.token_hex(8) for learner in learners}
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.meta_paused)
        for learner, token in tokens.items():
            pipe.set(self.keys.learner_meta_lock(learner), token, nx=True, px=LOCK_TTL_MS)
            self._queue_snapshot(pipe, learner)
        paused, *replies = await pipe.execute()
        held: dict[str, str] = {}
        snaps: dict[str, Snapshot] = {}
        for i, (learner, token) in enumerate(tokens.items()):
            got, meta, state = replies[3 * i : 3 * i + 3]
            if got:
                held[learner] = token
                snaps[learner] = _snapshot_of(meta, state)
        return paused == "1", held, snaps

    async def release_locks(self, held: dict[str, str]) -> None:
        """Release many run locks in one round trip (compare-and-delete each, as release_lock)."""
        calls = [
            ([self.keys.learner_meta_lock(learner)], [token]) for learner, token in held.items()
        ]
        await self._evalsha_all(self.scripts.lease_release, calls)

    async def release_lock(self, learner: str, token: str | None) -> None:
        if token is None:
            return
        # Compare-and-delete in one script: a lock that lapsed and was taken by another caller is
        # not ours to delete.
        await self.scripts.lease_release(keys=[self.keys.learner_meta_lock(learner)], args=[token])

    # ---- pause flag and stats ----------------------------------------------------------------
    async def paused(self) -> bool:
        return await self.redis.get(self.keys.meta_paused) == "1"

    async def set_paused(self, paused: bool) -> None:
        if paused:
            await self.redis.set(self.keys.meta_paused, "1")
        else:
            await self.redis.delete(self.keys.meta_paused)

    async def stats(self) -> dict[str, int]:
        """The fleet's meta stats: every shard's counters summed, `delayMaxMs` the largest,
        `delayLastMs` the one of the shard whose last delay was recorded last
        (`delayLastAt`, Redis time in ms, written with it). One pipelined HGETALL per shard."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in self.shards():
                pipe.hgetall(self.keys.meta_stats(shard))
            parts = [text_map(r) for r in await pipe.execute()]
        return merge_stats(parts)

    async def count_boosts(self, per_shard: dict[int, int]) -> None:
        """Add boosts to the stats of each learner's shard (one HINCRBY per shard, pipelined)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, n in per_shard.items():
                if n:
                    pipe.hincrby(self.keys.meta_stats(shard), "boosts", n)
            await pipe.execute()


SUMMED_STATS = ("completed", "phasesRun", "boosts", "delayCount", "delaySumMs")


def merge_stats(parts: list[dict[str, str]]) -> dict[str, int]:
    """The fleet's stats from the shards' hashes (see MetaStore.stats); a field no shard has is
    left out."""

    def num(value: str | None) -> int | None:
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    out: dict[str, int] = {}
    for name in SUMMED_STATS:
        values = [v for v in (num(p.get(name)) for p in parts) if v is not None]
        if values:
            out[name] = sum(values)
    maxima = [v for v in (num(p.get("delayMaxMs")) for p in parts) if v is not None]
    if maxima:
        out["delayMaxMs"] = max(maxima)
    lasts = [
        (num(p.get("delayLastAt")) or 0, v)
        for p in parts
        if (v := num(p.get("delayLastMs"))) is not None
    ]
    if lasts:
        out["delayLastMs"] = max(lasts)[1]
    return out


@dataclass(slots=True)
class MetaCommit:
    """One learner's meta change, as `commit` takes it (see meta_commit.lua for the checks)."""

    learner: str
    meta_version: str
    doc: dict[str, Any]
    log: list[dict[str, Any]]
    state_version: str | None = None
    state: LearnerState | None = None
    phases_run: int = 0
    event: CompletedEvent | None = None
    lock_token: str | None = None


def _snapshot_of(meta: list[str | None], state: list[str | None]) -> Snapshot:
    (mv, ms), (sv, ss, rr, rt) = meta, state
    return Snapshot(
        meta_version=mv or "0",
        doc=unpack(ms) if ms else None,
        state_version=sv,
        state=decode(ss) if ss else None,
        ready_round=int(rr) if rr else None,
        ready_ts=int(rt) if rt else None,
    )


def _commit_args(c: MetaCommit) -> list[Any]:
    args: list[Any] = [
        c.meta_version,
        pack(c.doc),
        LOG_CAP,
        c.state_version if c.state is not None and c.state_version is not None else "",
        encode(c.state) if c.state is not None else "",
        c.phases_run,
        len(c.log),
        c.lock_token or "",
    ]
    args += [pack(entry) for entry in c.log]
    if c.event is not None:  # the script XADDs these pairs as they come
        for name, value in c.event.to_fields().items():
            args += [name, value]
    return args


def _commit_result(res: list[Any]) -> CommitResult:
    code = int(res[0])
    if code == 1:
        return CommitResult(True)
    if code == -1:
        return CommitResult(False, missing=True)
    return CommitResult(False, conflict=str(res[1]))
