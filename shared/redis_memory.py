"""How full the fleet's Redis is: `INFO memory` of every master, and the fullest of them.

On a Redis Cluster each master has its own `maxmemory` and refuses writes to its own slots when
it reaches it, whatever the others hold, so the figure that matters is the fullest master's, not
a sum or the one node a bare `INFO` happens to reach (redis-py sends INFO to one default node).
On a single Redis the one server is the only "master".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster

from shared.redis_types import FleetRedis


@dataclass(frozen=True, slots=True)
class NodeMemory:
    node: str  # host:port of a cluster master, "redis" for a single Redis
    used: int  # used_memory, bytes
    limit: int  # maxmemory, bytes (0: none)
    policy: str | None  # maxmemory_policy

    @property
    def pct(self) -> float | None:
        return round(100.0 * self.used / self.limit, 2) if self.limit else None


def _node(name: str, info: dict[str, Any]) -> NodeMemory:
    return NodeMemory(
        node=name,
        used=int(info.get("used_memory", 0)),
        limit=int(info.get("maxmemory", 0)),
        policy=info.get("maxmemory_policy"),
    )


async def masters_memory(redis: FleetRedis) -> list[NodeMemory]:
    """`INFO memory` of every master (one call per master on a cluster, sent together)."""
    if isinstance(redis, RedisCluster):
        replies = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        if len(redis.get_primaries()) == 1:  # redis-py answers a one-node target unwrapped
            replies = {redis.get_primaries()[0].name: replies}
        return [_node(str(name), dict(info)) for name, info in sorted(replies.items())]
    return [_node("redis", dict(await redis.info("memory")))]


def fullest(nodes: list[NodeMemory]) -> NodeMemory:
    """The master nearest its limit; with no limit anywhere, the one using the most."""
    if not nodes:
        raise ValueError("no Redis master answered")
    return max(nodes, key=lambda n: (n.pct if n.pct is not None else -1.0, n.used))
