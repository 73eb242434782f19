"""How the coach cuts one read of readiness events into meta run-batch calls."""

from __future__ import annotations

from services.coach.meta_trigger import batches_of


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
