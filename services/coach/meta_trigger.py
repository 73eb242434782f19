"""The meta trigger: consumer group `coach` on `keys.stream_meta`, entries of type `ready` (one
per readiness transition, appended by the round-commit script) → meta `run-batch` for the
learners of one read, `batch_size` at a time (meta's `run-all` per learner if meta refuses a batch).

Why batches: learners coached side by side become ready side by side — one training batch can
make dozens ready in the same millisecond. Sent one call per learner, each costs an HTTP exchange
and three Redis waits in meta, and 64 such calls interleaved in meta's event loop made the last of
a wave wait ~100 ms. A batch costs one exchange and two Redis waits. Why 25 and 8 in flight, not
one batch per read of 100: a learner's phases complete only when its whole batch commits, so in
one big batch every learner waits for the last one's computation; smaller batches in flight
together let meta commit the first ones while it computes the next (bench_coach: p99 ~27 ms with
25 × 8 and with 10 × 16, ~40 ms with 100 × 4).

It runs in its own task, blocked on XREADGROUP, so a trigger is served as soon as its round is
committed rather than at the next tick. An entry is acknowledged only once meta has answered
(or the entry can never succeed: learner gone, malformed); while meta is paused (409) or down it
stays pending and is retried: every few seconds the leader XAUTOCLAIMs the group's entries idle
for longer than `claim_idle_ms` — its own, and those a dead leader left behind.

The group is created at id 0 (once; BUSYGROUP afterwards), so readiness events appended while no
coach was running are served when one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.exceptions import ResponseError

from services.coach.lease import Leadership
from services.coach.meta_api import MetaApi
from services.coach.store import CoachStore, MetaServed
from shared.clock import now_ms
from shared.errors import UpstreamError
from shared.events import ReadyEvent, meta_event
from shared.logging import get_logger

log = get_logger(__name__)

PRUNE_MAX = 100


class MetaTrigger:
    def __init__(
        self,
        store: CoachStore,
        meta: MetaApi,
        leadership: Leadership,
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
        self.leadership = leadership
        self.consumer = consumer
        self.block_ms = block_ms
        self.count = count
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.prune_every_s = prune_every_s
        self.prune_idle_ms = prune_idle_ms
        self._gate = asyncio.Semaphore(concurrency)  # meta calls (batches) in flight
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._meta_down_since: int | None = None
        self._group_ready = False

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

    async def ensure_group(self) -> None:
        await self.store.ensure_meta_group()
        self._group_ready = True

    async def run(self) -> None:
        next_claim = 0.0
        next_prune = 0.0
        try:
            while True:  # bounded by task cancellation at shutdown
                if not self.leadership.is_leader:
                    await asyncio.sleep(0.25)
                    continue
                try:
                    if not self._group_ready:
                        await self.ensure_group()
                    if time.monotonic() >= next_claim:
                        next_claim = time.monotonic() + self.claim_every_s
                        await self.claim_stale()
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + self.prune_every_s
                        await self.prune_consumers()
                    await self.read_once()
                except asyncio.CancelledError:
                    raise
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):  # the stream was deleted; recreate the group
                        self._group_ready = False
                    log.warning("meta_trigger_redis_error", error=str(exc))
                    await asyncio.sleep(0.5)
                except Exception as exc:
                    log.warning("meta_trigger_error", error=f"{exc.__class__.__name__}: {exc}")
                    await asyncio.sleep(0.5)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task

    async def read_once(self) -> int:
        entries = await self.store.read_meta_events(
            self.consumer, count=self.count, block_ms=self.block_ms
        )
        return await self._dispatch(entries) if entries else 0

    async def claim_stale(self) -> int:
        """Take over entries pending longer than claim_idle_ms (paused/down meta, dead leader)."""
        start = "0-0"
        total = 0
        for _ in range(10):  # bounded: at most 10 pages of `count` per claim round
            start, entries = await self.store.claim_meta_events(
                self.consumer, min_idle_ms=self.claim_idle_ms, start=start, count=self.count
            )
            # Entries trimmed from the stream come back without fields: nothing to run, ack them.
            gone = [e[0] for e in entries if e and e[1] is None]
            if gone:
                await self.store.ack_meta_events(gone)
            total += await self._dispatch([e for e in entries if e and e[1] is not None])
            if start in ("0-0", b"0-0") or not entries:
                break
        return total

    async def prune_consumers(self) -> int:
        """Delete the group's consumers that coaches long gone left behind (each coach start reads
        under a new name, so without this the group grows by one consumer per start). Only those
        with nothing pending — a dead leader's pending entries are claimed first, by claim_stale —
        and idle for prune_idle_ms: only the leader reads, and it reads at least every block_ms,
        so such a consumer is not reading. A coach whose consumer is deleted gets it back at its
        next read. Bounded: at most PRUNE_MAX per sweep."""
        consumers = await self.store.meta_consumers()
        gone = [
            c["name"]
            for c in consumers
            if c["name"] != self.consumer
            and int(c["pending"]) == 0
            and int(c["idle"]) >= self.prune_idle_ms
        ][:PRUNE_MAX]
        if gone:
            await self.store.delete_meta_consumers(gone)
            log.info("meta_trigger_consumers_pruned", count=len(gone))
        return len(gone)

    async def _dispatch(self, entries: list[Any]) -> int:
        ignored: list[str] = []
        ready: list[tuple[str, ReadyEvent]] = []
        for entry_id, fields in entries:
            event = meta_event(fields)
            if not isinstance(event, ReadyEvent):
                ignored.append(entry_id)  # completions and failures are not ours to act on
            elif entry_id not in self._inflight:
                ready.append((entry_id, event))
        if ignored:
            await self.store.ack_meta_events(ignored)
        for batch in batches_of(ready, self.batch_size):
            await self._gate.acquire()  # back-pressure: at most `concurrency` meta calls at once
            self._inflight.update(entry_id for entry_id, _ in batch)
            task = asyncio.create_task(self._handle(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(ready)

    async def _handle(self, batch: list[tuple[str, ReadyEvent]]) -> None:
        try:
            await self._trigger_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("meta_trigger_failed", entries=len(batch))
        finally:
            self._inflight.difference_update(entry_id for entry_id, _ in batch)
            self._gate.release()

    async def _trigger_batch(self, batch: list[tuple[str, ReadyEvent]]) -> None:
        items: list[dict[str, Any]] = []
        sent: list[str] = []  # entry ids, in the order of `items`
        for entry_id, event in batch:
            if event.round is None or event.ts is None:
                await self._give_up(entry_id, event.learner, "malformed ready event")
                continue
            trigger = {"round": event.round, "ts": event.ts}
            items.append({"learner": event.learner, "trigger": trigger})
            sent.append(entry_id)
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
            for entry_id, item in zip(sent, items, strict=True):
                await self._trigger_one(entry_id, item["learner"], item["trigger"])

    async def _record_batch(
        self, sent: list[str], items: list[dict[str, Any]], results: list[Any]
    ) -> None:
        done: list[MetaServed] = []
        busy = 0
        for entry_id, item, result in zip(sent, items, results, strict=True):
            trigger = item["trigger"]
            status = result.get("status") if isinstance(result, dict) else None
            if status == 200:
                done.append(_served(entry_id, item["learner"], trigger, result))
            elif status in (400, 404, 422):
                await self._give_up(entry_id, item["learner"], f"meta answered {status}: {result}")
            else:
                busy += 1  # kept pending: claim_stale retries it
        if done:
            await self._record_done(done)
        if busy:
            await self._kept_queued(f"meta busy: {busy} triggers kept queued")

    async def _trigger_one(self, entry_id: str, learner: str, trigger: dict[str, int]) -> None:
        try:
            status, body = await self.meta.run_all(learner, trigger)
        except UpstreamError as exc:
            await self._meta_down(exc.message)
            return
        if status == 200:
            await self._record_done([_served(entry_id, learner, trigger, body)])
        elif status == 409:
            await self._kept_queued(f"meta paused: trigger for {learner} kept queued")
        elif status >= 500 or status == 429:
            await self._meta_down(f"meta answered {status}")
        else:
            await self._give_up(entry_id, learner, f"meta answered {status}: {body}")

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

    async def _give_up(self, entry_id: str, learner: str, reason: str) -> None:
        log.warning("meta_trigger_dropped", learner=learner, reason=reason[:300])
        await self.store.record_meta_dropped(entry_id, f"meta trigger dropped: {reason}"[:300])

    async def _meta_down(self, error: str) -> None:
        if self._meta_down_since is None:
            self._meta_down_since = now_ms()
            log.warning("coach_meta_outage", error=error)
            await self.store.record_meta_outage(self._meta_down_since, error)


def _served(entry_id: str, learner: str, trigger: dict[str, int], answer: Any) -> MetaServed:
    """A trigger meta answered 200, with the delay meta measured or, if its answer lacks one,
    the time since the commit as the coach sees it."""
    delay = answer.get("delay_ms") if isinstance(answer, dict) else None
    if not isinstance(delay, int | float):
        delay = now_ms() - trigger["ts"]
    return MetaServed(entry_id, learner, trigger["round"], float(delay))


def batches_of(
    ready: list[tuple[str, ReadyEvent]], size: int
) -> list[list[tuple[str, ReadyEvent]]]:
    """Entries in read order, cut into batches of at most `size` with each learner at most once
    per batch (meta's run-batch takes distinct learners). A learner that became ready twice in
    one read (ready, coached below the bar, ready again) gets its second entry in a later
    batch, served like any other."""
    batches: list[list[tuple[str, ReadyEvent]]] = []
    learners: list[set[str]] = []
    for entry in ready:  # bounded by the read's `count`
        learner = entry[1].learner
        for batch, seen in zip(batches, learners, strict=True):
            if len(batch) < size and learner not in seen:
                break
        else:
            batch, seen = [], set()
            batches.append(batch)
            learners.append(seen)
        batch.append(entry)
        seen.add(learner)
    return batches
