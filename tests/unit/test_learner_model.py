"""The learner model: replay, learning, forgetting, retention, grading."""

from __future__ import annotations

import random

from services.training import learner_model
from services.training.curriculum import Curriculum, builtin_topics
from services.training.grader import grade
from services.training.round import compute_round
from shared.learner_state import DomainState, LearnerState, encode

NOW = 1_700_000_000.0
CUR = Curriculum.of(builtin_topics())


def run(seed: int, n: int, step_s: float = 60.0) -> LearnerState:
    state = LearnerState(id="x", seed=seed, active=True)
    for i in range(n):
        compute_round(state, CUR, NOW + i * step_s)
    return state


def test_same_seed_replays_the_same_rounds():
    a = LearnerState(id="x", seed=11, active=True)
    b = LearnerState(id="x", seed=11, active=True)
    for i in range(40):
        oa = compute_round(a, CUR, NOW + i * 30, detail=True)
        ob = compute_round(b, CUR, NOW + i * 30, detail=True)
        assert oa == ob
    assert encode(a) == encode(b)
    assert encode(run(12, 40, 30)) != encode(a)  # another seed draws differently


def test_mastery_rises_with_practice():
    state = run(5, 150)
    avg_early, _, _ = learner_model.readiness_inputs(run(5, 5), CUR.topics, 80, NOW + 5 * 60)
    avg_late, below, _ = learner_model.readiness_inputs(state, CUR.topics, 80, NOW + 150 * 60)
    assert avg_early < 30 < 75 < avg_late
    assert below <= 3
    assert all(d.skill > 0.5 for d in state.domains.values())


def test_effective_skill_and_mastery_fall_without_practice():
    d = DomainState(skill=0.8, half_life=3600.0, last=NOW, attempts=5, mastery=90.0)
    assert learner_model.effective_skill(d, NOW) == 0.8
    assert abs(learner_model.effective_skill(d, NOW + 3600) - 0.4) < 1e-9
    assert learner_model.effective_skill(d, NOW + 7200) < learner_model.effective_skill(
        d, NOW + 3600
    )
    assert learner_model.displayed_mastery(d, NOW + 3600) == 45.0


def test_retention_boost_slows_the_fall():
    plain = LearnerState(id="p", seed=1)
    boosted = LearnerState(id="b", seed=1, retention=2.0)
    for state in (plain, boosted):
        for i in range(5):
            learner_model.practise(state, "dsa", 80, NOW + i * 7200)
    later = NOW + 4 * 7200 + 5 * 86400
    assert boosted.domains["dsa"].half_life > plain.domains["dsa"].half_life
    assert learner_model.effective_skill(
        boosted.domains["dsa"], later
    ) > learner_model.effective_skill(plain.domains["dsa"], later)


def test_spaced_practice_lengthens_half_life_more_than_massed():
    massed = LearnerState(id="m", seed=1)
    spaced = LearnerState(id="s", seed=1)
    for i in range(4):
        learner_model.practise(massed, "os", 80, NOW + i)
        learner_model.practise(spaced, "os", 80, NOW + i * 6 * 3600)
    assert spaced.domains["os"].half_life > massed.domains["os"].half_life


def test_transfer_spreads_gain_to_related_domains():
    state = LearnerState(id="t", seed=1, transfer=0.5)
    learner_model.practise(state, "dsa", 50, NOW, learner_model.related("dsa", CUR.by_key))
    assert state.domains["theory"].skill > 0
    assert state.domains["theory"].attempts == 0  # transfer is not practice
    assert "os" not in state.domains


def test_grader_scores_coverage_0_to_100():
    keywords = ("dns", "root", "tld", "authoritative")
    assert grade("", keywords)[0] == 0
    assert grade("dns", keywords)[0] == 25
    assert grade("DNS root", keywords)[0] == 50
    assert grade("top-level domain and the resolver", keywords) == (50, ["dns", "tld"])
    assert grade("dns root tld authoritative", keywords)[0] == 100
    long = "dns " + "x" * 120
    assert grade(long, keywords)[0] == 40  # 25 + 15 bonus for a long answer
    assert grade("dns root tld authoritative " + "x" * 120, keywords)[0] == 100  # clamped
    assert grade("a b c", ("a", "b", "c"))[0] == 100
    assert grade("a", ("a", "b", "c"))[0] == 33


def test_difficulty_follows_mastery_and_hard_recalls_less():
    assert learner_model.pick_difficulty(10) == "easy"
    assert learner_model.pick_difficulty(50) == "medium"
    assert learner_model.pick_difficulty(80) == "hard"
    assert learner_model.recall_probability(0.7, "easy") > learner_model.recall_probability(
        0.7, "hard"
    )
    assert learner_model.recall_probability(0.9, "hard") > learner_model.recall_probability(
        0.3, "hard"
    )
    rng = random.Random(3)
    topic = CUR.by_key["networks"]
    problem, score, _ = learner_model.solve(rng, topic, DomainState(), NOW)
    assert problem.id == "net_001" and 0 <= score <= 100
