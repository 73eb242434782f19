"""The compact round history (shared/history.py): entries come back exactly as committed, the
commit script builds the very string the Python reference builds (new records in front, anchor
replaced, cut after the cap: the ring wraps around), and values off the packed grid or at its
limits still round-trip."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from shared import history
from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.history import Anchor
from shared.keys import Keys, round_id_base
from shared.learner_state import LearnerState, encode
from shared.scripts import Scripts

TOPICS = ["dsa", "os", "networks", "compilers", "databases", "ml", "security", "theory"]


def entry(rng: random.Random, n: int, ts: int) -> dict[str, Any]:
    picked = rng.sample(TOPICS, rng.randint(1, 4))
    reviews = [t for t in TOPICS if t not in picked][: rng.randint(0, 2)]
    scores = {t: rng.choice([0, 20, 33, 50, 67, 75, 80, 100]) for t in [*picked, *reviews]}
    return {
        "n": n,
        "ts": ts,
        "trained": picked,
        "scores": scores,
        "avg": round(rng.uniform(0, 100), 2),
        "ms": round(rng.uniform(0, 30), 3),
    }


def committed(entries: list[dict[str, Any]], first_id: int) -> list[dict[str, Any]]:
    """What the history answers for `entries` (oldest first) committed from `first_id` on."""
    return [{"round": first_id + i, **e} for i, e in enumerate(entries)][::-1]


def build(entries: list[dict[str, Any]], ids: list[int], cap: int, per: int = 3) -> str | None:
    """Commit `entries` `per` at a time with the Python reference of the script."""
    blob: str | None = None
    anchor = Anchor()
    for i in range(0, len(entries), per):
        bodies = history.encode_entries(anchor, entries[i : i + per])
        blob = history.prepend(blob, ids[i], bodies, anchor.encode(), cap)
    return blob


def test_entries_round_trip_exactly_and_stay_small() -> None:
    rng = random.Random(1)
    entries = [entry(rng, n, 1_796_000_000_000 + 1500 * n) for n in range(1, 301)]
    ids = [5 * 10**12 + 37 * n for n in range(1, 301)]
    per = 1
    blob = build(entries, ids, cap=100, per=per)
    assert blob is not None and blob.isascii()
    expected = [{"round": r, **e} for r, e in zip(ids, entries, strict=True)][::-1][:100]
    assert history.decode(blob, 100) == expected
    # Same bytes as JSON too: the API's answer is unchanged.
    assert orjson.dumps(history.decode(blob, 100)) == orjson.dumps(expected)
    # The string keeps at most a tenth more records than the cap (cut back in one walk).
    assert 100 <= len(history.decode(blob)) <= 110
    assert len(blob) < 25 * 100  # random averages: a real one moves by a little a round
    assert history.decode(blob, 7) == expected[:7]


def test_the_ring_wraps_around_at_the_cap() -> None:
    rng = random.Random(2)
    entries = [entry(rng, n, 1_000 * n) for n in range(1, 48)]
    ids = list(range(10, 10 + 47))
    for cap in (1, 5, 10, 47, 100):
        for per in (1, 3, 8):
            blob = build(entries, ids, cap, per)
            assert history.decode(blob, cap) == committed(entries, 10)[:cap]
            assert len(history.decode(blob)) <= min(47, cap + cap // 10 + per)


@pytest.mark.parametrize(
    "odd",
    [
        {"trained": ["dsa"]},  # another shape: kept as JSON
        {"n": 3, "ts": 5, "trained": ["x"], "scores": {"x": 1}, "avg": 1.234, "ms": 0.5},
        {"n": 3, "ts": 5, "trained": ["x"], "scores": {"x": 1}, "avg": 1.0, "ms": 0.0001},
        {"n": 3, "ts": 5, "trained": ["x"], "scores": {"x": 1}, "avg": 1, "ms": 0.5},
        {"n": 3, "ts": 5, "trained": ["y"], "scores": {"x": 1}, "avg": 1.5, "ms": 0.5},
        {"n": 3, "ts": 5, "scores": {"x": 1}, "trained": ["x"], "avg": 1.5, "ms": 0.5},
    ],
)
def test_entries_off_the_grid_are_kept_as_json(odd: dict[str, Any]) -> None:
    anchor = Anchor()
    (body,) = history.encode_entries(anchor, [odd])
    assert body == orjson.dumps(odd).decode()
    blob = history.prepend(None, 9, [body], anchor.encode(), 100)
    assert orjson.dumps(history.decode(blob)) == orjson.dumps([{"round": 9, **odd}])


def test_limits_large_values_negative_steps_and_many_topics() -> None:
    many = [f"t{i}" for i in range(40)]
    entries = [
        {"n": 1, "ts": 2**50, "trained": [], "scores": {}, "avg": 0.0, "ms": 0.0},
        # many scores (m >= 15), an escaped score, trained in another order than scores
        {
            "n": 10**9,
            "ts": 3,
            "trained": ["t3", "t1"],
            "scores": {t: (i * 37) % 300 - 50 for i, t in enumerate(many)},
            "avg": -12.5,
            "ms": 123456.789,
        },
        # trained is the first k score keys (reviews after it), n going back
        {
            "n": 4,
            "ts": 2**50 + 1,
            "trained": ["t1", "t2"],
            "scores": {"t1": 126, "t2": 127, "t9": 0},
            "avg": 100.0,
            "ms": 0.001,
        },
    ]
    ids = [1024 * 10**12 + 1, 1024 * 10**12 + 2, 3]  # ids may even go down (another base)
    anchor = Anchor()
    blob = None
    for e, rid in zip(entries, ids, strict=True):
        bodies = history.encode_entries(anchor, [e])
        assert bodies[0][0] != "{"  # all packed
        blob = history.prepend(blob, rid, bodies, anchor.encode(), 100)
    assert (
        history.decode(blob) == [{"round": r, **e} for r, e in zip(ids, entries, strict=True)][::-1]
    )


def test_legacy_list_entries_follow_the_string_up_to_the_limit() -> None:
    rng = random.Random(3)
    new = [entry(rng, n, n) for n in (11, 12)]
    blob = build(new, [111, 112], 100, per=2)
    legacy = [orjson.dumps({"round": 100 - i, "n": 10 - i}).decode() for i in range(10)]
    got = history.read_entries(blob, legacy, 5)
    assert got == [*committed(new, 111), *[orjson.loads(x) for x in legacy[:3]]]


async def test_the_commit_script_builds_what_the_reference_builds(redis, scripts: Scripts) -> None:
    """Rounds committed by the script, one or several per call, past the cap: the stored string
    is the Python reference's, byte for byte, and decodes to the committed entries."""
    keys = Keys("hist-" + str(random.randint(0, 10**9)))
    learner = "h1"
    state = LearnerState(id=learner, seed=3, region="eu", active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner), args=[learner, encode(state), "eu", 1]
    )
    rng = random.Random(4)
    base = round_id_base(keys.shard_of(learner))
    cap = 7
    anchor = Anchor()
    ref: str | None = None
    all_entries: list[dict[str, Any]] = []
    version = 1
    for per in (1, 3, 2, 5, 1, 9, 1):
        batch = [entry(rng, len(all_entries) + i + 1, 1000 * version) for i in range(per)]
        if per == 2:
            batch[0] = {"trained": ["json"]}  # a JSON entry among packed ones
        bodies = history.encode_entries(anchor, batch)
        header = CommitHeader(
            str(version), encode(state), learner, "eu", 10, 9, 0, cap,
            round_base=base, history_anchor=anchor.encode(),
        )  # fmt: skip
        res = await scripts.commit_rounds(
            keys=keys.commit_rounds_keys(learner),
            args=commit_rounds_args(header, [(b, 1.0) for b in bodies]),
        )
        assert res[0] == 1
        ref = history.prepend(ref, int(res[2]), bodies, anchor.encode(), cap)
        all_entries += batch
        version += 1
        stored = await redis.get(keys.learner_history(learner))
        assert stored == ref
    assert history.decode(stored, cap) == committed(all_entries, base + 1)[:cap]
