"""Training's auto-pipeline and learner-state cache, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from harness.proxy import ReplyDroppingProxy
from services.training.pipelining import AutoPipeline
from services.training.state_cache import StateCache
from shared.redis_conn import make_client


async def test_commands_of_one_loop_turn_share_a_batch_and_keep_their_replies(redis, prefix):
    pipe = AutoPipeline(redis, connections=1)
    try:
        key = f"{prefix}:n"
        replies = await asyncio.gather(*(pipe.execute("INCR", key) for _ in range(200)))
        assert replies == list(range(1, 201))  # in order, one reply each
        assert pipe.commands == 200 and pipe.batches <= 2
    finally:
        await pipe.aclose()


async def test_an_error_reply_fails_only_its_command(redis, prefix):
    pipe = AutoPipeline(redis)
    try:
        await redis.set(f"{prefix}:s", "text")
        ok1 = pipe.execute("SET", f"{prefix}:a", "1")
        bad = pipe.execute("INCR", f"{prefix}:s")  # not an integer
        ok2 = pipe.execute("GET", f"{prefix}:a")
        assert await ok1 == "OK"  # raw replies: no redis-py response callbacks
        with pytest.raises(ResponseError):
            await bad
        assert await ok2 == "1"
        assert await pipe.execute("PING") == "PONG"  # the connection stayed in sync
    finally:
        await pipe.aclose()


async def test_evalsha_loads_a_script_redis_does_not_know(redis, prefix):
    pipe = AutoPipeline(redis)
    try:
        script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        await redis.script_flush()
        assert await pipe.evalsha(script, [f"{prefix}:k"], [5]) == 5
        await redis.script_flush()  # e.g. Redis restarted: NOSCRIPT, loaded again, run once
        assert await pipe.evalsha(script, [f"{prefix}:k"], [5]) == 10
    finally:
        await pipe.aclose()


def test_state_cache_is_bounded_lru_and_skips_contended_learners():
    cache = StateCache(max_entries=2)
    cache.put("a", "1", "sa")
    cache.put("b", "1", "sb")
    assert cache.get("a") == ("1", "sa")  # a is now the most recent
    cache.put("c", "1", "sc")
    assert cache.get("b") is None and len(cache) == 2
    cache.refresh("zz", "1", "x")  # refresh never inserts
    assert cache.get("zz") is None
    cache.contend("a")
    cache.put("a", "2", "sa2")  # contended: not cached for a while
    assert cache.get("a") is None
    assert StateCache(max_entries=0).get("a") is None


async def test_a_connection_dropped_while_idle_is_replaced_without_failing_the_batch(redis):
    pipe = AutoPipeline(redis, connections=1)
    try:
        conn_id = await pipe.execute("CLIENT", "ID")
        await redis.client_kill_filter(_id=conn_id)  # what a Redis restart does to it
        assert await pipe.execute("PING") == "PONG"
        assert await pipe.execute("CLIENT", "ID") != conn_id
    finally:
        await pipe.aclose()


async def test_a_batch_whose_reply_is_lost_is_not_resent(redis_server, redis, prefix):
    # Redis ran the INCR, then the connection died before its reply: resending would run it again
    # (for a commit, a second round nobody asked for).
    proxy = ReplyDroppingProxy(redis_server.port, b"INCR")
    await proxy.start()
    client = make_client(f"redis://127.0.0.1:{proxy.port}/0")
    pipe = AutoPipeline(client, connections=1)
    key = f"{prefix}:counter"
    try:
        assert await pipe.execute("PING") == "PONG"  # an established connection, as in service
        with pytest.raises(RedisConnectionError):
            await pipe.execute("INCR", key)
        assert proxy.dropped == 1
        assert await redis.get(key) == "1"
        assert await pipe.execute("INCR", key) == 2  # the next batch reconnects
    finally:
        await pipe.aclose()
        await client.aclose()
        await proxy.close()
