"""A real redis-server process on a free port, for one test session (or one test): the same
helper the benchmarks use (loadtests.fleetctl.RedisServer)."""

from __future__ import annotations

from loadtests.fleetctl import RedisServer

__all__ = ["RedisServer"]
