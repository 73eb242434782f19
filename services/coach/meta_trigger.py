"""The meta trigger: consumer group `coach` on each shard's meta stream (`keys.stream_meta(s)`),
entries of type `ready` (one per readiness transition, appended by the round-commit script) →
one queue for every shard → meta `run-batch`, `batch_size` learners at a time (meta's `run-all` per learner
if meta refuses a batch). Each coach replica consumes the streams of the shards it owns
(shared/shard_leases.py): one reader task per owned shard, started when the shard is gained and
cancelled when it is lost.

Why batches: learners coached side by side become ready side by side — one training batch can
make dozens ready in the same millisecond. Sent one call per learner, each costs an HTTP exchange
and three Redis waits in meta, and 64 such calls interleaved in meta's event loop made the last of
a wave wait ~100 ms. A batch costs one exchange and two Redis waits. Why 25 and 8 in flight, not
one batch per read of 100: a learner's phases complete only when its whole batch commits, so in
one big batch every learner waits for the last one's computation; smaller batches in flight
together let meta commit the first ones while it computes the next (bench_coach: p99 ~27 ms with
25 × 8 and with 10 × 16, ~40 ms with 100 × 4).

A reader is blocked on XREADGROUP of its shard's stream (a stream per read: a read of several
streams would span slots), so a trigger is served as soon as its round is committed rather than at
the next tick. An entry is acknowledged only once meta has answered (or the entry can never
succeed: learner gone, malformed); while meta is paused (409) or down it stays pending and is
retried: every few seconds the reader XAUTOCLAIMs the group's entries idle for longer than
`claim_idle_ms`. When a replica gains a shard, its reader first claims every entry pending in the
shard's group, whatever its idle time: those the previous owner read and did not acknowledge (it
died, or gave the shard back mid-call; meta de-duplicates a trigger served twice).

The group is created at id 0 (once; BUSYGROUP afterwards), so readiness events appended while no
coach was running are served when one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from redis.exceptions import ResponseError

from services.coach.meta_api import MetaApi
from services.coach.store import CoachStore, MetaServed
from shared.cancellation import stop_if_cancelled
from shared.clock import now_ms
from shared.errors import UpstreamError
from shared.events import ReadyEvent, meta_event
from shared.logging import get_logger
from shared.shards import ShardOwnership

log = get_logger(__name__)

PRUNE_MAX = 100
WATCH_S = 0.25  # how often the readers are matched to the owned shards
# A blocked XREADGROUP holds a connection of the client's pool (64) for its whole BLOCK. Up to
# this many owned shards, each reader blocks; beyond (a replica alone with a large S), readers
# poll without blocking every POLL_S instead, so the pool stays free for the ticks.
MAX_BLOCKING_READERS = 16
POLL_S = 0.05

Entry = tuple[int, str, ReadyEvent]  # (shard, stream entry id, event)


class MetaTrigger:
    def __init__(
        self,
        store: CoachStore,
        meta: MetaApi,
        ownership: ShardOwnership,
        *,
        consumer: str,
        block_ms: int = 1000,
        count: int = 100,
        batch_size: int = 25,
        concurrency: int = 8,
        claim_idle_ms: int = 3000,
        claim_every_s: float = 2.0,
        prune_every_s: float = 60.0,
        prune_idle_ms: int = 60_000,
    ) -> None:
        self.store = store
        self.meta = meta
        self.ownership = ownership
        self.consumer = consumer
        self.block_ms = block_ms
        self.count = count
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.prune_every_s = prune_every_s
        self.prune_idle_ms = prune_idle_ms
        self.concurrency = concurrency
        self._calls = 0  # meta calls (batches) in flight, at most `concurrency`
        # Ready entries of every shard waiting for a meta call, in read order; bounded: a reader
        # reads again only while fewer than `max_queued` wait (back-pressure on the streams).
        self._queue: deque[Entry] = deque()
        self.max_queued = max(count, batch_size * concurrency)
        self._room = asyncio.Event()
        self._room.set()
        self._inflight: set[tuple[int, str]] = set()  # (shard, entry id): queued or in a call
        self._tasks: set[asyncio.Task[None]] = set()
        self._readers: dict[int, asyncio.Task[None]] = {}
        self._meta_down_since: int | None = None

    async def wait_backlog_below(self, limit: int, timeout_s: float) -> bool:
        """Wait (bounded) until fewer than `limit` meta calls are in flight. The loop calls it
        before each tick: meta triggers take priority over new rounds, so a wave of readiness
        transitions is served promptly instead of queueing behind rounds that compete for the
        same CPUs. Returns False when the wait timed out."""
        deadline = time.monotonic() + timeout_s
        while len(self._inflight) >= limit:  # bounded by the deadline
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def reading(self) -> frozenset[int]:
        """The shards whose streams this replica reads now."""
        return frozenset(s for s, task in self._readers.items() if not task.done())

    async def run(self) -> None:
        next_prune = time.monotonic() + self.prune_every_s
        try:
            while True:  # bounded by task cancellation at shutdown
                stop_if_cancelled()
                self._match_readers(self.ownership.owned())
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_every_s
                    for shard in self.reading():
                        try:
                            await self.prune_consumers(shard)
                        except Exception as exc:
                            log.warning("meta_trigger_prune_failed", shard=shard, error=str(exc))
                await asyncio.sleep(WATCH_S)
        finally:
            for task in [*self._readers.values(), *self._tasks]:
                task.cancel()
            for task in [*self._readers.values(), *self._tasks]:
                with contextlib.suppress(BaseException):
                    await task

    def _match_readers(self, owned: frozenset[int]) -> None:
        for shard, task in list(self._readers.items()):
            if shard not in owned or task.done():
                # Lost (or the reader ended): entries it read and did not acknowledge stay
                # pending for the shard's next owner to claim.
                task.cancel()
                del self._readers[shard]
        for shard in owned.difference(self._readers):
            self._readers[shard] = asyncio.create_task(self.read_shard(shard))

    async def read_shard(self, shard: int) -> None:
        """Serve one shard's stream until cancelled: first claim what is pending (the previous
        owner's), then read, claiming idle entries every claim_every_s."""
        group_ready = False
        next_claim = 0.0
        min_idle = 0  # on gaining the shard: whatever is pending is nobody's now
        while True:  # bounded by task cancellation (the shard is lost, or shutdown)
            stop_if_cancelled()
            try:
                if not group_ready:
                    await self.store.ensure_meta_group(shard)
                    group_ready = True
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.claim_every_s
                    await self.claim_stale(shard, min_idle_ms=min_idle)
                    min_idle = self.claim_idle_ms
                await self.read_once(shard)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted; recreate the group
                    group_ready = False
                log.warning("meta_trigger_redis_error", shard=shard, error=str(exc))
                await asyncio.sleep(0.5)
            except Exception as exc:
                log.warning(
                    "meta_trigger_error", shard=shard, error=f"{exc.__class__.__name__}: {exc}"
                )
                await asyncio.sleep(0.5)

    async def read_once(self, shard: int) -> int:
        blocking = len(self._readers) <= MAX_BLOCKING_READERS
        entries = await self.store.read_meta_events(
            shard, self.consumer, count=self.count, block_ms=self.block_ms if blocking else None
        )
        if not entries:
            if not blocking:
                await asyncio.sleep(POLL_S)
            return 0
        return await self._dispatch(shard, entries)

    async def claim_stale(self, shard: int, *, min_idle_ms: int | None = None) -> int:
        """Take over the shard's entries pending longer than `min_idle_ms` (default
        claim_idle_ms: paused/down meta, a dead or former owner)."""
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        start = "0-0"
        total = 0
        for _ in range(10):  # bounded: at most 10 pages of `count` per claim round
            start, entries = await self.store.claim_meta_events(
                shard, self.consumer, min_idle_ms=idle, start=start, count=self.count
            )
            # Entries trimmed from the stream come back without fields: nothing to run, ack them.
            gone = [e[0] for e in entries if e and e[1] is None]
            if gone:
                await self.store.ack_meta_events(shard, gone)
            total += await self._dispatch(shard, [e for e in entries if e and e[1] is not None])
            if start in ("0-0", b"0-0") or not entries:
                break
        return total

    async def prune_consumers(self, shard: int) -> int:
        """Delete the shard's group consumers that coaches long gone left behind (each coach
        start reads under a new name, so without this a group grows by one consumer per start).
        Only those with nothing pending — a dead owner's pending entries are claimed first — and
        idle for prune_idle_ms: the shard's owner reads at least every block_ms, so such a
        consumer is not reading. A coach whose consumer is deleted gets it back at its next
        read. Bounded: at most PRUNE_MAX per sweep."""
        consumers = await self.store.meta_consumers(shard)
        gone = [
            c["name"]
            for c in consumers
            if c["name"] != self.consumer
            and int(c["pending"]) == 0
            and int(c["idle"]) >= self.prune_idle_ms
        ][:PRUNE_MAX]
        if gone:
            await self.store.delete_meta_consumers(shard, gone)
            log.info("meta_trigger_consumers_pruned", shard=shard, count=len(gone))
        return len(gone)

    async def _dispatch(self, shard: int, entries: list[Any]) -> int:
        ignored: list[str] = []
        ready: list[Entry] = []
        for entry_id, fields in entries:
            event = meta_event(fields)
            if not isinstance(event, ReadyEvent):
                ignored.append(entry_id)  # completions and failures are not ours to act on
            elif (shard, entry_id) not in self._inflight:
                ready.append((shard, entry_id, event))
        if ignored:
            await self.store.ack_meta_events(shard, ignored)
        self._inflight.update((s, entry_id) for s, entry_id, _ in ready)
        self._queue.extend(ready)
        self._pump()
        while len(self._queue) >= self.max_queued:  # bounded: each meta call has a timeout
            self._room.clear()
            await self._room.wait()
        return len(ready)

    def _pump(self) -> None:
        """Start meta calls for the queued entries while fewer than `concurrency` are in
        flight, each with up to `batch_size` of them, whatever their shards.

        One queue for every shard's reader: a shard's read during a readiness wave holds a few
        entries (the wave is spread over S streams), and a call per read made calls of 1-3
        learners that held every one of the `concurrency` slots while the other readers waited
        for one, so triggers queued behind slots rather than being batched (measured: p50 of
        one learner a call, p99 of the delay 563 ms on a loaded machine). Now an entry read
        while a slot is free is sent at once, and entries read while every slot is taken
        wait here and leave together, up to batch_size a call, in the next free slot."""
        while self._queue and self._calls < self.concurrency:  # bounded by the queue
            batch = take_batch(self._queue, self.batch_size)
            self._calls += 1
            task = asyncio.create_task(self._handle(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if len(self._queue) < self.max_queued:
            self._room.set()

    async def _handle(self, batch: list[Entry]) -> None:
        try:
            await self._trigger_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("meta_trigger_failed", entries=len(batch))
        finally:
            self._inflight.difference_update((s, entry_id) for s, entry_id, _ in batch)
            self._calls -= 1
            self._pump()

    async def _trigger_batch(self, batch: list[Entry]) -> None:
        items: list[dict[str, Any]] = []
        sent: list[tuple[int, str]] = []  # (shard, entry id), in the order of `items`
        for shard, entry_id, event in batch:
            if event.round is None or event.ts is None:
                await self._give_up(shard, entry_id, event.learner, "malformed ready event")
                continue
            trigger = {"round": event.round, "ts": event.ts}
            items.append({"learner": event.learner, "trigger": trigger})
            sent.append((shard, entry_id))
        if not items:
            return
        try:
            status, body = await self.meta.run_batch(items)
        except UpstreamError as exc:
            await self._meta_down(exc.message)
            return
        results = body.get("results") if status == 200 and isinstance(body, dict) else None
        if isinstance(results, list) and len(results) == len(items):
            await self._record_batch(sent, items, results)
        elif status == 409:
            await self._kept_queued(f"meta paused: {len(items)} triggers kept queued")
        elif status >= 500 or status == 429:
            await self._meta_down(f"meta answered {status}")
        else:
            # Meta refused the batch as a whole (an entry it cannot accept, say): one call per
            # learner, so only that entry is given up.
            for (shard, entry_id), item in zip(sent, items, strict=True):
                await self._trigger_one(shard, entry_id, item["learner"], item["trigger"])

    async def _record_batch(
        self, sent: list[tuple[int, str]], items: list[dict[str, Any]], results: list[Any]
    ) -> None:
        done: list[MetaServed] = []
        busy = 0
        for (shard, entry_id), item, result in zip(sent, items, results, strict=True):
            trigger = item["trigger"]
            status = result.get("status") if isinstance(result, dict) else None
            if status == 200:
                done.append(_served(shard, entry_id, item["learner"], trigger, result))
            elif status in (400, 404, 422):
                await self._give_up(
                    shard, entry_id, item["learner"], f"meta answered {status}: {result}"
                )
            else:
                busy += 1  # kept pending: claim_stale retries it
        if done:
            await self._record_done(done)
        if busy:
            await self._kept_queued(f"meta busy: {busy} triggers kept queued")

    async def _trigger_one(
        self, shard: int, entry_id: str, learner: str, trigger: dict[str, int]
    ) -> None:
        try:
            status, body = await self.meta.run_all(learner, trigger)
        except UpstreamError as exc:
            await self._meta_down(exc.message)
            return
        if status == 200:
            await self._record_done([_served(shard, entry_id, learner, trigger, body)])
        elif status == 409:
            await self._kept_queued(f"meta paused: trigger for {learner} kept queued")
        elif status >= 500 or status == 429:
            await self._meta_down(f"meta answered {status}")
        else:
            await self._give_up(shard, entry_id, learner, f"meta answered {status}: {body}")

    async def _record_done(self, done: list[MetaServed]) -> None:
        last = done[-1]
        await self.store.record_meta_served(
            done,
            f"meta-learning phases completed for {last.learner} ({last.delay_ms:.1f} ms after "
            f"round {last.round_id})"
            + (f" and {len(done) - 1} more learners" if len(done) > 1 else ""),
        )
        self._meta_down_since = None

    async def _kept_queued(self, message: str) -> None:
        """Paused or busy: the entries stay pending and claim_stale retries them later."""
        await self.store.note_meta_action(message)

    async def _give_up(self, shard: int, entry_id: str, learner: str, reason: str) -> None:
        log.warning("meta_trigger_dropped", learner=learner, reason=reason[:300])
        await self.store.record_meta_dropped(
            shard, entry_id, f"meta trigger dropped: {reason}"[:300]
        )

    async def _meta_down(self, error: str) -> None:
        if self._meta_down_since is None:
            self._meta_down_since = now_ms()
            log.warning("coach_meta_outage", error=error)
            await self.store.record_meta_outage(self._meta_down_since, error)


def _served(
    shard: int, entry_id: str, learner: str, trigger: dict[str, int], answer: Any
) -> MetaServed:
    """A trigger meta answered 200, with the delay meta measured or, if its answer lacks one,
    the time since the commit as the coach sees it."""
    delay = answer.get("delay_ms") if isinstance(answer, dict) else None
    if not isinstance(delay, int | float):
        delay = now_ms() - trigger["ts"]
    return MetaServed(entry_id, learner, trigger["round"], float(delay), shard)


def take_batch(queue: deque[Entry], size: int) -> list[Entry]:
    """The next batch off the front of `queue`: at most `size` entries in queue order, each
    learner at most once (meta's run-batch takes distinct learners). A learner that became
    ready twice (ready, coached below the bar, ready again) keeps its second entry, in place,
    for a later batch, served like any other."""
    batch: list[Entry] = []
    seen: set[str] = set()
    kept: list[Entry] = []
    while queue and len(batch) < size:  # bounded by the queue
        entry = queue.popleft()
        if entry[2].learner in seen:
            kept.append(entry)
        else:
            seen.add(entry[2].learner)
            batch.append(entry)
    queue.extendleft(reversed(kept))
    return batch


def batches_of(ready: list[Entry], size: int) -> list[list[Entry]]:
    """`ready` cut into the batches `take_batch` would send, one after another."""
    queue = deque(ready)
    batches = []
    while queue:  # bounded: every batch takes at least one entry
        batches.append(take_batch(queue, size))
    return batches
