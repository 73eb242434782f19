"""The selection engine: which topics a learner trains each round, as pure functions.

Policy, in order: auto-fill gaps (a sticky batch of `gapsCount` topics below `targetThreshold`,
each kept until it reaches the threshold and has had `minAttemptsInBatch` attempts since joining),
then targeted mode (untouched topics, round-robin), then the fallback by (mastery, confidence,
topic order). Background topics are trained every 3rd round; spaced-repetition reviews are decided
by the round itself. The runtime (locked batch, join attempts, cursors) lives in
`LearnerState.selection`, so it survives restarts and is shared by every replica.

Defects designed out: a topic without problems cannot exist (curriculum refuses it), so it cannot
hold a gap slot forever; the threshold is `targetThreshold`, never a hard-coded 80.
"""

from __future__ import annotations

import copy
from typing import Any

from services.training.curriculum import Curriculum, Topic
from services.training.learner_model import displayed_mastery
from shared.learner_state import LearnerState

DEFAULT_SELECTION: dict[str, Any] = {
    "targetedMode": True,
    "targetThreshold": 80,
    "roundRobinZeros": True,
    "autoFillGaps": True,
    "gapsCount": 2,
    "stickyBatch": True,
    "minAttemptsInBatch": 2,
}
# maxParallel is fixed at 3 instead of depending on the CPU count of whichever replica runs the
# round, so a learner's rounds do not depend on hardware.
DEFAULT_SETTINGS: dict[str, Any] = {
    "parallelTraining": True,
    "maxParallel": 3,
    "spacedRepetition": True,
}
BACKGROUND_EVERY_N_ROUNDS = 3


_DEFAULTS_MERGED: dict[str, Any] = {**DEFAULT_SETTINGS, "selection": dict(DEFAULT_SELECTION)}


def effective_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults with the learner's overrides applied (`selection` merged key by key).

    Most learners have no overrides; they share one read-only dict (callers never mutate it), so
    the round loop does not rebuild it several times per round."""
    if not overrides:
        return _DEFAULTS_MERGED
    out = dict(DEFAULT_SETTINGS)
    for key in DEFAULT_SETTINGS:
        if key in overrides:
            out[key] = overrides[key]
    sel = dict(DEFAULT_SELECTION)
    sel.update(overrides.get("selection", {}))
    out["selection"] = sel
    return out


def target_threshold(state: LearnerState) -> float:
    """The mastery a topic must reach to stop counting as a gap, from the learner's settings."""
    return float(effective_settings(state.settings)["selection"]["targetThreshold"])


def merge_settings(overrides: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """New overrides after a validated partial update; values equal to the default are dropped so
    a learner on defaults stores nothing."""
    merged = copy.deepcopy(overrides)
    for key, value in patch.items():
        if key == "selection":
            sel = dict(merged.get("selection", {}))
            sel.update(value)
            sel = {k: v for k, v in sel.items() if DEFAULT_SELECTION.get(k) != v}
            if sel:
                merged["selection"] = sel
            else:
                merged.pop("selection", None)
        elif DEFAULT_SETTINGS.get(key) == value:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _order_key(topic: Topic, mastery: dict[str, float], state: LearnerState) -> tuple[float, ...]:
    d = state.domains.get(topic.key)
    conf = d.confidence if d is not None else 50.0
    return (mastery[topic.key], conf, topic.order)


def _masteries(state: LearnerState, cur: Curriculum, now: float) -> dict[str, float]:
    out = {}
    for topic in cur.topics:
        d = state.domains.get(topic.key)
        out[topic.key] = displayed_mastery(d, now) if d is not None else 0.0
    return out


def _below(
    state: LearnerState, cur: Curriculum, mastery: dict[str, float], threshold: float
) -> list[str]:
    cands = [t for t in cur.topics if not t.background and mastery[t.key] < threshold]
    cands.sort(key=lambda t: _order_key(t, mastery, state))
    return [t.key for t in cands]


def _attempts(state: LearnerState, key: str) -> int:
    d = state.domains.get(key)
    return d.attempts if d is not None else 0


def select(state: LearnerState, cur: Curriculum, now: float) -> list[str]:
    """The topics to train this round (mutates `state.selection`: the sticky batch, cursors)."""
    settings = effective_settings(state.settings)
    if not settings["parallelTraining"]:
        # One topic per round, in turn: index (round number) mod #topics (round 1 → index 1).
        return [cur.keys[(state.rounds + 1) % len(cur.keys)]]
    count = int(settings["maxParallel"])
    sel = settings["selection"]
    threshold = float(sel["targetThreshold"])
    mastery = _masteries(state, cur, now)
    runtime = state.selection

    if sel["autoFillGaps"]:
        min_batch = int(sel["minAttemptsInBatch"])
        need = min(count, int(sel["gapsCount"]) or count)
        kept = [
            k
            for k in runtime.locked_batch
            if k in cur.by_key
            and not cur.by_key[k].background
            and (
                mastery[k] < threshold
                or _attempts(state, k) - runtime.join_attempts.get(k, 0) < min_batch
            )
        ]
        if not sel["stickyBatch"] or len(kept) < need:
            for k in _below(state, cur, mastery, threshold):
                if len(kept) >= need:
                    break
                if k not in kept:
                    kept.append(k)
        batch = kept[:need]
        runtime.join_attempts = {
            k: runtime.join_attempts.get(k, _attempts(state, k))
            if k in runtime.locked_batch
            else _attempts(state, k)
            for k in batch
        }
        runtime.locked_batch = batch
        if batch:
            return list(batch)

    picked: list[str] = []
    if sel["targetedMode"]:
        untouched = [t.key for t in cur.topics if _attempts(state, t.key) == 0]
        if untouched:
            if sel["roundRobinZeros"]:
                n = len(untouched)
                start = runtime.untouched_cursor % n
                for i in range(min(count, n)):
                    picked.append(untouched[(start + i) % n])
                runtime.untouched_cursor = (start + count) % n
            else:
                picked = untouched[:count]
            for k in _below(state, cur, mastery, threshold):
                if len(picked) >= count:
                    break
                if k not in picked:
                    picked.append(k)
    if len(picked) < count:
        rest = [t for t in cur.topics if not t.background and t.key not in picked]
        rest.sort(key=lambda t: _order_key(t, mastery, state))
        picked.extend(t.key for t in rest[: count - len(picked)])
    return picked


def peek(state: LearnerState, cur: Curriculum, now: float) -> list[str]:
    """What `select` would pick next, without changing anything (overview's nextUpTargets):
    untouched excludes background topics, locked members are kept only while below threshold."""
    settings = effective_settings(state.settings)
    count = int(settings["maxParallel"])
    sel = settings["selection"]
    threshold = float(sel["targetThreshold"])
    mastery = _masteries(state, cur, now)
    if sel["autoFillGaps"]:
        need = min(count, int(sel["gapsCount"]) or count)
        kept = [
            k for k in state.selection.locked_batch if k in cur.by_key and mastery[k] < threshold
        ]
        for k in _below(state, cur, mastery, threshold):
            if len(kept) >= need:
                break
            if k not in kept:
                kept.append(k)
        if kept:
            return kept[:need]
    picked: list[str] = []
    if sel["targetedMode"]:
        untouched = [t.key for t in cur.topics if not t.background and _attempts(state, t.key) == 0]
        if untouched:
            n = len(untouched)
            start = state.selection.untouched_cursor % n if sel["roundRobinZeros"] else 0
            picked = [untouched[(start + i) % n] for i in range(min(count, n))]
    if len(picked) < count:
        rest = [t for t in cur.topics if not t.background and t.key not in picked]
        rest.sort(key=lambda t: _order_key(t, mastery, state))
        picked.extend(t.key for t in rest[: count - len(picked)])
    return picked


def background_pick(state: LearnerState, cur: Curriculum) -> str | None:
    """Every 3rd round of the learner, the next background topic round-robin (advances the
    cursor)."""
    if (state.rounds + 1) % BACKGROUND_EVERY_N_ROUNDS != 0:
        return None
    bg = [t.key for t in cur.topics if t.background]
    if not bg:
        return None
    cursor = state.selection.background_cursor % len(bg)
    state.selection.background_cursor = (cursor + 1) % len(bg)
    return bg[cursor]


def due_reviews(state: LearnerState, cur: Curriculum, trained: list[str], now: float) -> list[str]:
    """Topics practised before, not trained this round, whose review is due."""
    if not effective_settings(state.settings)["spacedRepetition"]:
        return []
    out = []
    for key in cur.keys:
        if key in trained:
            continue
        d = state.domains.get(key)
        if d is not None and d.attempts > 0 and (d.next_review <= 0.0 or d.next_review <= now):
            out.append(key)
    return out
