"""Synchronous Redis clients for tests and load tests, whichever Redis the URL points at.

`sync_client(url)` asks the node `INFO cluster`: a node of a Redis Cluster gets redis-py's
`RedisCluster` (it routes each command to its key's master and follows MOVED), a single Redis gets
`Redis`. Both answer the commands the tests use on one shard's keys (one hash tag), and a pipeline
without a transaction; what a cluster client refuses (MGET or MULTI across slots, a Script called
through a cluster pipeline) the helpers below do per slot instead."""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from redis.cluster import RedisCluster

SyncRedis = redis.Redis | RedisCluster


def is_cluster(url: str) -> bool:
    """True when the Redis at `url` is a node of a Redis Cluster (`cluster_enabled:1`)."""
    with contextlib.closing(redis.Redis.from_url(url, socket_timeout=5.0)) as probe:
        return int(probe.info("cluster").get("cluster_enabled", 0)) == 1


def sync_client(url: str, **kwargs: Any) -> SyncRedis:
    """A client of the Redis (or Redis Cluster) at `url`, decoded replies unless told otherwise."""
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("socket_timeout", 10.0)
    if is_cluster(url):
        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def evalsha_pipelined(
    client: SyncRedis, source: str, calls: list[tuple[list[str], list[Any]]]
) -> list[Any]:
    """Run one script once per (keys, args) in a pipeline: by SHA after SCRIPT LOAD (on every
    master of a cluster), since a cluster pipeline cannot take a registered Script; each call's
    keys must share a slot (it goes to the master of its first key)."""
    sha = client.script_load(source)
    with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return list(pipe.execute())


def flush_if_single(client: SyncRedis) -> None:
    """FLUSHDB on a single Redis only: a cluster is shared by the session's tests, which keep
    apart by their own key prefix instead."""
    if not isinstance(client, RedisCluster):
        client.flushdb()
