"""Stopping a service's background tasks is bounded, even when a cancel is lost."""

from __future__ import annotations

import asyncio

from shared.app_factory import _cancel_and_wait


async def test_a_swallowed_cancel_is_sent_again():
    # As seen in the fleet's stop: the first CancelledError never reaches the loop, which goes
    # on awaiting its next read.
    cancels = 0

    async def loop() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 1:
                    continue  # lost
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await _cancel_and_wait(task, "test")
    assert task.cancelled() and cancels == 2


async def test_a_task_that_never_stops_is_left_behind_within_the_bound():
    released = False

    async def stubborn() -> None:
        while not released:  # ignores every cancel until the test lets it go
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    # Returns (a hang would trip this generous bound) and leaves the task running.
    await asyncio.wait_for(_cancel_and_wait(task, "test"), timeout=30)
    assert not task.done()
    released = True
    task.cancel()
    await asyncio.wait_for(task, timeout=30)
