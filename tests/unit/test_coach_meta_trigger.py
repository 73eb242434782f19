"""How the coach cuts one read of readiness events into meta run-batch calls."""

from __future__ import annotations

from services.coach.lease import Lease
from services.coach.meta_trigger import MetaTrigger, batches_of
from services.coach.store import META_GROUP as GROUP
from services.coach.store import CoachStore


def entries(*learners: str) -> list[tuple[str, dict[str, str]]]:
    return [(f"{i}-0", {"type": "ready", "learner": x}) for i, x in enumerate(learners)]


def ids(batches: list[list[tuple[str, dict[str, str]]]]) -> list[list[str]]:
    return [[entry_id for entry_id, _ in batch] for batch in batches]


def test_batches_keep_read_order_and_size():
    assert ids(batches_of(entries("a", "b", "c", "d", "e"), 2)) == [
        ["0-0", "1-0"],
        ["2-0", "3-0"],
        ["4-0"],
    ]
    assert batches_of([], 10) == []


def test_a_learner_ready_twice_in_one_read_goes_to_a_later_batch():
    # meta's run-batch takes each learner once; the second event is still served, after.
    got = batches_of(entries("a", "b", "a", "c", "a"), 10)
    assert ids(got) == [["0-0", "1-0", "3-0"], ["2-0"], ["4-0"]]
    for batch in got:
        learners = [fields["learner"] for _, fields in batch]
        assert len(learners) == len(set(learners))


async def test_prune_drops_only_idle_consumers_with_nothing_pending(redis, scripts, keys):
    trigger = MetaTrigger(
        CoachStore(redis, keys),
        None,  # type: ignore[arg-type]
        Lease(redis, keys, scripts),
        consumer="me",
        prune_idle_ms=0,
    )
    await trigger.ensure_group()
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "a"})
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "b"})
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "c"})
    # An old coach that served its entry (acked), and a dead one that still owes one.
    (_, [(first, _)]), *_ = await redis.xreadgroup(GROUP, "old", {keys.stream_meta: ">"}, count=1)
    await redis.xack(keys.stream_meta, GROUP, first)
    await redis.xreadgroup(GROUP, "dead", {keys.stream_meta: ">"}, count=1)
    await redis.xreadgroup(GROUP, "me", {keys.stream_meta: ">"}, count=1)

    assert await trigger.prune_consumers() == 1
    names = {c["name"] for c in await redis.xinfo_consumers(keys.stream_meta, GROUP)}
    assert names == {"me", "dead"}  # "dead"'s entry stays pending until it is claimed
    assert (await redis.xpending(keys.stream_meta, GROUP))["pending"] == 2
