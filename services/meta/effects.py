"""What meta-learning does to the learner model (the learner state training trains).

Two levers, both read by training's learner model on every practice:

- `LearnerState.retention` — a multiplier (>= 1) on how much a practice lengthens a domain's
  memory half-life. A retention boost raises it by `retention_delta` (capped at RETENTION_MAX)
  and also lengthens the *current* half-life of every practised domain by the factor
  ``1 + retention_delta`` (capped at the model's 90-day maximum), so the boost helps what was
  already learnt, not only future practice.
- `LearnerState.transfer` — the share, in [0, 1], of a skill gain that training spreads to related
  domains. A transfer boost raises it by `transfer_delta`.

Pure functions on a decoded state; the caller writes the result back with a version check.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.meta.metrics import MAX_HALF_LIFE_S, RETENTION_MAX
from shared.learner_state import LearnerState


@dataclass(frozen=True, slots=True)
class EffectSummary:
    retention_before: float
    retention_after: float
    transfer_before: float
    transfer_after: float
    half_lives_lengthened: int

    @property
    def changed(self) -> bool:
        return (
            self.retention_after != self.retention_before
            or self.transfer_after != self.transfer_before
            or self.half_lives_lengthened > 0
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "retention": {"before": self.retention_before, "after": self.retention_after},
            "transfer": {"before": self.transfer_before, "after": self.transfer_after},
            "halfLivesLengthened": self.half_lives_lengthened,
        }


def apply_boost(
    state: LearnerState, retention_delta: float, transfer_delta: float
) -> EffectSummary:
    """Raise retention (and lengthen practised half-lives) and transfer, in place."""
    if retention_delta < 0.0 or transfer_delta < 0.0:
        # Meta only ever strengthens the model; negative deltas are refused at the API.
        raise ValueError("deltas must be >= 0")
    ret_before = state.retention
    xf_before = state.transfer
    state.retention = round(min(RETENTION_MAX, max(1.0, ret_before + retention_delta)), 4)
    state.transfer = round(min(1.0, max(0.0, xf_before + transfer_delta)), 4)
    lengthened = 0
    if retention_delta > 0.0:
        factor = 1.0 + retention_delta
        for d in state.domains.values():
            if d.attempts <= 0 or d.half_life >= MAX_HALF_LIFE_S:
                continue
            d.half_life = min(MAX_HALF_LIFE_S, d.half_life * factor)
            lengthened += 1
    return EffectSummary(ret_before, state.retention, xf_before, state.transfer, lengthened)
