"""Pure aggregation rules of the reports service: buckets, percentiles, windows, uptime."""

from __future__ import annotations

import math
import random

import pytest
from redis.crc import key_slot

from services.reports.aggregates import (
    MAX_MS,
    OVERFLOW,
    bucket_of,
    bucket_upper,
    entry_ops,
    percentile,
    uptime_fraction,
    window_minutes,
)
from services.reports.apply import build_call
from services.reports.dashboard import alert_level
from services.reports.queries import error_rate_pct, http_totals, merge_hashes
from shared.events import fleet_streams, shard_streams, system_stream
from shared.keys import Keys


def hist_of(values: list[float]) -> dict[int, int]:
    hist: dict[int, int] = {}
    for v in values:
        hist[bucket_of(v)] = hist.get(bucket_of(v), 0) + 1
    return hist


def test_bucket_bounds_hold_their_values() -> None:
    for value in (0.05, 0.1, 0.11, 1.0, 1.2, 45.0, 199.9, 200.0, 9999.0, MAX_MS):
        index = bucket_of(value)
        assert value <= bucket_upper(index) + 1e-9
        if index > 0:
            assert value > bucket_upper(index - 1)
    assert bucket_of(MAX_MS * 2) == OVERFLOW
    assert bucket_of(float("nan")) == 0
    assert bucket_of(1.0) == 20  # exactly on a bound: the lower bucket


def test_percentile_nearest_rank_to_the_bucket() -> None:
    assert percentile({}, 0.5) is None
    values = [float(v) for v in range(1, 101)]  # 1..100 ms
    hist = hist_of(values)
    for q, exact in ((0.5, 50.0), (0.95, 95.0), (0.99, 99.0), (1.0, 100.0)):
        got = percentile(hist, q)
        assert got is not None
        # the reported value is the upper bound of the bucket holding the exact quantile
        assert exact <= got < exact * 10 ** (1 / 20) + 1e-9
    assert percentile({bucket_of(7.0): 3}, 0.01) == round(bucket_upper(bucket_of(7.0)), 3)
    with pytest.raises(ValueError):
        percentile(hist, 0)


def test_percentile_is_mergeable_across_minutes() -> None:
    rng = random.Random(4)
    minutes = [[rng.lognormvariate(3, 1) for _ in range(200)] for _ in range(5)]
    merged: dict[int, int] = {}
    for values in minutes:
        for k, c in hist_of(values).items():
            merged[k] = merged.get(k, 0) + c
    everything = hist_of([v for values in minutes for v in values])
    assert merged == everything
    ordered = sorted(v for values in minutes for v in values)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    assert percentile(merged, 0.95) == round(bucket_upper(bucket_of(p95)), 3)


def test_window_minutes_round_out() -> None:
    now = 10 * 60_000 + 30_000  # 30 s into minute 10
    assert window_minutes(now, 60) == [9, 10]
    assert window_minutes(now, 120) == [8, 9, 10]


def test_error_rate_from_http_buckets() -> None:
    requests, errors = http_totals(
        {"training:requests": "900", "training:errors": "3", "web:requests": "100", "x": "7"}
    )
    assert (requests, errors) == (1000, 3)
    assert error_rate_pct(requests, errors) == 0.3
    assert error_rate_pct(0, 0) == 0.0


def test_uptime_fraction() -> None:
    # up before the window, down for the middle 25 %
    assert uptime_fraction(0, 100, "up", [(50, "down"), (75, "up")]) == 0.75
    # first seen inside the window: only the time since then counts
    assert uptime_fraction(0, 100, None, [(60, "up")]) == 1.0
    assert uptime_fraction(0, 100, None, [(60, "up"), (80, "down")]) == 0.5
    # Same millisecond: the later event wins (a crash right after coming up is down), whatever
    # the states' names sort as.
    assert uptime_fraction(0, 100, "up", [(50, "up"), (50, "down")]) == 0.5
    assert uptime_fraction(0, 100, "down", [(50, "down"), (50, "up")]) == 0.5
    # no events in or before the window: the last known state holds
    assert uptime_fraction(0, 100, None, [], "up") == 1.0
    assert uptime_fraction(0, 100, None, [], "down") == 0.0
    assert uptime_fraction(0, 100, None, []) is None
    assert uptime_fraction(0, 100, "down", []) == 0.0


def test_entry_ops_per_stream() -> None:
    keys = Keys("p", shards=4)
    rounds = shard_streams(keys, 2)[0]
    ops = entry_ops(keys, rounds, "120000-0", {"round": "1", "ms": "12.5", "region": "eu"})
    fields = {(o.key, o.a) for o in ops}
    assert ("p:{s:2}:reports:totals", "rounds") in fields
    assert ("p:{s:2}:reports:min:2", f"lat:{bucket_of(12.5)}") in fields
    system = system_stream(keys)
    ops = entry_ops(keys, system, "60000-1", {"type": "process_restarted", "service": "coach"})
    assert ("p:{system}:reports:min:1", "restart:coach") in {(o.key, o.a) for o in ops}
    ops = entry_ops(keys, system, "60000-2", {"type": "service_started", "service": "coach"})
    assert any(o.op == "z" and o.key == "p:{system}:reports:svc:coach" for o in ops)
    # a trimmed entry only counts as an event
    assert {o.a for o in entry_ops(keys, rounds, "60000-3", None)} == {
        "events",
        "events:rounds",
        "last_event_ms",
        "ev:rounds",
    }
    # a service name that is not a name is not turned into a key
    bad = entry_ops(keys, system, "60000-4", {"type": "service_started", "service": "a b"})
    assert all("svc" not in o.key for o in bad)


ENTRIES = {
    "rounds": {"round": "1", "learner": "a", "region": "eu", "ms": "12.5"},
    "meta": {"type": "completed", "learner": "a", "round": "1", "delay_ms": "40"},
    "system": {"type": "service_started", "service": "coach"},
}


def test_every_apply_call_touches_one_slot() -> None:
    """What lets the apply script run on a Redis Cluster: a shard's stream, cursor, totals
    and minute hashes share its slot; the system stream shares the `{system}` one."""
    keys = Keys("p", shards=8)
    for stream in fleet_streams(keys):
        entries = [(f"{60_000 * i}-0", ENTRIES[stream.kind]) for i in range(1, 4)]
        call_keys, _ = build_call(keys, stream, [*entries, ("240000-0", None)])
        assert len({key_slot(k.encode()) for k in call_keys}) == 1, call_keys
        assert call_keys[0] == stream.key
    slots = {key_slot(keys.stream_rounds(s).encode()) for s in keys.all_shards()}
    assert len(slots) == 8  # and the shards are spread over slots


def test_alert_levels_of_the_seed() -> None:
    assert alert_level({"error_rate_pct": 0.1, "uptime_pct": 100.0})[0] == "normal"
    assert alert_level({"error_rate_pct": 0.2})[0] == "yellow"
    assert alert_level({"latency_p95_ms": 151.0})[0] == "yellow"
    assert alert_level({"error_rate_pct": 0.3, "latency_p95_ms": 151.0})[0] == "red"
    assert alert_level({"uptime_pct": 99.0, "error_rate_pct": None})[0] == "red"


def test_shards_parts_are_summed_field_by_field() -> None:
    merged = merge_hashes(
        [
            {"rounds": "3", "lat_sum": "1.5", "last_event_ms": "900", "lat:4": "2"},
            {"rounds": "4", "lat_sum": "2", "last_event_ms": "1200"},
            {},
            {"learners": "10", "lat_sum": "0.25", "last_event_ms": "1000"},
        ]
    )
    assert merged == {
        "rounds": "7",
        "lat:4": "2",
        "lat_sum": "3.75",
        "last_event_ms": "1200",  # the latest, not a sum
        "learners": "10",
    }
