"""Back-off for optimistic (version-checked) writes that lost a race."""

from __future__ import annotations

import asyncio
import random


async def conflict_backoff(attempt: int) -> None:
    """Wait before retry `attempt` (0 = first try, no wait) of a commit that lost a version race.

    Two writers of one learner (two training replicas, training and meta, concurrent boosts) that
    retry at once collide again at once; on a busy machine one of them can lose every attempt.
    A jittered pause that doubles from 1 ms (at most 32 ms) spreads them apart.
    """
    if attempt:
        await asyncio.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 5)))
