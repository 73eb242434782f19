"""Fold history lists (one JSON string per round, as fleets wrote them before the compact history
string of shared/history.py) into the string: part of `tooloo-migrate`, which the orchestrator
runs before it starts the services.

Until then nothing breaks: training answers a learner's history from its string followed by its
list (shared/history.py `read_entries`), and the list is only read. Folding makes the memory
saving real for learners that no longer train. Per learner, one atomic script
(shared/compact_history.lua) writes the string with every entry (the list's after the string's,
packed where they can be), the state with the string's new anchor (version + 1, so every cached
copy is refreshed) and deletes the list, only if the state and string are still as read; a learner
that got a round meanwhile is read and folded again (bounded). Works on a Redis Cluster (every
key of a learner is in its slot). When every shard has been scanned, `fleet:layout` records
`history: compact`, and later runs skip the scan.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared import history
from shared.history import Anchor
from shared.keys import Keys
from shared.learner_state import decode, encode
from shared.logging import get_logger
from shared.redis_types import FleetRedis, text
from shared.scripts import lua_source

log = get_logger(__name__)

PAGE = 500
ATTEMPTS = 5
DONE_FIELD = "history"
DONE_VALUE = "compact"


def folded(blob: str | None, legacy: list[str], state_json: str) -> tuple[str, str]:
    """(new history string, new encoded state): every entry of the string, then the list's (all
    older), encoded again from a fresh anchor, which the state then carries."""
    entries = history.decode(blob) + [orjson.loads(x) for x in legacy]
    state = decode(state_json)
    anchor = Anchor(topics=list(state.hist_topics))
    out: str | None = None
    for entry in reversed(entries):  # oldest first, as rounds are committed
        rest: dict[str, Any] = dict(entry)
        rid = int(rest.pop("round"))
        bodies = history.encode_entries(anchor, [rest])
        out = history.prepend(out, rid, bodies, anchor.encode(), len(entries))
    state.hist_topics, state.hist_ts, state.hist_avg = anchor.topics, anchor.ts, anchor.avg
    return out or "", encode(state)


async def compact_histories(redis: FleetRedis, keys: Keys) -> int:
    """Fold every learner's history list; returns how many were folded."""
    if await redis.hget(keys.fleet_layout, DONE_FIELD) == DONE_VALUE:
        return 0
    script = redis.register_script(lua_source("shared", "compact_history"))
    count = 0
    for shard in keys.all_shards():
        start = 0
        while True:  # bounded by the shard's index size
            page = await redis.zrange(keys.learners_index(shard), start, start + PAGE - 1)
            learners = [text(x) for x in page]
            if not learners:
                break
            start += len(learners)
            async with redis.pipeline(transaction=False) as pipe:
                for learner in learners:
                    pipe.exists(keys.learner_history_list(learner))
                found = await pipe.execute()
            for learner, n in zip(learners, found, strict=True):
                if int(n):
                    count += await _fold(redis, script, keys, learner)
    await redis.hset(keys.fleet_layout, DONE_FIELD, DONE_VALUE)
    if count:
        log.info("history_lists_folded", learners=count)
    return count


async def _fold(redis: FleetRedis, script: Any, keys: Keys, learner: str) -> int:
    state_key = keys.learner_state(learner)
    string_key = keys.learner_history(learner)
    list_key = keys.learner_history_list(learner)
    for _ in range(ATTEMPTS):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hmget(state_key, ["v", "s"])
            pipe.get(string_key)
            pipe.lrange(list_key, 0, -1)
            (v, s), blob, legacy = await pipe.execute()
        if v is None or s is None or not legacy:
            if v is None:  # a list of a learner deleted since: nobody's
                await redis.delete(list_key)
            return 0
        new_blob, new_state = folded(blob, legacy, s)
        res = int(
            await script(
                keys=[state_key, string_key, list_key],
                args=[v, blob or "", new_blob, new_state],
            )
        )
        if res == 1:
            return 1
        if res == -1:
            return 0
    log.warning("history_list_not_folded", learner=learner, reason="kept changing")
    return 0
