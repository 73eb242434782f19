"""Fixed log-spaced latency buckets, shared by the services that count latencies (request stats)
and the reports service that merges them: 20 buckets per decade from 0.1 ms to 10 s, so counts
of any minutes add up and a percentile over any window is exact to the bucket (about 12 %)."""

from __future__ import annotations

import math

MIN_MS = 0.1
BUCKETS_PER_DECADE = 20
DECADES = 5  # 0.1 ms .. 10 s
TOP = BUCKETS_PER_DECADE * DECADES  # index of the bucket whose upper bound is 10 s
OVERFLOW = TOP + 1  # values above 10 s
MAX_MS = MIN_MS * 10**DECADES


def bucket_upper(index: int) -> float:
    """Upper bound (ms) of bucket `index`; the overflow bucket reports the top bound."""
    return MIN_MS * 10 ** (min(index, TOP) / BUCKETS_PER_DECADE)


def bucket_of(ms: float) -> int:
    """Index of the bucket holding `ms`: bucket i holds (upper(i-1), upper(i)]; 0 holds ≤ 0.1."""
    if not ms > MIN_MS:  # also catches NaN
        return 0
    if ms > MAX_MS:
        return OVERFLOW
    # The epsilon keeps a value that sits exactly on a bound (1.0 ms) in the lower bucket
    # despite floating-point error in log10.
    return max(0, min(TOP, math.ceil(math.log10(ms / MIN_MS) * BUCKETS_PER_DECADE - 1e-9)))
