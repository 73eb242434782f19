"""The scale hash moved into the `{system}` slot: an old fleet's target and switches survive."""

from __future__ import annotations

from services.web.system import read_scale, rename_untagged


async def test_an_old_scale_hash_is_renamed_once_and_never_over_a_new_one(redis, keys):
    await redis.hset(keys.scale_untagged, mapping={"target": "40", "hold": "1", "paused": "0"})
    await rename_untagged(redis, keys)
    assert not await redis.exists(keys.scale_untagged)
    scale = await read_scale(redis, keys)
    assert scale["target"] == 40 and scale["hold"] is True
    # A stale old key (written by an old web replica meanwhile) never replaces the new one.
    await redis.hset(keys.scale_untagged, "target", "5")
    await rename_untagged(redis, keys)
    assert (await read_scale(redis, keys))["target"] == 40
