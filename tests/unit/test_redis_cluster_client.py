"""Pure parts of the cluster support: which slots no master serves, the key a pipelined command
is routed by, the slot ranges of a new cluster, and the HTTP form of an unreplicated write."""

from __future__ import annotations

from harness.redis_cluster import SLOTS, slot_ranges
from services.training.pipelining import first_key
from shared.domain_errors import NotReplicated
from shared.errors import api_error_of
from shared.redis_conn import missing_slot_ranges


def test_missing_slot_ranges_names_every_gap():
    full = [[0, 5460, ["h", 1]], [5461, 10922, ["h", 2]], [10923, 16383, ["h", 3]]]
    assert missing_slot_ranges(full) == []
    assert missing_slot_ranges([[0, 100, ["h", 1]]]) == [(101, 16383)]
    assert missing_slot_ranges([[10, 20, ["h", 1]], [30, 16383, ["h", 2]]]) == [(0, 9), (21, 29)]
    assert missing_slot_ranges([]) == [(0, 16383)]
    # redis-py's parsed form of CLUSTER SLOTS, keyed by range.
    assert missing_slot_ranges({(0, 16000): {}}) == [(16001, 16383)]


def test_new_cluster_slot_ranges_cover_every_slot_once():
    ranges = slot_ranges(3)
    assert ranges == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert sum(b - a + 1 for a, b in ranges) == SLOTS


def test_first_key_of_a_pipelined_command():
    assert first_key(("EVALSHA", "abc", 2, "{l}:a", "{l}:b", "x")) == "{l}:a"
    assert first_key(("EVALSHA", "abc", 0, "x")) is None
    assert first_key(("HMGET", "k", "v", "s")) == "k"
    assert first_key(("PING",)) is None


def test_not_replicated_is_a_503_with_retry_after():
    api = api_error_of(NotReplicated(0, 1, 500, reply=[1]))
    assert api.status == 503 and api.code == "not_replicated"
    assert api.headers == {"Retry-After": "1"}
    assert api.details == {"replicas": 0, "required": 1, "timeoutMs": 500}
