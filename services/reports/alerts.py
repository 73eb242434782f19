"""Alert webhooks, the rules: which URLs (TOOLOO_ALERT_WEBHOOKS, checked at start), when the
monitoring JSON is due (its alert level changed, or it stayed yellow/red for the repeat period),
and how long to wait between attempts. Pure: no I/O, no aiohttp (services/reports/
alert_sender.py delivers)."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ALERTING_LEVELS = ("yellow", "red")
MAX_BACKOFF_S = 60.0


def url_label(url: str) -> str:
    """scheme://host[:port] of a webhook: what is recorded and logged. The path and query stay
    out: a chat webhook's URL carries its secret there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class AlertSettings(BaseSettings):
    """The alert webhooks (docs/OPERATIONS.md, "Alert webhooks")."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Comma-separated http(s) URLs; empty: alerts are not delivered.
    webhooks: str = Field("", validation_alias="TOOLOO_ALERT_WEBHOOKS")
    # While the level stays yellow or red, the monitoring JSON is sent again this often.
    repeat_s: float = Field(900.0, ge=1, le=86_400, validation_alias="TOOLOO_ALERT_REPEAT_S")
    # How often the sender reads the alert level.
    check_s: float = Field(10.0, ge=0.1, le=300, validation_alias="TOOLOO_ALERT_CHECK_S")
    # One attempt's bound (connect + answer), and attempts per delivery (the first included).
    timeout_s: float = Field(5.0, gt=0, le=60, validation_alias="TOOLOO_ALERT_TIMEOUT_S")
    attempts: int = Field(4, ge=1, le=10, validation_alias="TOOLOO_ALERT_ATTEMPTS")
    # The first retry waits about this long, each next one twice as long (with jitter, ≤ 60 s).
    backoff_s: float = Field(1.0, ge=0.01, le=60, validation_alias="TOOLOO_ALERT_BACKOFF_S")

    @field_validator("webhooks")
    @classmethod
    def _http_urls(cls, value: str) -> str:
        urls = [u.strip() for u in value.split(",") if u.strip()]
        for i, url in enumerate(urls, 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                shown = url_label(url) if parts.scheme else url[:40]
                raise ValueError(
                    f"entry {i} ({shown!r}) is not an http(s) URL: each webhook must be "
                    "http://host[:port]/path or https://…"
                )
        if len(urls) > 16:
            raise ValueError("at most 16 webhooks")
        return ",".join(urls)

    def urls(self) -> list[str]:
        return [u for u in self.webhooks.split(",") if u]


def load_settings() -> AlertSettings:
    """The settings, or exit with a one-line reason (a bad webhook must stop the start, not be
    discovered at the first alert)."""
    try:
        return AlertSettings()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{e['loc'][0] if e['loc'] else 'settings'}: {e['msg']}" for e in exc.errors()
        )
        sys.stderr.write(f"refusing to start: TOOLOO_ALERT_* settings: {reasons}\n")
        raise SystemExit(2) from None


def due(
    previous: str | None, sent_ms: int | None, level: str, now_ms: int, repeat_s: float
) -> str | None:
    """Why the monitoring JSON is due now: "changed" (the level is not the last one recorded; a
    fleet never recorded counts as normal), "repeat" (yellow or red and the last send is
    repeat_s old), or None."""
    if level != (previous or "normal"):
        return "changed"
    if level in ALERTING_LEVELS and (sent_ms is None or now_ms - sent_ms >= repeat_s * 1000):
        return "repeat"
    return None


def backoff(attempt: int, base_s: float, rand: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt `attempt` (1, 2, …): base × 2^(attempt−1), times a jitter
    in [0.5, 1.5) so that several senders' retries do not land together, capped at 60 s."""
    return float(min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1) * (0.5 + rand())))
