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

from services.training.curriculum import (
    Curriculum,
    builtin_keys,
    builtin_topics,
    make_topic,
    topic_from_dict,
)
from shared.domain_errors import ConflictError, NotFoundError
from shared.keys import Keys
from shared.redis_types import FleetRedis, text_or_none
from shared.scripts import lua_source

# Single rounds check the curriculum version at most this often (the batch path and every GET
# check it on each call): a topic added on another replica reaches this one's single rounds within
# this delay, and the hot path saves a pipeline per round. Topics added here refresh at once.
CURRICULUM_CHECK_S = 0.1


DEFAULT_MAX_TOPICS = 64


class TopicExists(ConflictError):
    code = "topic_exists"


class TooManyTopics(ConflictError):
    code = "too_many_topics"


class BuiltinTopic(ConflictError):
    code = "builtin_topic"


class TopicNotFound(NotFoundError):
    code = "invalid_topic"


class CurriculumStore:
    def __init__(self, redis: FleetRedis, keys: Keys, max_topics: int = DEFAULT_MAX_TOPICS) -> None:
        self.redis = redis
        self.keys = keys
        # Every round costs O(topics) and every learner's readiness may come to depend on each
        # topic: the curriculum is bounded (built-ins included).
        self.max_topics = max_topics
        self._add_script = redis.register_script(lua_source(__package__, "topic_add"))
        self._delete_script = redis.register_script(lua_source(__package__, "topic_delete"))
        self.current = Curriculum.of(builtin_topics(), version=-1)
        self._checked = 0.0  # monotonic time the cached curriculum was last checked

    async def init(self) -> None:
        """Write the built-in topics if missing. MULTI/EXEC: the HSETNXs and the version bump
        land together, so another replica never sees new topics under an old version."""
        await self._rename_untagged()
        async with self.redis.pipeline(transaction=True) as pipe:
            for topic in builtin_topics():
                pipe.hsetnx(self.keys.curriculum, topic.key, orjson.dumps(topic.to_dict()).decode())
            pipe.incr(self.keys.curriculum_version)
            await pipe.execute()
        await self.refresh()

    async def _rename_untagged(self) -> None:
        """A Redis initialised before the curriculum keys shared a hash tag keeps its topics:
        RENAMENX moves each old key unless the new one exists (idempotent; replicas starting
        together each try, one wins). Only on a single Redis, the one place the old names can
        exist (RENAME across slots is refused by a cluster)."""
        old_hash, old_version = self.keys.curriculum_untagged
        if not await self.redis.exists(old_hash, old_version):
            return
        for old, new in (
            (old_hash, self.keys.curriculum),
            (old_version, self.keys.curriculum_version),
        ):
            if await self.redis.exists(old):
                await self.redis.renamenx(old, new)

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
        """Add (or, with `force`, replace) a topic; True when it replaced an existing one.
        TopicExists without force, TooManyTopics when the curriculum holds `max_topics`."""
        curriculum = await self.refresh()
        existing = curriculum.get(key)
        if existing is not None and not force:
            raise TopicExists(f"Topic {key!r} already exists; pass force: true to replace it")
        order = (
            existing.order if existing is not None else max(t.order for t in curriculum.topics) + 1
        )
        topic = make_topic(key, name, problems, background, order)
        doc = orjson.dumps(topic.to_dict()).decode()
        # One script: the bound, the write and the version bump are one atomic step (see
        # topic_add.lua), so replicas adding at once cannot overshoot the bound.
        res = await self._add_script(
            keys=[self.keys.curriculum, self.keys.curriculum_version],
            args=[key, doc, 1 if force else 0, self.max_topics],
        )
        if int(res[0]) != 1:
            if res[1] == "full":
                raise TooManyTopics(
                    f"The curriculum holds {self.max_topics} topics, its limit "
                    "(TOOLOO_MAX_TOPICS); delete a topic added at run time first",
                    details={"limit": self.max_topics},
                )
            raise TopicExists(f"Topic {key!r} already exists")
        await self.refresh()
        return int(res[1]) == 1

    async def delete_topic(self, key: str) -> None:
        """Delete a topic added at run time: BuiltinTopic for one of curriculum.json's,
        TopicNotFound for an unknown key. Learners' progress on it stays in their state (unused
        while the topic is absent, and counted again if it is added back)."""
        if key in builtin_keys():
            raise BuiltinTopic(f"Topic {key!r} is built in and cannot be deleted")
        # One script: the delete and the version bump land together, and an unknown key
        # changes nothing (topic_delete.lua).
        deleted = await self._delete_script(
            keys=[self.keys.curriculum, self.keys.curriculum_version], args=[key]
        )
        if int(deleted) != 1:
            raise TopicNotFound(f"Unknown topic {key[:64]!r}")
        await self.refresh()
