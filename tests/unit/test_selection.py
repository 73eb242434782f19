"""The selection engine: its policy case by case, and the defects it designs out (a threshold
that is a setting, not a fixed 80; a topic without problems holding a gap slot)."""

from __future__ import annotations

import pytest

from services.training import selection
from services.training.curriculum import Curriculum, builtin_topics, make_topic
from shared.learner_state import DomainState, LearnerState

NOW = 1_700_000_000.0
CUR = Curriculum.of(builtin_topics())


def practised(state: LearnerState, key: str, mastery: float, attempts: int = 3, conf=60.0):
    state.domains[key] = DomainState(
        skill=mastery / 100,
        half_life=1e9,
        last=NOW,
        attempts=attempts,
        mastery=mastery,
        confidence=conf,
        next_review=NOW + 3600,
    )


def test_gaps_first_two_lowest_by_mastery_then_confidence_then_order():
    state = LearnerState(id="a", seed=1)
    for key in CUR.keys:
        practised(state, key, 90)
    practised(state, "ml", 40, conf=70)
    practised(state, "os", 40, conf=50)
    practised(state, "theory", 60)
    assert selection.select(state, CUR, NOW) == ["os", "ml"]
    assert state.selection.locked_batch == ["os", "ml"]


def test_fresh_learner_gets_gaps_in_topic_order():
    state = LearnerState(id="a", seed=1)
    assert selection.select(state, CUR, NOW) == ["dsa", "os"]


def test_sticky_batch_keeps_members_until_threshold_and_min_attempts():
    state = LearnerState(id="a", seed=1)
    for key in CUR.keys:
        practised(state, key, 90)
    practised(state, "dsa", 50)
    practised(state, "os", 60)
    assert selection.select(state, CUR, NOW) == ["dsa", "os"]
    # dsa crosses the threshold right after joining: kept until it had 2 attempts in the batch.
    practised(state, "dsa", 85, attempts=4)
    practised(state, "networks", 10)
    assert selection.select(state, CUR, NOW) == ["dsa", "os"]
    practised(state, "dsa", 85, attempts=5)
    assert selection.select(state, CUR, NOW) == ["os", "networks"]


def test_non_sticky_batch_refills_from_the_lowest_after_a_member_leaves():
    # Without stickiness, members still below the threshold stay in the batch too; only a member's
    # free slot is refilled, from the lowest-mastery topics.
    state = LearnerState(id="a", seed=1, settings={"selection": {"stickyBatch": False}})
    for key in CUR.keys:
        practised(state, key, 90)
    practised(state, "dsa", 50)
    practised(state, "os", 60)
    assert selection.select(state, CUR, NOW) == ["dsa", "os"]
    practised(state, "networks", 10)
    practised(state, "os", 85, attempts=6)
    assert selection.select(state, CUR, NOW) == ["dsa", "networks"]


def test_round_robin_over_untouched_topics_when_gaps_are_off():
    state = LearnerState(id="a", seed=1, settings={"selection": {"autoFillGaps": False}})
    practised(state, "dsa", 95)
    first = selection.select(state, CUR, NOW)
    second = selection.select(state, CUR, NOW)
    assert first == ["os", "networks", "compilers"]
    assert second == ["databases", "ml", "security"]
    third = selection.select(state, CUR, NOW)
    assert third == ["theory", "distributed", "os"]  # wraps around the untouched list


def test_fallback_when_everything_is_above_threshold():
    state = LearnerState(id="a", seed=1)
    for i, key in enumerate(CUR.keys):
        practised(state, key, 99 - i)
    assert selection.select(state, CUR, NOW) == ["distributed", "theory", "security"]


def test_threshold_comes_from_settings_not_80():
    state = LearnerState(id="a", seed=1, settings={"selection": {"targetThreshold": 60}})
    for key in CUR.keys:
        practised(state, key, 70)
    practised(state, "ml", 55)
    assert selection.select(state, CUR, NOW) == ["ml"]


def test_reviews_due_for_practised_topics_not_trained():
    state = LearnerState(id="a", seed=1)
    practised(state, "dsa", 50)
    practised(state, "os", 50)
    state.domains["os"].next_review = NOW - 1
    assert selection.due_reviews(state, CUR, ["dsa"], NOW) == ["os"]
    state.settings = {"spacedRepetition": False}
    assert selection.due_reviews(state, CUR, ["dsa"], NOW) == []


def test_background_topic_every_third_round():
    bg = make_topic("systems", "Systems", [{"problem": "p", "keywords": ["k"]}], True, 99)
    cur = Curriculum.of([*builtin_topics(), bg])
    state = LearnerState(id="a", seed=1)
    picks = []
    for n in range(6):
        state.rounds = n
        picks.append(selection.background_pick(state, cur))
    assert picks == [None, None, "systems", None, None, "systems"]
    # Background topics never take a gap slot.
    assert "systems" not in selection.select(state, cur, NOW)


def test_topic_without_problems_cannot_exist_so_cannot_block_selection():
    with pytest.raises(ValueError):
        make_topic("foo", "Foo", [], False, 99)
    with pytest.raises(ValueError):
        make_topic("foo", "Foo", [{"problem": "p", "keywords": []}], False, 99)


def test_peek_does_not_move_the_cursor():
    state = LearnerState(id="a", seed=1, settings={"selection": {"autoFillGaps": False}})
    assert selection.peek(state, CUR, NOW) == ["dsa", "os", "networks"]
    assert state.selection.untouched_cursor == 0


def test_settings_overrides_store_only_differences():
    merged = selection.merge_settings({}, {"selection": {"gapsCount": 2, "stickyBatch": False}})
    assert merged == {"selection": {"stickyBatch": False}}
    assert selection.merge_settings(merged, {"selection": {"stickyBatch": True}}) == {}
