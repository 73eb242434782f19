"""The memory figure the alerts use: every master read, the fullest one counts."""

from __future__ import annotations

import pytest

from shared.redis_memory import NodeMemory, fullest, masters_memory


async def test_a_single_redis_is_its_only_master(redis):
    nodes = await masters_memory(redis)
    assert len(nodes) == 1 and nodes[0].node == "redis" and nodes[0].used > 0


def test_the_master_nearest_its_limit_counts_not_the_biggest():
    big = NodeMemory("a:1", used=900, limit=10_000, policy="noeviction")  # 9 %
    tight = NodeMemory("b:2", used=500, limit=1_000, policy="noeviction")  # 50 %
    unlimited = NodeMemory("c:3", used=5_000, limit=0, policy="noeviction")
    assert fullest([big, tight, unlimited]) is tight
    assert unlimited.pct is None and tight.pct == 50.0
    # With no limit anywhere, the one using the most.
    assert fullest([unlimited, NodeMemory("d:4", 10, 0, None)]) is unlimited


def test_no_master_is_an_error_not_a_zero():
    with pytest.raises(ValueError):
        fullest([])
