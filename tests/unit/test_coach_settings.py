"""Coach settings: validation of requests, the Redis hash round trip, live values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.coach import settings_store
from services.coach.models import BoostRequest, FastLaneRequest, HyperBoostRequest, SettingsUpdate
from services.coach.scheduler import PinChanges
from services.coach.settings_store import CoachSettings
from services.coach.store import CoachStore


@pytest.mark.parametrize(
    "body",
    [
        {"batchSize": -1},
        {"batchSize": 0.5},
        {"batchSize": "4"},
        {"intervalMs": 10},
        {"intervalMs": 60001},
        {"microBatchesPerTick": 65},
        {"maxRoundsPerCycle": 51},
        {"aggressiveMultiplier": 11},
        {"minAvgMastery": "NaN"},
        {"minAvgMastery": float("nan")},
        {"hyperMode": "yes"},
        {"unknownKey": 1},
        {"fastLane": {"weight": 0}},
        {"fastLane": {"weight": 11}},
        {"fastLane": {"targets": ["x"]}},
    ],
)
def test_bad_settings_are_refused(body):
    with pytest.raises(ValidationError):
        SettingsUpdate.model_validate(body)


@pytest.mark.parametrize(
    "model,body",
    [
        (BoostRequest, {"rounds": 21}),
        (BoostRequest, {"rounds": 0}),
        (BoostRequest, {"batchSize": -3}),
        (BoostRequest, {"batchSize": 0.5}),
        (BoostRequest, {"rounds": "5"}),
        (BoostRequest, {"learner": "bad id!"}),
        (HyperBoostRequest, {"rounds": 51}),
        (FastLaneRequest, {"weight": 2.5}),
        (FastLaneRequest, {"intervalMs": 49}),
        (FastLaneRequest, {"learners": ["ok", "not ok"]}),
        (FastLaneRequest, {"learners": {"add": ["a"], "drop": ["b"]}}),
    ],
)
def test_bad_requests_are_refused(model, body):
    with pytest.raises(ValidationError):
        model.model_validate(body)


def test_fast_lane_request_forms():
    assert FastLaneRequest.model_validate({"learners": ["a", "b", "a"]}).learner_changes() == (
        PinChanges(["a", "b"], [], [])
    )
    req = FastLaneRequest.model_validate(
        {"learners": {"add": ["a"], "remove": ["b"], "exclude": ["c"]}}
    )
    assert req.learner_changes() == PinChanges(["a"], ["b"], ["c"])
    with pytest.raises(ValidationError):  # one learner, two pins
        FastLaneRequest.model_validate({"learners": {"add": ["a"], "exclude": ["a"]}})


def test_a_fast_lane_request_changes_only_what_it_names():
    # The original reset an omitted enable, weight and intervalMs to their defaults.
    assert FastLaneRequest.model_validate({}).settings_changes() == {}
    assert FastLaneRequest.model_validate({"weight": 3}).settings_changes() == {"weight": 3}
    req = FastLaneRequest.model_validate({"enable": False, "windowS": 60, "auto": False})
    assert req.settings_changes() == {"enabled": False, "windowS": 60, "auto": False}
    current = settings_store.merge(
        CoachSettings(), {"fastLane": {"enabled": False, "intervalMs": 900, "weight": 4}}
    )
    new = settings_store.merge(current, {"fastLane": {"weight": 3}})
    assert (new.fastLane.enabled, new.fastLane.intervalMs, new.fastLane.weight) == (False, 900, 3)


def test_live_values_follow_the_fast_lane_rule():
    s = CoachSettings()
    assert (s.live_interval_ms, s.live_weight) == (600, 2)
    s = settings_store.merge(s, {"fastLane": {"enabled": False}, "intervalMs": 1000})
    assert (s.live_interval_ms, s.live_micro_batches, s.live_weight) == (1000, 4, 1)


async def test_round_trip_through_redis(redis, keys):
    store = CoachStore(redis, keys)
    await store.ensure_default_settings()
    raw = await redis.hgetall(keys.coach_settings)
    assert raw["minAvgMastery"] == "75" and raw["maxBelow80"] == "3"
    assert raw["fastLane.weight"] == "2"
    current = await store.load_settings()
    assert current == CoachSettings()
    new = settings_store.merge(current, {"minAvgMastery": 80.5, "fastLane": {"weight": 5}})
    changed = await store.save_settings(current, new)
    assert changed == ["fastLane.weight", "minAvgMastery"]
    assert await redis.hget(keys.coach_settings, "minAvgMastery") == "80.5"
    loaded = await store.load_settings()
    assert loaded.minAvgMastery == 80.5 and loaded.fastLane.weight == 5
    # ensure_default_settings never overwrites what someone set.
    await store.ensure_default_settings()
    assert (await store.load_settings()).fastLane.weight == 5


async def test_a_corrupt_field_falls_back_to_its_default(redis, keys):
    await redis.hset(keys.coach_settings, mapping={"batchSize": "-4", "intervalMs": "abc"})
    loaded = settings_store.from_fields(await redis.hgetall(keys.coach_settings))
    assert loaded.settings.batchSize == 4 and loaded.settings.intervalMs == 600
    assert set(loaded.invalid) == {"batchSize", "intervalMs"}


def test_request_models_carry_the_settings_bounds():
    # Each setting's bounds are written once, on CoachSettings/FastLaneSettings; the request
    # models take theirs from there, and the OpenAPI document shows them.
    from services.coach.models import FastLaneSettingsUpdate
    from services.coach.settings_store import FastLaneSettings

    def constraints(model, name):
        return [repr(m) for m in model.model_fields[name].metadata]

    for name in CoachSettings.model_fields:
        if name != "fastLane":
            assert constraints(SettingsUpdate, name) == constraints(CoachSettings, name), name
    for name in FastLaneSettings.model_fields:
        assert constraints(FastLaneSettingsUpdate, name) == constraints(FastLaneSettings, name)
    for name in FastLaneSettings.model_fields:
        if name != "enabled":  # `enable` in the request, the original's name
            assert constraints(FastLaneRequest, name) == constraints(FastLaneSettings, name), name
            # A partial update: nothing named, nothing changed.
            assert FastLaneRequest.model_fields[name].default is None, name
    schema = SettingsUpdate.model_json_schema()["properties"]["maxBelow80"]["anyOf"][0]
    assert (schema["minimum"], schema["maximum"]) == (0, 1000)
