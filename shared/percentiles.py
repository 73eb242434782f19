"""The one percentile definition the fleet reports: nearest rank, the smallest value with at
least q % of the values at or below it (no interpolation, so a p99 is a latency that happened)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile `q` (0–100) of an ascending sequence; None when it is empty."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values), max(1, math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
