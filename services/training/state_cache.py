"""An in-process cache of learner states: learner → (version, encoded state), LRU-bounded.

Why: with it a single round is ONE Redis round trip (the commit) instead of two (read, commit).

Why it is safe, across replicas and with meta's (or anyone's) writes: the cache is only ever a
guess of what to compute from. The commit script `commit_rounds` writes only if the learner's
version is still the one we computed from, and otherwise refuses and returns the current version
and state; training then recomputes from THAT state and caches it. So a stale entry (another
replica or the batch path ran a round, meta applied an effect, a start/settings change) costs one
retry and can never overwrite anybody's update. The one case a version check alone would miss is
a learner deleted and re-created (its version restarts at 1 and could climb back to the cached
number): commits computed from a cached state also pass the incarnation guard (the learner's
random seed, `incarnation_marker`), which the script checks against the stored state.

Contention. When two writers keep racing for one learner (two replicas serving its rounds), a
cached round is faster than a retry (no read), so the retrier could lose again and again. The
first conflict marks the learner contended for CONTENDED_S: its rounds then read before computing
(as without a cache), which leaves the retry path — the one that skips the read — the faster one,
so conflicts resolve in a few attempts.

Entries hold the encoded string, not the decoded object: ~1 KB each (a bounded, predictable
footprint: 50,000 entries ≈ 50 MB), immutable (a round that fails half-way cannot leave a mutated
entry behind), and decoding costs ~5 µs.
"""

from __future__ import annotations

import time
from collections import OrderedDict

CONTENDED_S = 2.0
_PRUNE_AT = 1024  # contended marks kept before expired ones are swept


class StateCache:
    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, str | bytes]] = OrderedDict()
        self._contended: dict[str, float] = {}  # learner → monotonic time the mark ends

    def get(self, learner: str) -> tuple[str, str | bytes] | None:
        entry = self._entries.get(learner)
        if entry is None:
            return None
        self._entries.move_to_end(learner)
        return entry

    def put(self, learner: str, version: str, state: str | bytes) -> None:
        if self.max_entries <= 0:
            return
        if self._contended and learner in self._contended:
            if self._contended[learner] > time.monotonic():
                return
            del self._contended[learner]
        self._entries[learner] = (str(version), state)
        self._entries.move_to_end(learner)
        while len(self._entries) > self.max_entries:  # bounded: at most one eviction per put
            self._entries.popitem(last=False)

    def refresh(self, learner: str, version: str, state: str | bytes) -> None:
        """Update an entry only if the learner is cached (the batch path: the coach's thousands of
        learners must not evict the ones single rounds are served for)."""
        if learner in self._entries:
            self._entries[learner] = (str(version), state)

    def drop(self, learner: str) -> None:
        self._entries.pop(learner, None)

    def contend(self, learner: str) -> None:
        """A commit for this learner met a concurrent writer: stop caching it for a while."""
        self._entries.pop(learner, None)
        now = time.monotonic()
        if len(self._contended) >= _PRUNE_AT:  # bounded: sweeps at most _PRUNE_AT marks
            self._contended = {k: t for k, t in self._contended.items() if t > now}
            if len(self._contended) >= _PRUNE_AT:
                self._contended.clear()  # a storm of contention: forget the oldest marks
        self._contended[learner] = now + CONTENDED_S

    def clear(self) -> None:
        self._entries.clear()
        self._contended.clear()

    def __len__(self) -> int:
        return len(self._entries)
