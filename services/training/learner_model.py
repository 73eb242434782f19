"""The learner model: latent skill that decays with time, recall-driven answers,
the keyword grader, and what practice does to skill, half-life and mastery.

Every function takes `now` (epoch seconds) and, where it draws, a `random.Random`, so a run replays
exactly. No I/O here.
"""

from __future__ import annotations

import random

from services.training.curriculum import RELATED, Problem, Topic
from services.training.grader import grade
from shared.learner_state import DEFAULT_HALF_LIFE_S, SCORE_WINDOW, DomainState, LearnerState

# Difficulty from current (displayed) mastery.
EASY_BELOW = 40.0
MEDIUM_BELOW = 75.0
# Recall probability = FLOOR + SPAN * effective_skill ** EXPONENT[difficulty]: harder problems need
# more skill for the same recall, and a perfect skill recalls almost everything at every tier.
RECALL_FLOOR = 0.05
RECALL_SPAN = 0.93
RECALL_EXPONENT = {"easy": 0.6, "medium": 1.0, "hard": 1.6}
# Skill gain per practice: LEARN_RATE * (1 - skill) * (0.5 + 2x(1-x)), x = score/100; largest for
# low-to-mid scores (the learner met most of the material but not all) and diminishing near 1.
LEARN_RATE = 0.15
# Half-life growth per practice, scaled by spacing (practice soon after the last one consolidates
# little) and by meta's retention multiplier.
HALF_LIFE_GROWTH = 1.6
MIN_SPACING = 0.1
MAX_HALF_LIFE_S = 90 * 86400.0
MASTERY_ALPHA = 0.3  # EWMA weight of the newest score
REVIEW_INTERVALS_S = (1800.0, 7200.0, 28800.0)  # 30 min / 2 h / 8 h


def recall_factor(d: DomainState, now: float) -> float:
    """Share of the skill still available after the time since last practice."""
    if d.last <= 0.0 or now <= d.last:
        return 1.0
    # typeshed types float ** float as Any (a negative base gives a complex); the base is 2, and
    # an annotated local states it at no cost on the hot path (cast() is a call).
    factor: float = 2.0 ** (-(now - d.last) / d.half_life)
    return factor


def effective_skill(d: DomainState, now: float) -> float:
    return d.skill * recall_factor(d, now)


def displayed_mastery(d: DomainState, now: float) -> float:
    """The EWMA of scores, decayed like recall: it falls again without practice, so the coach
    coaches the learner again."""
    if d.attempts == 0:
        return 0.0
    return d.mastery * recall_factor(d, now)


def pick_difficulty(mastery: float) -> str:
    if mastery < EASY_BELOW:
        return "easy"
    if mastery < MEDIUM_BELOW:
        return "medium"
    return "hard"


def recall_probability(skill: float, difficulty: str) -> float:
    # skill is in [0, 1], so the power is a float (typeshed says Any: a negative base gives a
    # complex).
    powered: float = skill ** RECALL_EXPONENT[difficulty]
    return RECALL_FLOOR + RECALL_SPAN * powered


def solve(
    rng: random.Random, topic: Topic, d: DomainState, now: float
) -> tuple[Problem, int, list[str]]:
    """Simulate one answer: each keyword recalled independently; the answer is the recalled keywords
    joined, graded by the keyword grader. Returns (problem, score, matched keywords)."""
    problem = topic.by_difficulty[pick_difficulty(displayed_mastery(d, now))]
    p = recall_probability(effective_skill(d, now), problem.difficulty)
    recalled = [k for k in problem.keywords if rng.random() < p]
    score, matched = grade(" ".join(recalled), problem.keywords)
    return problem, score, matched


def confidence(d: DomainState) -> float:
    """0.7·mastery + 0.3·consistency of the last 3 scores, in [30, 95]."""
    last3 = d.scores[-3:]
    consistency = 100.0 - (max(last3) - min(last3)) if len(d.scores) >= 2 else 50.0
    return max(30.0, min(95.0, 0.7 * d.mastery + 0.3 * consistency))


def trend(d: DomainState) -> str:
    if len(d.scores) < 2:
        return "initial"
    return "improving" if d.scores[-1] > d.scores[-2] else "stable"


def skill_gain(skill: float, score: int) -> float:
    x = score / 100.0
    return LEARN_RATE * (1.0 - skill) * (0.5 + 2.0 * x * (1.0 - x))


def practise(
    state: LearnerState,
    key: str,
    score: int,
    now: float,
    related_keys: tuple[str, ...] = (),
    review_interval: bool = False,
) -> DomainState:
    """Apply one graded attempt to domain `key` (created on first practice) and spread
    `state.transfer` of the skill gain to `related_keys`. `review_interval` picks the
    review spacing (attempts after the review) instead of the training one (attempts − 1)."""
    d = state.domains.get(key)
    if d is None:
        d = state.domains[key] = DomainState()
    eff = effective_skill(d, now)
    gain = skill_gain(eff, score)
    if d.last > 0.0:
        spacing = max(MIN_SPACING, min(1.0, (now - d.last) / d.half_life))
    else:
        spacing = 1.0
    x = score / 100.0
    growth = 1.0 + (HALF_LIFE_GROWTH * (0.5 + 0.5 * x) - 1.0) * spacing * state.retention
    d.half_life = min(MAX_HALF_LIFE_S, max(60.0, d.half_life * max(1.0, growth)))
    d.skill = min(1.0, eff + gain)
    d.last = now
    d.mastery = float(score) if d.attempts == 0 else d.mastery + MASTERY_ALPHA * (score - d.mastery)
    d.attempts += 1
    if score >= 70:
        d.completed += 1
    d.scores.append(score)
    if len(d.scores) > SCORE_WINDOW:
        del d.scores[0]
    d.confidence = confidence(d)
    idx = min(d.attempts if review_interval else d.attempts - 1, 2)
    d.next_review = now + REVIEW_INTERVALS_S[idx]
    if state.transfer > 0.0 and gain > 0.0:
        for other in related_keys:
            _transfer(state, other, state.transfer * gain, now)
    return d


def _transfer(state: LearnerState, key: str, amount: float, now: float) -> None:
    d = state.domains.get(key)
    if d is None:
        d = state.domains[key] = DomainState(half_life=DEFAULT_HALF_LIFE_S)
    factor = recall_factor(d, now)
    # Add `amount` to the effective skill now, keeping the last-practice time (transfer is not
    # practice): the stored skill is the value at `last`, so scale back by the decay factor.
    d.skill = min(1.0, (effective_skill(d, now) + amount) / max(factor, 1e-6))


def related(key: str, present: dict[str, Topic]) -> tuple[str, ...]:
    return tuple(k for k in RELATED.get(key, ()) if k in present)


def readiness_inputs(
    state: LearnerState, topics: tuple[Topic, ...], threshold: float, now: float
) -> tuple[float, int, int]:
    """(average displayed mastery over the topics that count, untouched = 0; number of
    non-background topics that count below `threshold`; earliest next review in epoch ms, 0 when
    none). The built-in topics always count; background topics (practised every few rounds, not
    targets) never do; a target topic added at run time counts for a learner only once that
    learner has practised it. So adding content never un-readies a trained population by itself:
    a learner meets a new target topic through selection (its gaps), and from that round on the
    topic weighs in like a built-in one, visible in the learner's own history."""
    total = 0.0
    counted = 0
    below = 0
    next_review = 0.0
    for topic in topics:
        d = state.domains.get(topic.key)
        if topic.background or (not topic.builtin and (d is None or d.attempts == 0)):
            continue
        counted += 1
        m = displayed_mastery(d, now) if d is not None else 0.0
        total += m
        if m < threshold:
            below += 1
        if (
            d is not None
            and d.attempts
            and d.next_review
            and (next_review == 0.0 or d.next_review < next_review)
        ):
            next_review = d.next_review
    avg = total / counted if counted else 0.0
    return round(avg, 2), below, int(next_review * 1000)
