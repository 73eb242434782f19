"""Alert webhooks' rules (services/reports/alerts.py): when the monitoring JSON is due, the
back-off, the settings' refusal of a URL that is not http(s); and the one sender among reports
replicas (the holder of shard 0's lease, on a real Redis)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.reports import alerts
from services.reports.alerts import AlertSettings, due, url_label
from shared.keys import Keys
from shared.shard_leases import ShardLeases, reports_role

MIN = 60_000
T0 = 1_800_000_000_000


@pytest.mark.parametrize(
    ("previous", "sent", "level", "now", "want"),
    [
        (None, None, "normal", T0, None),  # a fleet never recorded, healthy: nothing to say
        (None, None, "yellow", T0, "changed"),
        ("normal", None, "red", T0, "changed"),
        ("red", T0, "normal", T0 + MIN, "changed"),  # recovery is a change too
        ("red", T0, "yellow", T0 + MIN, "changed"),
        ("red", T0, "red", T0 + 14 * MIN, None),
        ("red", T0, "red", T0 + 15 * MIN, "repeat"),  # every 15 minutes while red
        ("yellow", T0, "yellow", T0 + 15 * MIN, "repeat"),
        ("normal", T0, "normal", T0 + 60 * MIN, None),  # never repeated while normal
    ],
)
def test_due(previous: str | None, sent: int | None, level: str, now: int, want: str) -> None:
    assert due(previous, sent, level, now, 900) == want


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    assert alerts.backoff(1, 1.0, lambda: 0.5) == 1.0
    assert alerts.backoff(3, 1.0, lambda: 0.5) == 4.0
    assert alerts.backoff(3, 1.0, lambda: 0.0) == 2.0  # jitter spans ×0.5 … ×1.5
    assert alerts.backoff(3, 1.0, lambda: 0.999) < 6.0
    assert alerts.backoff(20, 1.0, lambda: 0.9) == alerts.MAX_BACKOFF_S


def test_settings_defaults_and_urls() -> None:
    s = AlertSettings()
    assert (s.urls(), s.repeat_s, s.attempts) == ([], 900.0, 4)
    s = AlertSettings(TOOLOO_ALERT_WEBHOOKS=" http://a:81/x , https://b/hook?k=1 ,")
    assert s.urls() == ["http://a:81/x", "https://b/hook?k=1"]
    # What is recorded and logged leaves out the path, the query and any credentials.
    assert url_label("https://user:pw@hooks.example:8443/T0/secret?x=1") == (
        "https://hooks.example:8443"
    )


@pytest.mark.parametrize("bad", ["ftp://x/y", "x.example/hook", "http:///nohost", "file:///etc"])
def test_a_webhook_that_is_not_http_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="not an http"):
        AlertSettings(TOOLOO_ALERT_WEBHOOKS=f"http://ok/a,{bad}")


def test_load_settings_exits_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOOLOO_ALERT_WEBHOOKS", "gopher://x/1")
    with pytest.raises(SystemExit) as exit_info:
        alerts.load_settings()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "TOOLOO_ALERT_WEBHOOKS" in err and "entry 1" in err and "http(s)" in err


async def test_exactly_one_reports_replica_sends(redis, prefix: str) -> None:  # type: ignore[no-untyped-def]
    keys = Keys(prefix, shards=4)
    replicas = [
        ShardLeases(redis, keys, reports_role(keys), token=f"r{i}", renew_ms=50) for i in range(3)
    ]
    for _ in range(4):  # bounded: a few cycles of every replica, in turn
        for rep in replicas:
            await rep.cycle()
    senders = [rep for rep in replicas if 0 in rep.owned()]  # app.py's `owns`
    assert len(senders) == 1
    # The sender stops; another replica takes shard 0 and becomes the one sender.
    await senders[0].stop()
    rest = [rep for rep in replicas if rep is not senders[0]]
    for _ in range(4):
        for rep in rest:
            await rep.cycle()
    assert len([rep for rep in rest if 0 in rep.owned()]) == 1
