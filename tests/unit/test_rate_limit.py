import pytest

from shared.errors import TooManyRequests
from shared.rate_limit import RateLimit, enforce, parse_proxies, rightmost_untrusted


async def test_limit_allows_up_to_the_limit_then_answers_429_with_retry_after(redis, keys):
    rule = RateLimit("boost", limit=3, window_s=30)
    for _ in range(3):
        await enforce(redis, keys, rule, "1.2.3.4")
    with pytest.raises(TooManyRequests) as exc:
        await enforce(redis, keys, rule, "1.2.3.4")
    assert exc.value.status == 429
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 30
    await enforce(redis, keys, rule, "5.6.7.8")  # other clients have their own budget


async def test_a_call_may_cost_more_than_one_token(redis, keys):
    rule = RateLimit("reports-long-window", limit=96, window_s=60)
    for _ in range(4):
        await enforce(redis, keys, rule, "1.2.3.4", cost=24)  # four 24 h windows
    with pytest.raises(TooManyRequests) as exc:
        await enforce(redis, keys, rule, "1.2.3.4", cost=24)
    assert exc.value.details["cost"] == 24 and exc.value.code == "rate_limited"


async def test_the_window_moves_rather_than_resetting_at_an_edge(redis, keys):
    """The old fixed window let 2x the limit through across a window boundary; the moving window
    counts the calls of the last `window_s` seconds, whenever they came."""
    rule = RateLimit("edge", limit=5, window_s=2)
    for _ in range(5):
        await enforce(redis, keys, rule, "9.9.9.9")
    for _ in range(3):  # bounded: however the calls fall around a second boundary
        with pytest.raises(TooManyRequests):
            await enforce(redis, keys, rule, "9.9.9.9")


def test_forwarded_for_is_read_only_from_trusted_proxies_right_to_left():
    proxies = parse_proxies("10.0.0.0/8, 127.0.0.1")
    # An untrusted peer: its header is ignored, whatever it says.
    assert rightmost_untrusted("203.0.113.9", "1.1.1.1", proxies) == "203.0.113.9"
    # No proxies configured (the default): not even loopback is believed.
    assert rightmost_untrusted("127.0.0.1", "1.1.1.1", parse_proxies("")) == "127.0.0.1"
    # A trusted peer: the right-most hop that is not a trusted proxy is the client; what the
    # client wrote to its left (a forged first hop) is not read.
    assert rightmost_untrusted("127.0.0.1", "6.6.6.6, 198.51.100.7", proxies) == "198.51.100.7"
    assert rightmost_untrusted("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.2.3", proxies) == (
        "198.51.100.7"
    )
    # Garbage instead of an address ends the walk at the proxy that wrote it.
    assert rightmost_untrusted("127.0.0.1", "x:y{z}", proxies) == "127.0.0.1"
    assert rightmost_untrusted("127.0.0.1", "evil, 10.0.0.5", proxies) == "10.0.0.5"


def test_an_operator_override_replaces_only_its_scope():
    from shared.rate_limit import RateLimit, effective

    boost = RateLimit("coach-boost", 60, 10)
    topic = RateLimit("training-new-topic", 10, 60)
    overrides = "training-new-topic=100/60, meta-boost-cohort=2/60"
    assert effective(topic, overrides) == RateLimit("training-new-topic", 100, 60)
    assert effective(boost, overrides) is boost
    assert effective(boost, "") is boost
