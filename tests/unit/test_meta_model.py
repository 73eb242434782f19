"""The meta metrics, effects and phases as pure functions of a learner state."""

from __future__ import annotations

import math

from services.meta import phases, views
from services.meta.effects import apply_boost
from services.meta.metrics import MAX_HALF_LIFE_S, measure, slope
from shared.learner_state import DomainState, LearnerState

NOW = 1_000_000.0


def strong() -> LearnerState:
    doms = {
        k: DomainState(
            skill=0.9,
            half_life=5 * 86400.0,
            last=NOW - 600,
            attempts=8,
            mastery=88.0,
            confidence=85.0,
            scores=[70, 75, 80, 85, 90, 92, 95, 96],
        )
        for k in ("dsa", "os", "networks", "ml", "theory", "databases")
    }
    return LearnerState(id="strong", seed=1, domains=doms, retention=1.2, transfer=0.2)


def weak() -> LearnerState:
    doms = {
        "dsa": DomainState(
            skill=0.2,
            half_life=6 * 3600.0,
            last=NOW - 20 * 3600,
            attempts=12,
            mastery=35.0,
            confidence=40.0,
            scores=[40, 30, 45, 35, 30],
        )
    }
    return LearnerState(id="weak", seed=2, domains=doms)


def test_metrics_are_in_range_and_differ_between_learners():
    a, b = measure(strong(), NOW), measure(weak(), NOW)
    for m in (a, b):
        assert all(0.0 <= v <= 1.0 for v in m.values())
    assert all(a[k] > b[k] for k in a), (a, b)


def test_an_untrained_learner_measures_zero():
    assert set(measure(LearnerState(id="x", seed=1), NOW).values()) == {0.0}


def test_slope_is_least_squares():
    assert math.isclose(slope([10, 20, 30]), 10.0)
    assert slope([50]) == 0.0


def test_boost_raises_retention_transfer_and_half_lives_within_caps():
    s = strong()
    s.domains["os"].half_life = MAX_HALF_LIFE_S
    before = {k: d.half_life for k, d in s.domains.items()}
    kr0 = measure(s, NOW)["knowledgeRetention"]
    effect = apply_boost(s, 0.1, 0.5)
    assert s.retention == 1.3 and s.transfer == 0.7
    assert effect.half_lives_lengthened == 5
    assert s.domains["dsa"].half_life == before["dsa"] * 1.1
    assert s.domains["os"].half_life == MAX_HALF_LIFE_S
    assert measure(s, NOW)["knowledgeRetention"] > kr0
    apply_boost(s, 0.0, 0.5)
    assert s.transfer == 1.0


def test_run_remaining_runs_four_phases_in_order_once():
    doc = phases.new_document()
    state = weak()
    out = phases.run_remaining(doc, state, NOW)
    assert out.ran == [1, 2, 3, 4]
    assert out.state is state and state.retention > 1.0 and state.transfer > 0.0
    assert doc["started"] is False  # the input document is not mutated
    messages = [e["message"] for e in out.log]
    done = [m for m in messages if m.startswith("Phase") and "completed" in m]
    assert done == [f"Phase {n} completed: {phases.PHASES[str(n)][0]}" for n in (1, 2, 3, 4)]
    d = out.doc
    assert all(p["status"] == "completed" for p in d["phases"].values())
    assert d["phases"]["1"]["findings"][1]["domains"][0]["domain"] == "dsa"
    assert d["phases"]["3"]["strategies"][0]["id"] == "adaptive_context"
    assert [i["phase"] for i in d["metrics"]["improvements"]] == [4]
    again = phases.run_remaining(d, state, NOW)
    assert again.ran == [] and again.state is None and again.log == []


def test_phase2_plan_is_larger_for_weaker_retention():
    p_weak = phases.run_remaining(phases.new_document(), weak(), NOW).doc
    p_strong = phases.run_remaining(phases.new_document(), strong(), NOW).doc
    plan = lambda d: d["phases"]["2"]["changes"][0]["plan"]  # noqa: E731
    assert plan(p_weak)["retentionDelta"] > plan(p_strong)["retentionDelta"]


def test_insights_follow_the_original_rules():
    doc = phases.new_document()
    doc["metrics"]["current"] = {
        "learningVelocity": 0.6,
        "adaptationSpeed": 0.8,
        "knowledgeRetention": 0.4,
        "transferEfficiency": 0.2,
    }
    ins = views.insights_view(doc, strong(), NOW)
    assert ins["strengths"] == ["Solid learning velocity"]
    assert ins["opportunities"] == ["Enhance transfer efficiency via cross-domain learning"]
    assert ins["readiness"] == 0.5
    assert ins["domains"]["practised"] == 6
