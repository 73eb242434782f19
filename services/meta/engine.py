"""The meta service's operations on one learner (or the whole cohort): start, run-all, boost,
and the read-only views. Each mutating operation is read → compute (phases.py) → one
version-checked commit (store.py), retried a bounded number of times on a version conflict,
because training commits rounds to the same learner state concurrently.

Exactly once: a phase is recorded completed in the same atomic `meta_commit` step that applies
its effect, and that step only succeeds if the meta document is still at the version this caller
read. Two concurrent run-all for one learner therefore cannot both record a phase: the loser's
commit fails, it re-reads, finds the phases completed and runs nothing. The per-learner lock
(SET NX PX + token, released by compare-and-delete) only makes the second caller wait for the
first instead of computing in vain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from services.meta import phases, views
from services.meta.metrics import measure
from services.meta.store import COHORT_PAGE, MetaCommit, MetaStore, Snapshot
from shared.errors import ApiError, Conflict, NotFound
from shared.events import CompletedEvent
from shared.retry import conflict_backoff

MAX_ATTEMPTS = 12  # commits retried on version conflict (training may commit in between)
REPORT_LOG = 50  # activity-log entries in a report: the newest 50
COHORT_CONCURRENCY = 32
FALLBACK_CONCURRENCY = 8  # run_batch learners sent down the single-learner path at once

# 10 M learners at 500 a page, plus a partial page per shard: a bound, not an expected size.
COHORT_MAX_PAGES = 20_000 + 1024


class MetaPaused(Conflict):
    code = "meta_paused"

    def __init__(self) -> None:
        super().__init__(
            "Meta-learning is paused; POST /api/v4/meta-learning/resume to run phases again"
        )


def learner_not_found(learner: str) -> NotFound:
    return NotFound(
        f"Learner {learner!r} not found", code="learner_not_found", details={"learner": learner}
    )


class Busy(Conflict):
    code = "meta_busy"


@dataclass(frozen=True, slots=True)
class Trigger:
    round: int
    ts: int  # epoch ms of the commit of the round that made the learner ready


def recorded_trigger(asked: Trigger | None, snap: Snapshot) -> Trigger | None:
    """The trigger meta counts: when a caller says the learner became ready (`asked`), the
    round and time come from the server's own record of that transition (commit_rounds writes
    `rr`/`rt` in the learner's state hash), so a caller cannot forge the delay the gates read
    nor pin `lastTrigger` with a huge round. The caller's round and ts are ignored; without a
    record (the learner never became ready) nothing is counted as a trigger."""
    if asked is None or snap.ready_round is None or snap.ready_ts is None:
        return None
    return Trigger(snap.ready_round, snap.ready_ts)


@dataclass(slots=True)
class RunPlan:
    """run-all for one learner computed from one snapshot: the commit to make, or None when
    there is nothing to record (every phase completed and the trigger already seen)."""

    learner: str
    trigger: Trigger | None
    doc: dict[str, Any]  # the document as read
    ran: list[int]
    delay_ms: int | None
    commit: MetaCommit | None


def plan_run(
    learner: str, trigger: Trigger | None, snap: Snapshot, now: float, token: str | None
) -> RunPlan:
    trigger = recorded_trigger(trigger, snap)
    doc = snap.doc or phases.new_document()
    out = phases.run_remaining(doc, snap.state, now)  # type: ignore[arg-type]
    now_ms = int(now * 1000)
    delay_ms = max(0, now_ms - trigger.ts) if trigger is not None else None
    last = doc.get("lastTrigger") or {}
    # A trigger counts once per round: a coach retrying the same trigger gets its answer
    # again but no second `completed` event.
    new_trigger = trigger is not None and trigger.round > int(last.get("round", -1))
    if not out.ran and not new_trigger:
        return RunPlan(learner, trigger, doc, [], delay_ms, None)
    event = CompletedEvent(
        learner=learner,
        round=trigger.round if trigger is not None else None,
        delay_ms=delay_ms,
        ts=now_ms,
        ran=tuple(out.ran),
    )
    if trigger is not None and new_trigger:
        phases.note_trigger(out.doc, trigger.round, trigger.ts, delay_ms or 0)
    commit = MetaCommit(
        learner,
        snap.meta_version,
        out.doc,
        out.log,
        state_version=snap.state_version,
        state=out.state,
        phases_run=len(out.ran),
        event=event,
        lock_token=token,
    )
    return RunPlan(learner, trigger, doc, out.ran, delay_ms, commit)


def _done(learner: str, ran: list[int], delay_ms: int | None) -> dict[str, Any]:
    result: dict[str, Any] = {"learner": learner, "status": 200, "ran": ran}
    if delay_ms is not None:
        result["delay_ms"] = delay_ms
    return result


def _failed(learner: str, exc: ApiError) -> dict[str, Any]:
    return {"learner": learner, "status": exc.status, "error": exc.body()["error"]}


class MetaEngine:
    def __init__(self, store: MetaStore) -> None:
        self.store = store

    async def _ensure_running(self) -> None:
        if await self.store.paused():
            raise MetaPaused()

    async def _snapshot(self, learner: str, log_entries: int = 0) -> Snapshot:
        snap = await self.store.snapshot(learner, log_entries)
        if snap.state is None:
            raise learner_not_found(learner)
        return snap

    # ---- mutations ---------------------------------------------------------------------------
    async def start(self, learner: str) -> dict[str, Any]:
        await self._ensure_running()
        for attempt in range(MAX_ATTEMPTS):
            await conflict_backoff(attempt)
            snap = await self._snapshot(learner)
            doc = snap.doc or phases.new_document()
            out = phases.start(doc, snap.state, time.time())  # type: ignore[arg-type]
            if not out.log:
                return views.status_view(doc)
            res = await self.store.commit(learner, snap.meta_version, out.doc, log=out.log)
            if res.ok:
                return views.status_view(out.doc)
            if res.missing:
                raise learner_not_found(learner)
        raise Busy("Meta state kept changing; retry")

    async def run_all(self, learner: str, trigger: Trigger | None) -> dict[str, Any]:
        # Three round trips on the usual path (pause flag + lock, snapshot + log, commit +
        # unlock) where there were six: each is a wait on Redis and a wake-up of this process,
        # which on a busy machine costs milliseconds of the coach's meta trigger delay.
        paused, token = await self.store.paused_or_lock(learner)
        released = False
        try:
            if paused:
                raise MetaPaused()
            answer, released = await self._run_all_locked(learner, trigger, token)
            return answer
        finally:
            if not released:
                await self.store.release_lock(learner, token)

    async def _run_all_locked(
        self, learner: str, trigger: Trigger | None, token: str | None
    ) -> tuple[dict[str, Any], bool]:
        """The answer, and whether the commit released the run lock."""
        for attempt in range(MAX_ATTEMPTS):
            await conflict_backoff(attempt)
            snap = await self._snapshot(learner, log_entries=REPORT_LOG)
            plan = plan_run(learner, trigger, snap, time.time(), token)
            if plan.commit is None:
                return self._run_answer(plan.doc, snap.log, [], plan.delay_ms), False
            res = await self.store.commit_many([plan.commit])
            if res[0].ok:
                log = [*reversed(plan.commit.log), *snap.log][:REPORT_LOG]  # see Snapshot.log
                return self._run_answer(plan.commit.doc, log, plan.ran, plan.delay_ms), True
            if res[0].missing:
                raise learner_not_found(learner)
            # Version conflict: a training round or another meta writer got in between; re-read
            # and recompute (a phase completed meanwhile is then skipped).
        raise Busy("Learner state kept changing; retry")

    async def run_batch(self, items: list[tuple[str, Trigger | None]]) -> list[dict[str, Any]]:
        """run-all for many learners (distinct ids) in two round trips for the whole batch on
        the usual path: the pause flag, every lock and every snapshot; then every commit (each
        releases its lock). The coach sends each read of readiness events as one batch, so a
        wave of learners becoming ready costs one HTTP call and two Redis waits instead of one
        call and three waits per learner; what is left per learner is the phases' computation.

        Learners are independent: each gets its own result, in the order given —
        {learner, status: 200, ran, delay_ms} or {learner, status: 404 | 409, error}. A learner
        whose lock another run holds, or whose commit met a version conflict, goes through the
        single-learner path (lock wait, bounded retries) concurrently with the others. Exactly
        once holds as for run_all: every commit is version-checked."""
        paused, held, snaps = await self.store.lock_and_snapshot_many(
            [learner for learner, _ in items]
        )
        if paused:
            await self.store.release_locks(held)
            raise MetaPaused()
        results: dict[str, dict[str, Any]] = {}
        locked = [(learner, trigger) for learner, trigger in items if learner in held]
        contended = [(learner, trigger) for learner, trigger in items if learner not in held]
        plans: list[RunPlan] = []
        try:
            for learner, trigger in locked:
                snap = snaps[learner]
                if snap.state is None:
                    results[learner] = _failed(learner, learner_not_found(learner))
                    continue
                plan = plan_run(learner, trigger, snap, time.time(), held[learner])
                if plan.commit is None:
                    results[learner] = _done(learner, [], plan.delay_ms)
                else:
                    plans.append(plan)
            outcomes = await self.store.commit_many([p.commit for p in plans])  # type: ignore[misc]
        except BaseException:
            # Best effort: the first error is what the caller must see, and a lock left
            # behind lapses after LOCK_TTL_MS anyway.
            with contextlib.suppress(Exception):
                await self.store.release_locks(held)
            raise
        retry: list[tuple[str, Trigger | None]] = []
        for plan, res in zip(plans, outcomes, strict=True):
            if res.ok:
                held.pop(plan.learner)  # released by its commit
                results[plan.learner] = _done(plan.learner, plan.ran, plan.delay_ms)
            elif res.missing:
                results[plan.learner] = _failed(plan.learner, learner_not_found(plan.learner))
            else:
                retry.append((plan.learner, plan.trigger))
        # Locks of learners answered without a commit; a conflicted learner keeps its lock
        # for the single path below, which releases it.
        await self.store.release_locks(
            {learner: token for learner, token in held.items() if learner in results}
        )

        # Bounded: each fallback holds Redis connections while it waits or retries, and the
        # pool is finite (a burst of them must not starve the batches behind).
        gate = asyncio.Semaphore(FALLBACK_CONCURRENCY)

        async def single(learner: str, trigger: Trigger | None) -> None:
            async with gate:
                await run_one(learner, trigger)

        async def run_one(learner: str, trigger: Trigger | None) -> None:
            try:
                if learner in held:  # a version conflict: the lock is still ours, retry under it
                    released = False
                    try:
                        answer, released = await self._run_all_locked(
                            learner, trigger, held[learner]
                        )
                    finally:
                        if not released:
                            await self.store.release_lock(learner, held[learner])
                else:  # another run holds the lock: wait for it, as run-all does
                    answer = await self.run_all(learner, trigger)
                results[learner] = _done(learner, answer["ran"], answer.get("delay_ms"))
            except (NotFound, Conflict) as exc:
                results[learner] = _failed(learner, exc)

        await asyncio.gather(*(single(learner, trigger) for learner, trigger in retry + contended))
        return [results[learner] for learner, _ in items]

    @staticmethod
    def _run_answer(
        doc: dict[str, Any], log: list[dict[str, Any]], ran: list[int], delay_ms: int | None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"report": views.report_view(doc, log), "ran": ran}
        if delay_ms is not None:
            answer["delay_ms"] = delay_ms
        return answer

    async def boost(
        self, learner: str, retention_delta: float, transfer_delta: float
    ) -> dict[str, Any]:
        await self._ensure_running()
        result = await self._boost_one(learner, retention_delta, transfer_delta)
        if result is None:
            raise learner_not_found(learner)
        await self.store.count_boosts({self.store.shard_of(learner): 1})
        return result

    async def _boost_one(
        self, learner: str, retention_delta: float, transfer_delta: float
    ) -> dict[str, Any] | None:
        """Boost one learner; None when it does not exist."""
        for attempt in range(MAX_ATTEMPTS):
            await conflict_backoff(attempt)
            snap = await self.store.snapshot(learner)
            if snap.state is None:
                return None
            doc = snap.doc or phases.new_document()
            out, booster = phases.boost(
                doc, snap.state, retention_delta, transfer_delta, time.time()
            )
            res = await self.store.commit(
                learner,
                snap.meta_version,
                out.doc,
                log=out.log,
                state_version=snap.state_version,
                state=out.state,
            )
            if res.ok:
                return {"booster": booster, "metrics": out.doc["metrics"]}
            if res.missing:
                return None
        raise Busy("Learner state kept changing; retry")

    async def boost_cohort(self, retention_delta: float, transfer_delta: float) -> dict[str, Any]:
        """Boost every learner, shard after shard, paging each shard's learners index by
        creation score (stable while learners are added or deleted meanwhile: each page starts
        after the last score seen)."""
        await self._ensure_running()
        boosted: dict[int, int] = {}
        skipped = 0
        failed: list[str] = []
        sem = asyncio.Semaphore(COHORT_CONCURRENCY)

        async def one(shard: int, learner: str) -> None:
            nonlocal skipped
            async with sem:
                try:
                    result = await self._boost_one(learner, retention_delta, transfer_delta)
                except Busy:
                    failed.append(learner)
                    return
            if result is None:
                skipped += 1  # deleted while we paged
            else:
                boosted[shard] = boosted.get(shard, 0) + 1

        pages = 0
        for shard in self.store.shards():
            after: float | None = None
            while pages < COHORT_MAX_PAGES:  # bounded over all shards together
                pages += 1
                page = await self.store.learners_after(shard, after, COHORT_PAGE)
                if not page:
                    break
                await asyncio.gather(*(one(shard, learner) for learner, _ in page))
                after = page[-1][1]
                if len(page) < COHORT_PAGE:
                    break
        await self.store.count_boosts(boosted)
        return {
            "cohort": "all",
            "count": sum(boosted.values()),
            "skipped": skipped,
            "failed": failed[:100],
            "failedCount": len(failed),
            "retentionDelta": retention_delta,
            "transferDelta": transfer_delta,
        }

    async def set_paused(self, paused: bool) -> None:
        await self.store.set_paused(paused)

    # ---- reads (no GET changes state) --------------------------------------------------------
    async def status(self, learner: str) -> dict[str, Any]:
        snap = await self._snapshot(learner)
        view = views.status_view(snap.doc or phases.new_document())
        view["learner"] = learner
        view["paused"] = await self.store.paused()
        return view

    async def report(self, learner: str, limit: int = REPORT_LOG) -> dict[str, Any]:
        snap = await self._snapshot(learner)
        log, _ = await self.store.activity_log(learner, limit)
        view = views.report_view(snap.doc or phases.new_document(), log)
        view["learner"] = learner
        return view

    async def insights(self, learner: str) -> dict[str, Any]:
        snap = await self._snapshot(learner)
        return views.insights_view(snap.doc or phases.new_document(), snap.state, time.time())

    async def phase(self, learner: str, n: int) -> dict[str, Any] | None:
        snap = await self._snapshot(learner)
        # The document is plain JSON (dict[str, Any]); a phase entry is an object or absent.
        phase: dict[str, Any] | None = (snap.doc or phases.new_document())["phases"].get(str(n))
        return phase

    async def activity_log(self, learner: str, limit: int) -> tuple[list[dict[str, Any]], int]:
        await self._snapshot(learner)
        return await self.store.activity_log(learner, limit)

    async def metrics(self, learner: str) -> tuple[dict[str, Any], dict[str, float]]:
        """The stored metrics (baseline/current at the last meta step, improvements) and the
        metrics measured from the learner's training state right now."""
        snap = await self._snapshot(learner)
        doc = snap.doc or phases.new_document()
        return doc["metrics"], measure(snap.state, time.time())  # type: ignore[arg-type]

    async def stats(self) -> dict[str, Any]:
        raw = await self.store.stats()
        count = raw.get("delayCount", 0)
        total = raw.get("delaySumMs", 0)
        return {
            "paused": await self.store.paused(),
            "completed": raw.get("completed", 0),
            "phasesRun": raw.get("phasesRun", 0),
            "boosts": raw.get("boosts", 0),
            "triggerDelayMs": {
                "count": count,
                "avg": round(total / count, 2) if count else None,
                "last": raw.get("delayLastMs"),
                "max": raw.get("delayMaxMs"),
            },
        }
