"""Group commit of one learner's concurrent rounds.

Rounds of one learner are serial: each computes on the state the previous one committed. Run one
by one, each waits for the previous one's commit round trip, so one learner's rate is one round
per round trip however many requests are waiting. Here the requests that arrive while a commit
of their learner is in flight queue behind it; when it is done they are computed together, in
arrival order, on the newest state, and committed in ONE atomic step (the commit script takes n
rounds). Each request still gets its own round and id.

Ordering and failure: the first request of an idle learner runs its own group at once (no extra
task, no added latency for the common case of many learners with one request each); what queued
meanwhile is drained by a task of its own, group after group, each up to `max_group` requests.
A group commits entirely or not at all, so a failure fails exactly the requests of that group
(none of which was committed); the next group is tried on its own. A request whose caller went
away before its group was computed is left out of it (its future is done); one that goes away
after is committed like any round whose client disconnected.

Atomicity is the commit script's (one learner's keys, one shard); what this module adds is only
which requests share a commit. It runs inside one process; requests for the same learner that
reach different processes are serialised by the commit's version check as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.logging import get_logger

log = get_logger(__name__)

R = TypeVar("R")

# Runs one group: the learner and each request's start time (perf_counter), in arrival order;
# returns one result per request, in the same order, or raises for the whole group.
GroupRunner = Callable[[str, list[float]], Awaitable[list[R]]]


@dataclass(slots=True)
class _Waiter(Generic[R]):
    started: float
    future: asyncio.Future[R]


@dataclass(slots=True)
class _Queue(Generic[R]):
    waiting: deque[_Waiter[R]] = field(default_factory=deque)


class RoundCoalescer(Generic[R]):
    def __init__(self, run_group: GroupRunner[R], max_group: int = 32) -> None:
        self._run_group = run_group
        self.max_group = max_group
        self._queues: dict[str, _Queue[R]] = {}  # learners with a group in flight
        self._drains: set[asyncio.Task[None]] = set()
        self.groups = 0  # groups committed or failed, for the metrics
        self.coalesced = 0  # requests that shared a group with an earlier one

    def __len__(self) -> int:
        return len(self._queues)

    async def submit(self, learner: str, started: float) -> R:
        queue = self._queues.get(learner)
        if queue is not None:  # a group of this learner is in flight: wait behind it
            waiter: _Waiter[R] = _Waiter(started, asyncio.get_running_loop().create_future())
            queue.waiting.append(waiter)
            return await waiter.future
        queue = self._queues[learner] = _Queue()
        try:
            self.groups += 1
            return (await self._run_group(learner, [started]))[0]
        finally:
            # Whatever became of this request, the ones that queued behind it get their turn.
            if queue.waiting:
                task = asyncio.create_task(self._drain(learner, queue), name="round-coalescer")
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            else:
                del self._queues[learner]

    async def _drain(self, learner: str, queue: _Queue[R]) -> None:
        group: list[_Waiter[R]] = []
        try:
            # Bounded by the requests that arrive: each turn takes at least one off the queue.
            while queue.waiting:
                group = []
                while queue.waiting and len(group) < self.max_group:
                    waiter = queue.waiting.popleft()
                    if not waiter.future.done():  # its caller has not gone away
                        group.append(waiter)
                if not group:
                    continue
                self.groups += 1
                self.coalesced += len(group) - 1
                try:
                    results = await self._run_group(learner, [w.started for w in group])
                except Exception as exc:
                    for w in group:
                        if not w.future.done():
                            w.future.set_exception(exc)
                    continue
                for w, result in zip(group, results, strict=True):
                    if not w.future.done():
                        w.future.set_result(result)
        except BaseException as exc:  # cancelled at shutdown: nobody is left waiting forever
            for w in (*group, *queue.waiting):
                if not w.future.done():
                    w.future.set_exception(exc)
            raise
        finally:
            del self._queues[learner]

    async def aclose(self) -> None:
        """Cancel the drains still running (shutdown), and wait for them."""
        for task in list(self._drains):
            task.cancel()
        for task in list(self._drains):
            with contextlib.suppress(BaseException):
                await task
