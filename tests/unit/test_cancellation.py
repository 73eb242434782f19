"""A loop whose cancellation was swallowed inside a call (as the redis-py client can do with a
command in flight) still stops at its next pass."""

from __future__ import annotations

import asyncio

import pytest

from shared.cancellation import stop_if_cancelled


async def _swallowing_call() -> None:
    # What the client does in the bad case: the CancelledError never leaves the command.
    try:
        await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        pass


async def test_a_swallowed_cancellation_stops_the_loop_at_its_next_pass() -> None:
    passes = 0

    async def loop() -> None:
        nonlocal passes
        for _ in range(1000):  # bounded: without the check it would run all of them
            stop_if_cancelled()
            passes += 1
            await _swallowing_call()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert passes == 1


async def test_no_cancellation_requested_runs_on() -> None:
    stop_if_cancelled()  # nothing asked: returns
