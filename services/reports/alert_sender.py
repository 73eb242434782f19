"""Alert webhooks, delivered: every TOOLOO_ALERT_CHECK_S the sender reads the monitoring JSON
(GET /api/v1/reports/dashboard over the last minute) and, when it is due (services/reports/
alerts.py: the level changed, or yellow/red for TOOLOO_ALERT_REPEAT_S), POSTs it to each webhook,
each attempt bounded by TOOLOO_ALERT_TIMEOUT_S, retried up to TOOLOO_ALERT_ATTEMPTS with
exponential back-off and jitter. Every attempt is recorded (a capped list), and each delivery's
outcome is an `alert_delivered` / `alert_failed` event on the system stream.

One sender in the fleet: the reports replica that holds shard 0's lease (shared/shard_leases.py).
Reports already splits its shards by leases among its replicas, so the lease that makes exactly
one of them apply shard 0's events also makes exactly one send alerts, with no other lease to
run; a lone replica holds every shard. A replica that loses the lease stops at its next check.

Its own aiohttp session: the fleet's ServiceClient forwards the fleet's API token and request
ids, which must never reach a third party's webhook.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from services.reports import alerts, queries
from services.reports.alerts import AlertSettings, url_label
from shared import capped_log
from shared.cancellation import stop_if_cancelled
from shared.clock import iso_ms, now_ms
from shared.events import emit_system_event
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis, text_map
from shared.settings import FleetSettings

log = get_logger(__name__)

DELIVERIES_KEPT = 1000
WINDOW_S = 60  # the monitoring JSON's window, as the Control Room and the dashboard's default


class AlertSender:
    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        settings: AlertSettings,
        fleet: FleetSettings,
        owns: Callable[[], bool],
        name: str = "reports",
    ) -> None:
        self.redis = redis
        self.name = name  # this replica, recorded with each attempt
        self.keys = keys
        self.settings = settings
        self.fleet = fleet
        self.owns = owns
        self.session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """The check loop; bounded by task cancellation at shutdown. Off without webhooks."""
        if not self.settings.urls():
            return
        async with aiohttp.ClientSession(json_serialize=lambda o: orjson.dumps(o).decode()) as s:
            self.session = s
            while True:  # bounded by task cancellation at shutdown
                stop_if_cancelled()
                try:
                    if self.owns():
                        await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away: the next check tries again
                    log.warning("alert_check_failed", error=str(exc)[:300])
                await asyncio.sleep(self.settings.check_s)

    async def state(self) -> dict[str, str]:
        return text_map(await self.redis.hgetall(self.keys.reports_alert_state))

    async def check(self, at: int | None = None) -> str | None:
        """Deliver the monitoring JSON if it is due; why it was sent, or None."""
        at = now_ms() if at is None else at
        doc = await queries.dashboard(self.redis, self.keys, self.fleet, WINDOW_S, at)
        state = await self.state()
        level, previous = doc["alert_level"], state.get("level")
        sent = int(state["sent_ms"]) if state.get("sent_ms") else None
        reason = alerts.due(previous, sent, level, at, self.settings.repeat_s)
        if reason is None:
            if previous is None:  # the first level seen (normal): nothing to say yet
                await self.redis.hset(self.keys.reports_alert_state, "level", level)
            return None
        # Recorded before sending: a sender that dies mid-delivery does not resend at once to
        # the webhooks that already have it; the next change or repeat is sent as usual.
        await self.redis.hset(
            self.keys.reports_alert_state,
            mapping={"level": level, "sent_ms": at, "reason": reason},
        )
        payload = {
            **doc,
            "alert_change": {"reason": reason, "from": previous or "normal", "to": level},
        }
        await asyncio.gather(
            *(self.deliver(i, url, payload, reason) for i, url in enumerate(self.settings.urls()))
        )
        return reason

    async def deliver(self, index: int, url: str, payload: Mapping[str, Any], reason: str) -> bool:
        """POST the payload until a 2xx, at most `attempts` times; every attempt recorded."""
        assert self.session is not None, "run() opens the session"
        label, level = url_label(url), payload["alert_level"]
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        for attempt in range(1, self.settings.attempts + 1):
            started = time.perf_counter()
            status: int | None = None
            error: str | None = None
            try:
                async with self.session.post(
                    url, json=payload, timeout=timeout, allow_redirects=False
                ) as resp:
                    status = resp.status
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = exc.__class__.__name__
            delivered = status is not None and 200 <= status < 300
            await self._record(
                {
                    "at": iso_ms(now_ms()),
                    "sender": self.name,
                    "webhook": index,
                    "target": label,
                    "level": level,
                    "reason": reason,
                    "attempt": attempt,
                    "ok": delivered,
                    "status": status,
                    "error": error,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
            if delivered:
                await self._event("alert_delivered", index, label, level, reason, attempt)
                return True
            if attempt < self.settings.attempts:
                await asyncio.sleep(alerts.backoff(attempt, self.settings.backoff_s))
        await self._event("alert_failed", index, label, level, reason, self.settings.attempts)
        log.warning("alert_failed", webhook=label, level=level, attempts=self.settings.attempts)
        return False

    async def _record(self, entry: Mapping[str, Any]) -> None:
        await capped_log.append(
            self.redis, self.keys.reports_alert_deliveries, entry, DELIVERIES_KEPT
        )

    async def _event(
        self, kind: str, index: int, label: str, level: str, reason: str, attempts: int
    ) -> None:
        await emit_system_event(
            self.redis,
            self.keys,
            service="reports",
            kind=kind,
            webhook=index,
            target=label,
            level=level,
            reason=reason,
            attempts=attempts,
        )


async def deliveries(redis: FleetRedis, keys: Keys, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` delivery attempts, newest first."""
    return await capped_log.newest(redis, keys.reports_alert_deliveries, limit, DELIVERIES_KEPT)
