"""The four meta-learning metrics, measured from a learner's training state.

Each metric is a pure function of the learner's persisted `LearnerState` (read-only) and the
current time, in [0, 1], so it moves only when the learner's training does:

- **learningVelocity** — mastery gained per attempt. ``r = Σ(mastery/100) / Σ attempts`` over the
  practised domains (mastery is the stored EWMA of scores, i.e. what practice reached);
  ``lv = r / (r + 0.05)``, a saturating curve: 5 mastery points per attempt reads as 0.5. A
  learner who needs many attempts per point of mastery has a low velocity.
- **adaptationSpeed** — how fast scores move up, weak domains counted double. For every practised
  domain with at least two scores, the least-squares slope of its score window (points per
  attempt); domains whose window starts below the target (80) weigh 2, others 1;
  ``as = clamp(0.5 + weighted_mean_slope / 20)``: flat scores read 0.5, +10 points per attempt
  reads 1, falling scores read below 0.5. No score history yet reads 0.
- **knowledgeRetention** — how much is still remembered and how durable the memory is. Per
  practised domain ``0.5·recall + 0.5·h`` where ``recall = 2^(−(now−last)/half_life)`` and
  ``h = clamp(ln(half_life / 6 h) / ln(90 d / 6 h))`` (0 at the default half-life, 1 at the
  cap); the mean of that weighs 0.8, and the learner's retention multiplier (meta's own lever on
  half-life growth, ``(retention − 1) / (RETENTION_MAX − 1)``) weighs 0.2.
- **transferEfficiency** — how evenly skill is spread and how much of a gain spreads. Effective
  skill ``e = skill·recall`` over the nine built-in domains plus any added ones (never touched
  = 0); ``spread = mean(e) / max(e)`` (1 when every domain is equally strong, 1/N when one
  domain holds all skill); ``te = 0.5·transfer + 0.5·spread``.

No I/O here.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from shared.learner_state import DEFAULT_HALF_LIFE_S, DomainState, LearnerState

METRIC_NAMES = ("learningVelocity", "adaptationSpeed", "knowledgeRetention", "transferEfficiency")
# The curriculum's nine built-in domains (services/training/curriculum.json): untouched ones
# count as zero skill in the spread of skill.
KNOWN_DOMAINS = (
    "dsa",
    "os",
    "networks",
    "compilers",
    "databases",
    "ml",
    "security",
    "theory",
    "distributed",
)
TARGET_MASTERY = 80.0
VELOCITY_HALF_POINT = 0.05  # mastery (0–1) per attempt at which velocity reads 0.5
SLOPE_FULL_SCALE = 20.0  # score points per attempt from 0.5 to 1.0 is SLOPE_FULL_SCALE / 2
MAX_HALF_LIFE_S = 90 * 86400.0  # same cap as the learner model in training
RETENTION_MAX = 3.0  # cap on the retention multiplier meta may set
FADING_RECALL = 0.5


def clamp01(x: float) -> float:
    if math.isnan(x):
        return 0.0
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def recall(d: DomainState, now: float) -> float:
    """Share of the skill still available after the time since last practice."""
    if d.last <= 0.0 or now <= d.last or d.half_life <= 0.0:
        return 1.0
    # typeshed types float ** float as Any (a negative base gives a complex); the base is 2.
    factor: float = 2.0 ** (-(now - d.last) / d.half_life)
    return factor


def practised(state: LearnerState) -> list[tuple[str, DomainState]]:
    return [(k, d) for k, d in state.domains.items() if d.attempts > 0]


def slope(scores: list[int]) -> float:
    """Least-squares slope of scores against attempt index (points per attempt).

    Closed form for x = 0..n-1: Σ(x - x̄)² = n(n² - 1)/12 and Σ(x - x̄)(y - ȳ) = Σxy - x̄Σy, so
    the sums run in C (the phases measure every domain several times per run-all)."""
    n = len(scores)
    if n < 2:
        return 0.0
    den = n * (n * n - 1) / 12.0
    cross: int = sum(map(operator.mul, range(n), scores))  # operator.mul is typed Any -> Any
    num = cross - (n - 1) / 2.0 * sum(scores)
    return num / den


def learning_velocity(state: LearnerState) -> float:
    done = practised(state)
    attempts = sum(d.attempts for _, d in done)
    if attempts == 0:
        return 0.0
    rate = sum(d.mastery for _, d in done) / 100.0 / attempts
    return clamp01(rate / (rate + VELOCITY_HALF_POINT))


def adaptation_speed(state: LearnerState) -> float:
    total = 0.0
    weight = 0.0
    for _, d in practised(state):
        if len(d.scores) < 2:
            continue
        w = 2.0 if d.scores[0] < TARGET_MASTERY else 1.0
        total += w * slope(d.scores)
        weight += w
    if weight == 0.0:
        return 0.0
    return clamp01(0.5 + (total / weight) / SLOPE_FULL_SCALE)


def half_life_strength(half_life: float) -> float:
    return clamp01(
        math.log(max(half_life, 1.0) / DEFAULT_HALF_LIFE_S)
        / math.log(MAX_HALF_LIFE_S / DEFAULT_HALF_LIFE_S)
    )


def retention_lever(state: LearnerState) -> float:
    return clamp01((state.retention - 1.0) / (RETENTION_MAX - 1.0))


def knowledge_retention(state: LearnerState, now: float) -> float:
    done = practised(state)
    memory = (
        sum(0.5 * recall(d, now) + 0.5 * half_life_strength(d.half_life) for _, d in done)
        / len(done)
        if done
        else 0.0
    )
    return clamp01(0.8 * memory + 0.2 * retention_lever(state))


def skill_spread(state: LearnerState, now: float) -> float:
    names = set(KNOWN_DOMAINS) | set(state.domains)
    effective = [
        state.domains[k].skill * recall(state.domains[k], now) if k in state.domains else 0.0
        for k in names
    ]
    top = max(effective, default=0.0)
    if top <= 0.0:
        return 0.0
    return clamp01(sum(effective) / len(effective) / top)


def transfer_efficiency(state: LearnerState, now: float) -> float:
    return clamp01(0.5 * clamp01(state.transfer) + 0.5 * skill_spread(state, now))


def measure(state: LearnerState, now: float) -> dict[str, float]:
    """The four metrics of `state` at `now` (epoch seconds), rounded for display."""
    return {
        "learningVelocity": round(learning_velocity(state), 4),
        "adaptationSpeed": round(adaptation_speed(state), 4),
        "knowledgeRetention": round(knowledge_retention(state, now), 4),
        "transferEfficiency": round(transfer_efficiency(state, now), 4),
    }


def zero_metrics() -> dict[str, float]:
    return dict.fromkeys(METRIC_NAMES, 0.0)


@dataclass(frozen=True, slots=True)
class DomainView:
    """One practised domain as the phases see it."""

    key: str
    mastery: float  # stored EWMA, decayed by recall (what the learner would show now)
    recall: float
    confidence: float
    half_life_s: float
    slope: float


def domain_views(state: LearnerState, now: float) -> list[DomainView]:
    out = []
    for key, d in sorted(practised(state), key=lambda kv: kv[0]):
        r = recall(d, now)
        out.append(
            DomainView(
                key=key,
                mastery=round(d.mastery * r, 2),
                recall=round(r, 4),
                confidence=round(d.confidence, 2),
                half_life_s=round(d.half_life, 1),
                slope=round(slope(d.scores), 3),
            )
        )
    return out
