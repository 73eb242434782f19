"""Cancellation that a Redis command in flight cannot lose.

The redis-py asyncio client can swallow a cancellation that arrives while a command is in flight
(the command then returns, or fails with a timeout, as if nothing happened: reproduced with a bare
`GET` loop, and seen as a shard-lease task that never ended after `cancel()`). The task still
counts the request (`Task.cancelling()`), so every background loop calls `stop_if_cancelled()` at
the top of each pass: a loop that goes round again after a lost cancellation stops there.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled(cause: BaseException | None = None) -> None:
    """Raise CancelledError when this task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
