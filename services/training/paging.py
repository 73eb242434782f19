"""Paging the learners of every shard in one stable order.

Each shard indexes its own learners by a creation number of its own (`learners_seq(s)`, a
counter of the shard, never reused). The fleet's order merges the shards' indexes: a learner at
creation number `seq` in shard `s` has the position `seq * S + s`, so positions are unique, fixed
for the learner's life, and the shards interleave (the first learners of every shard come first,
close to creation order when learners spread evenly). A page's cursor is the position of its
last learner; the next page is the learners with a greater position.

What a walk over the pages promises: every learner that exists for the whole walk is listed
exactly once; a learner created during the walk may or may not be (a shard with fewer learners
places a newcomer at a position the walk may have passed). A deleted learner is simply absent.

Reading: every shard's index is read from the position's creation number on, `chunk` entries at
a time, all shards in one pipelined round trip; the merge takes the smallest position next, and
refills a shard only when its buffer runs out. So a page of `limit` reads about
`limit + S * chunk` index entries, in a few round trips.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Sequence

# (shard, first creation number wanted, how many) -> [(learner, creation number)] per request.
IndexRead = Callable[[Sequence[tuple[int, int, int]]], Awaitable[list[list[tuple[str, int]]]]]


def position(seq: int, shard: int, shards: int) -> int:
    return seq * shards + shard


def first_seq_after(cursor: int, shard: int, shards: int) -> int:
    """The smallest creation number of `shard` whose position is above `cursor`."""
    return (cursor - shard) // shards + 1


async def merged_page(
    read: IndexRead, shards: int, cursor: int, limit: int
) -> tuple[list[tuple[str, int]], int | None]:
    """Up to `limit` (learner, position) after `cursor` in position order, and the next page's
    cursor (None when this page is the last)."""
    chunk = max(8, -(-2 * limit // shards))  # ceil(2 * limit / S): most pages take one read
    start = {s: max(1, first_seq_after(cursor, s, shards)) for s in range(shards)}
    buffers: dict[int, list[tuple[str, int]]] = {s: [] for s in range(shards)}
    done: set[int] = set()
    heads: list[tuple[int, int]] = []  # (position, shard) of each buffer's first entry
    page: list[tuple[str, int]] = []
    # Bounded: each pass either takes one learner into the page or refills the shards whose
    # buffers ran out (each refill takes `chunk` entries or marks the shard done).
    for _ in range(2 * limit + 2 * shards + 2):
        empty = [s for s in range(shards) if not buffers[s] and s not in done]
        if empty:
            replies = await read([(s, start[s], chunk) for s in empty])
            for s, rows in zip(empty, replies, strict=True):
                if len(rows) < chunk:
                    done.add(s)
                if rows:
                    buffers[s] = list(reversed(rows))  # pop() from the end = smallest first
                    start[s] = rows[-1][1] + 1
                    heapq.heappush(heads, (position(rows[0][1], s, shards), s))
        if not heads or len(page) == limit:
            break
        pos, s = heapq.heappop(heads)
        learner, _ = buffers[s].pop()
        page.append((learner, pos))
        if buffers[s]:
            heapq.heappush(heads, (position(buffers[s][-1][1], s, shards), s))
    more = len(page) == limit and bool(heads or len(done) < shards)
    return page, (page[-1][1] if more else None)
