"""The edge policy's allow-lists (shared/middlewares.py), as pure functions; the integration tests
(tests/integration/test_cross_site.py) drive them over HTTP."""

from __future__ import annotations

from shared.middlewares import EdgePolicy, host_name
from shared.settings import FleetSettings


def _settings(**env: str) -> FleetSettings:
    return FleetSettings(**env)  # type: ignore[arg-type]


def test_the_fleets_own_names_and_origins_are_allowed_and_nothing_else() -> None:
    policy = EdgePolicy.of(
        _settings(
            training_url="http://training:3001",
            cors_origins="http://ops.example:8080",
            allowed_hosts="tooloo.internal",
        )
    )
    for host in ("127.0.0.1:3001", "localhost", "[::1]:3000", "training:3001", "TRAINING"):
        assert policy.host_allowed(host), host
    assert policy.host_allowed("ops.example:8080") and policy.host_allowed("tooloo.internal")
    assert policy.host_allowed(None)  # HTTP/1.0, no browser
    for host in ("attacker.example", "attacker.example:3001", "127.0.0.2", "[::2]:1"):
        assert not policy.host_allowed(host), host
    assert "http://127.0.0.1:3002" in policy.origins  # every service's, not only web's
    assert "http://training:3001" in policy.origins and "http://ops.example:8080" in policy.origins
    assert "http://evil.example" not in policy.origins and "null" not in policy.origins
    assert EdgePolicy.of(_settings(allowed_hosts="*")).host_allowed("anything.example")


def test_host_names_are_parsed_without_port_and_brackets() -> None:
    assert host_name("[::1]:3000") == "::1"
    assert host_name("Example.COM.:80") == "example.com"
    assert host_name("127.0.0.1") == "127.0.0.1"
