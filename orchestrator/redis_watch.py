"""The orchestrator's view of Redis: whether it answers, and how full it is.

The orchestrator's control API does not need Redis (events are a record, not a dependency), so
it comes up without it and reports `waiting_for_redis` until Redis answers (security review
5.1); the supervisor starts the services only then, since each of them needs Redis to start.
The same loop reads `INFO memory` now and then and raises the memory alert when `used_memory`
reaches TOOLOO_REDIS_MEMORY_ALERT_PCT of `maxmemory` (the embedded Redis refuses writes at the
limit, noeviction): shown in `GET /api/v1/system/status` (`redis`, `alerts`) and logged once per
crossing. On a Redis Cluster the reading is the fullest master's (each refuses writes at its own
limit; shared/redis_memory.py).

The watch also decides which client the orchestrator writes with (`client`: its events and
request counts): the single client it pings, until the first answer shows `cluster_enabled:1`,
then a cluster client made from the same URL (a single-node client would be answered MOVED for
every key another master serves).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from shared.logging import get_logger, redact_text
from shared.redis_conn import make_cluster_client
from shared.redis_memory import NodeMemory, fullest, masters_memory
from shared.redis_types import FleetRedis

log = get_logger(__name__)

PING_TIMEOUT_S = 1.0
MEMORY_EVERY_S = 5.0


def memory_view(node: NodeMemory, alert_pct: float, masters: int = 1) -> dict[str, Any]:
    """Used and maximum memory of the fullest master, the share used and whether it is at or
    past the alert threshold (never with no maxmemory set)."""
    pct = round(node.pct, 1) if node.pct is not None else None
    return {
        "used_memory": node.used,
        "maxmemory": node.limit or None,
        "memory_pct": pct,
        "memory_alert": pct is not None and pct >= alert_pct,
        "memory_node": node.node,
        "masters": masters,
    }


class RedisWatch:
    def __init__(
        self, redis: Redis, interval_s: float, alert_pct: float, url: str | None = None
    ) -> None:
        self.redis = redis
        self.url = url  # to reach every master once the node turns out to be a cluster's
        self._fleet: FleetRedis | None = None  # None: not known yet whether a cluster
        self.interval_s = interval_s
        self.alert_pct = alert_pct
        self.up: bool | None = None  # None: not asked yet
        self.error: str | None = None
        self.memory: dict[str, Any] = {}
        self._became_up = asyncio.Event()
        self._memory_at = 0.0

    async def wait_up(self) -> None:
        """Until Redis has answered once (ends by cancellation at shutdown otherwise)."""
        await self._became_up.wait()

    async def check(self) -> bool:
        try:
            await asyncio.wait_for(self.redis.ping(), PING_TIMEOUT_S)
        except Exception as exc:
            if self.up is not False:
                log.warning("redis_down", error=redact_text(f"{exc.__class__.__name__}: {exc}"))
            self.up = False
            self.error = redact_text(f"{exc.__class__.__name__}: {exc}")
            return False
        if self.up is not True:
            log.info("redis_up")
        self.up = True
        self.error = None
        self._became_up.set()
        if self._fleet is None:
            try:
                self._fleet = await asyncio.wait_for(self._fleet_client(), PING_TIMEOUT_S * 5)
            except Exception as exc:  # asked again at the next check
                log.warning("redis_mode_unknown", error=redact_text(str(exc)))
        if time.monotonic() - self._memory_at >= MEMORY_EVERY_S:
            await self._read_memory()
        return True

    async def _read_memory(self) -> None:
        self._memory_at = time.monotonic()
        try:
            nodes = await asyncio.wait_for(masters_memory(self.client), PING_TIMEOUT_S * 2)
        except Exception as exc:  # the alert is advisory: keep the last reading
            log.warning("redis_memory_unread", error=redact_text(str(exc)))
            return
        memory = memory_view(fullest(nodes), self.alert_pct, len(nodes))
        if memory["memory_alert"] and not self.memory.get("memory_alert"):
            log.warning("redis_memory_high", **memory, alert_pct=self.alert_pct)
        self.memory = memory

    @property
    def client(self) -> FleetRedis:
        """The client to write with: a cluster client once the node is known to be a
        cluster's, else the watched single client."""
        return self._fleet if self._fleet is not None else self.redis

    async def _fleet_client(self) -> FleetRedis:
        info = await self.redis.info("cluster")
        if int(info.get("cluster_enabled", 0)) != 1 or not self.url:
            return self.redis
        cluster = make_cluster_client(self.url)
        try:
            await cluster.initialize()
        except BaseException:  # a timeout included: nothing left open, tried again later
            await cluster.aclose()
            raise
        log.info("redis_cluster", masters=len(cluster.get_primaries()))
        return cluster

    async def aclose(self) -> None:
        if self._fleet is not None and self._fleet is not self.redis:
            await self._fleet.aclose()

    async def run(self) -> None:
        while True:  # ends by cancellation at shutdown; one bounded check per interval
            await self.check()
            await asyncio.sleep(self.interval_s)

    def view(self) -> dict[str, Any]:
        state = {True: "up", False: "down", None: "unknown"}[self.up]
        if self.up is not True and not self._became_up.is_set():
            state = "waiting_for_redis"
        return {"state": state, "error": self.error, **self.memory}

    def alerts(self) -> list[str]:
        alerts = []
        if self.up is False:
            alerts.append("redis is down")
        if self.memory.get("memory_alert"):
            alerts.append(
                f"redis memory at {self.memory['memory_pct']}% of maxmemory "
                f"(alert at {self.alert_pct:g}%)"
            )
        return alerts
