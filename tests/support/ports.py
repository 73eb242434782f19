"""Free ports for test processes (the load-test library's helper, shared)."""

from __future__ import annotations

from loadtests.fleetctl import free_port

__all__ = ["free_port"]
