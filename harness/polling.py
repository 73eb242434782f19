"""Waiting for a condition in a test or a benchmark: poll until it holds, within a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    check: Callable[[], Any],
    what: str = "condition",
    timeout_s: float = 60.0,
    every_s: float = 0.05,
) -> Any:
    """`check()`'s first truthy value; AssertionError naming `what` after `timeout_s` (a long
    deadline costs nothing when the condition holds, and keeps a loaded machine from failing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded poll
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what} not seen within {timeout_s} s")
