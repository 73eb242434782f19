"""The pure parts behind the original fleet's endpoints: the compatibility fields' warnings,
calibration of a learner's displayed mastery, and the comprehensive report's decisions."""

from __future__ import annotations

import pytest

from services.coach.models import BoostRequest, SettingsUpdate
from services.reports import comprehensive
from services.training import calibration, learner_model
from services.training.curriculum import Curriculum, builtin_topics
from services.training.models import NewTopicRequest, SettingsRequest
from services.training.round import new_learner_state
from shared.compat import warnings_of
from shared.learner_state import DomainState, LearnerState
from shared.validation import ValidationFailed, validate

NOW = 1_800_000_000.0


def test_warnings_name_each_ignored_field_set_with_its_reason() -> None:
    body = validate(BoostRequest, {"target": "training", "intensity": "high", "rounds": 2})
    warnings = warnings_of(body)
    assert [w.split(":")[0] for w in warnings] == ["target", "intensity"]
    assert all("accepted for compatibility, ignored: " in w for w in warnings)
    assert warnings_of(validate(BoostRequest, {"rounds": 2})) == []
    update = validate(SettingsUpdate, {"boostInterval": -100, "minAvgMastery": 70})
    assert update.changes() == {"minAvgMastery": 70}
    assert [w.split(":")[0] for w in warnings_of(update)] == ["boostInterval"]


def test_fields_outside_the_list_are_still_refused() -> None:
    with pytest.raises(ValidationFailed):
        validate(BoostRequest, {"target": "training", "power": 9})
    with pytest.raises(ValidationFailed):
        validate(NewTopicRequest, {"description": "no key"})
    with pytest.raises(ValidationFailed):
        validate(SettingsRequest, {"gapsCount": 3, "selection": {"gapsCount": 2}})


def test_top_level_selection_fields_fold_into_selection() -> None:
    body = validate(SettingsRequest, {"targetThreshold": 85, "gapsCount": 3})
    assert body.model_dump(exclude_none=True) == {
        "selection": {"targetThreshold": 85, "gapsCount": 3}
    }
    assert body.folded() == [
        "targetThreshold: applied as selection.targetThreshold",
        "gapsCount: applied as selection.gapsCount",
    ]


def _state_with(masteries: dict[str, tuple[float, int]]) -> tuple[LearnerState, Curriculum]:
    cur = Curriculum.of(builtin_topics())
    state = new_learner_state("x", "local", True, NOW)
    for key, (mastery, attempts) in masteries.items():
        state.domains[key] = DomainState(
            skill=0.5, last=NOW, attempts=attempts, mastery=mastery, scores=[int(mastery)]
        )
    return state, cur


def test_calibration_lifts_only_what_qualifies() -> None:
    state, cur = _state_with(
        {"dsa": (78.0, 3), "os": (60.0, 3), "ml": (79.0, 1), "theory": (90.0, 4)}
    )
    rule = calibration.Rule(threshold=80, min_attempts=2, delta=3, force=False)
    adjusted = calibration.adjust(state, cur, NOW, rule)
    # os is 20 below (beyond delta), ml has too few attempts, theory is above already.
    assert adjusted == [{"topic": "dsa", "from": 78, "to": 80}]
    dsa = state.domains["dsa"]
    assert round(learner_model.displayed_mastery(dsa, NOW)) == 80
    assert dsa.skill == 0.5  # the latent skill is not calibrated
    assert 60.0 <= dsa.confidence <= 95.0 and dsa.scores == [80, 80, 80]

    forced = calibration.Rule(threshold=80, min_attempts=0, delta=100, force=True)
    adjusted = calibration.adjust(state, cur, NOW, forced)
    topics = {a["topic"] for a in adjusted}
    assert {"os", "ml"} <= topics and "theory" not in topics and "dsa" not in topics
    # An untouched topic gets one attempt at the threshold.
    assert state.domains["networks"].attempts == 1


def test_calibration_of_a_faded_domain_shows_the_threshold_now() -> None:
    state, cur = _state_with({})
    state.domains["dsa"] = DomainState(skill=0.5, last=NOW - 7 * 86400, attempts=5, mastery=70.0)
    rule = calibration.Rule(threshold=80, min_attempts=0, delta=100, force=True)
    skill_before = learner_model.effective_skill(state.domains["dsa"], NOW)
    calibration.adjust(state, cur, NOW, rule)
    d = state.domains["dsa"]
    assert round(learner_model.displayed_mastery(d, NOW)) == 80
    # Rebased to now, the effective skill is what it was, and decays as it would have.
    assert learner_model.effective_skill(d, NOW) == pytest.approx(skill_before)
    assert d.skill == pytest.approx(skill_before) and d.last == NOW
    later = NOW + 3600
    assert learner_model.effective_skill(d, later) < skill_before


def test_comprehensive_report_decides_from_figures() -> None:
    assert comprehensive.health(None, None, 0) == "unknown"
    assert comprehensive.health(0.1, 100.0, 50) == "excellent"
    assert comprehensive.health(0.8, 99.5, 50) == "good"
    assert comprehensive.health(3.0, 100.0, 50) == "degraded"
    metrics = {
        "learners": 10,
        "coach": {"needing_coaching": 4, "throughput_rounds_per_min": 120, "coverage": 0.5},
        "error_rate_pct": 0.0,
        "uptime_pct": 100.0,
        "requests": 10,
    }
    totals = {"rounds": "500", "meta:completed": "6", "meta:failed": "1"}
    doc = comprehensive.build(
        metrics, totals, window_s=60, generated="t", fast_lane=True, details=False
    )
    assert doc["summary"]["milestones"] == {
        "trainingMastery": "in_progress",
        "metaLearning": "in_progress",
        "segmentationEngine": None,
        "advancedReporting": "achieved",
    }
    assert doc["data"]["training"]["readyLearners"] == 6
    assert doc["data"]["segmentation"] is None and "services" not in doc["data"]
    assert len(doc["recommendations"]) == 3
    assert "4 learners below readiness" in doc["recommendations"][0]
    empty = comprehensive.build({}, {}, window_s=60, generated="t", fast_lane=None, details=True)
    assert empty["summary"]["overallHealth"] == "unknown"
    assert empty["summary"]["milestones"]["trainingMastery"] == "not_started"
    assert len(empty["recommendations"]) == 3 and "services" in empty["data"]
