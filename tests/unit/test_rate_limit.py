import pytest

from shared.errors import TooManyRequests
from shared.rate_limit import RateLimit, enforce


async def test_limit_allows_up_to_the_limit_then_answers_429_with_retry_after(redis, keys):
    rule = RateLimit("boost", limit=3, window_s=30)
    for _ in range(3):
        await enforce(redis, keys, rule, "1.2.3.4")
    with pytest.raises(TooManyRequests) as exc:
        await enforce(redis, keys, rule, "1.2.3.4")
    assert exc.value.status == 429
    assert 1 <= int(exc.value.headers["Retry-After"]) <= 30
    await enforce(redis, keys, rule, "5.6.7.8")  # other clients have their own budget
