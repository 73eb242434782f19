"""The curriculum in Redis, and this process's cached snapshot of it.

Topics live in one hash (`keys.curriculum`, topic key → JSON), with a version counter
(`keys.curriculum_version`) bumped in the same MULTI/EXEC as every topic write; a replica's cached
`Curriculum` is current as long as its version matches. So a topic added on any replica reaches
every replica's rounds, and the hot path checks one small string instead of reading the topics.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from services.training.curriculum import Curriculum, builtin_topics, make_topic, topic_from_dict
from shared.domain_errors import ConflictError
from shared.keys import Keys
from shared.redis_types import text_or_none

# Single rounds check the curriculum version at most this often (the batch path and every GET
# check it on each call): a topic added on another replica reaches this one's single rounds within
# this delay, and the hot path saves a pipeline per round. Topics added here refresh at once.
CURRICULUM_CHECK_S = 0.1


class TopicExists(ConflictError):
    code = "topic_exists"


class CurriculumStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.current = Curriculum.of(builtin_topics(), version=-1)
        self._checked = 0.0  # monotonic time the cached curriculum was last checked

    async def init(self) -> None:
        """Write the built-in topics if missing. MULTI/EXEC: the HSETNXs and the version bump
        land together, so another replica never sees new topics under an old version."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for topic in builtin_topics():
                pipe.hsetnx(self.keys.curriculum, topic.key, orjson.dumps(topic.to_dict()).decode())
            pipe.incr(self.keys.curriculum_version)
            await pipe.execute()
        await self.refresh()

    async def refresh(self) -> Curriculum:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.curriculum_version)
            pipe.hgetall(self.keys.curriculum)
            version, raw = await pipe.execute()
        if not raw:
            # Redis lost the curriculum (flushed, or a fresh instance behind the same URL): the
            # built-ins are re-seeded rather than training against no topics at all.
            await self.init()
            return self.current
        topics = [topic_from_dict(k, orjson.loads(v)) for k, v in raw.items()]
        self.current = Curriculum.of(topics, int(version or 0))
        self._checked = time.monotonic()
        return self.current

    async def refresh_if_stale(self) -> Curriculum:
        return await self.at_version(
            text_or_none(await self.redis.get(self.keys.curriculum_version))
        )

    async def at_version(self, version: str | None) -> Curriculum:
        """The curriculum, refreshed if `version` (just read from Redis) is not the cached one."""
        self._checked = time.monotonic()
        if int(version or 0) != self.current.version:
            await self.refresh()
        return self.current

    def check_due(self) -> bool:
        """Whether a single round should check the version now; marks it checked at once, so
        the requests of this interval do not all check."""
        now = time.monotonic()
        if now - self._checked < CURRICULUM_CHECK_S:
            return False
        self._checked = now
        return True

    async def add_topic(
        self,
        key: str,
        name: str,
        problems: list[dict[str, Any]],
        background: bool,
        force: bool,
    ) -> bool:
        """Add (or, with `force`, replace) a topic; True when it replaced an existing one."""
        curriculum = await self.refresh()
        existing = curriculum.get(key)
        if existing is not None and not force:
            raise TopicExists(f"Topic {key!r} already exists; pass force: true to replace it")
        order = (
            existing.order if existing is not None else max(t.order for t in curriculum.topics) + 1
        )
        topic = make_topic(key, name, problems, background, order)
        doc = orjson.dumps(topic.to_dict()).decode()
        # MULTI/EXEC: topic write and version bump are one step, so every replica's cache check
        # (which reads the version) sees the topic as soon as it exists.
        async with self.redis.pipeline(transaction=True) as pipe:
            if force:
                pipe.hset(self.keys.curriculum, key, doc)
            else:
                pipe.hsetnx(self.keys.curriculum, key, doc)
            pipe.incr(self.keys.curriculum_version)
            written, _ = await pipe.execute()
        if not force and not written:
            raise TopicExists(f"Topic {key!r} already exists")
        await self.refresh()
        return existing is not None
