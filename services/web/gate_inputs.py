"""Gathers what the gates read beyond the reports metrics (services/web/fleet_checks.py turns it
into readings): the coach's status (active, fast lane, its record of recent boosts), the
orchestrator's status (pre-arm), reports' status (recording, memory) and its alert webhooks, and
Redis itself (persistence, replicas for WAIT, the recorded shard count). Every source has a short
timeout; one that fails is a reading of None (not measured), never a guess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import RedisCluster

from services.web import fleet_checks
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.redis_types import FleetRedis
from shared.settings import FleetSettings

TIMEOUT_S = 1.5


async def fetch(client: ServiceClient, service: str, path: str, timeout_s: float) -> Any:
    """GET a service's JSON; {"error": ...} for any failure (a failed source is not measured)."""
    try:
        code, body = await client.get(service, path, timeout_s=timeout_s)
    except Exception as exc:
        return {"error": {"message": f"{service}: {exc.__class__.__name__}"}}
    if code != 200 or not isinstance(body, dict):
        return {"error": {"message": f"{service}: HTTP {code}"}}
    return body


class WaitSettings(BaseSettings):
    """The replicas training waits for on each commit (its own setting, read here to check that
    Redis has them): unset or 0, nothing to check."""

    model_config = SettingsConfigDict(extra="ignore")
    commit_wait_replicas: int | None = Field(
        None, ge=0, le=16, validation_alias="TOOLOO_COMMIT_WAIT_REPLICAS"
    )


async def _masters_info(redis: FleetRedis) -> list[dict[str, Any]]:
    """INFO persistence + replication of every master (each master persists its own slots)."""
    if isinstance(redis, RedisCluster):
        out = []
        for node in redis.get_primaries():
            info = await redis.info(target_nodes=node)
            out.append({"node": node.name, **dict(info)})
        return out
    merged: dict[str, Any] = {}
    for section in ("persistence", "replication"):
        merged.update(await redis.info(section))
    return [{"node": "redis", **merged}]


async def _redis_checks(redis: FleetRedis, keys: Keys, shards: int) -> tuple[Any, bool | None]:
    try:
        nodes = await asyncio.wait_for(_masters_info(redis), TIMEOUT_S)
        recorded = await asyncio.wait_for(redis.get(keys.fleet_shards), TIMEOUT_S)
    except Exception:  # Redis away or slow: both checks read as not measured / failed
        return None, None
    text = recorded.decode() if isinstance(recorded, bytes) else recorded
    return nodes, text is not None and str(text) == str(shards)


class _Recent:
    """The pre-flight's slower reads (reports' status reads every stream's groups; INFO of every
    master), kept SLOW_MAX_AGE_S: the Control Room's snapshot evaluates the gates every second,
    and none of these changes that fast. Per process, per Redis client."""

    def __init__(self) -> None:
        self._values: dict[int, tuple[float, Any]] = {}

    async def get(self, key: int, read: Callable[[], Awaitable[Any]]) -> Any:
        at, value = self._values.get(key, (-SLOW_MAX_AGE_S, None))
        if time.monotonic() - at < SLOW_MAX_AGE_S:
            return value
        value = await read()
        self._values[key] = (time.monotonic(), value)
        return value


SLOW_MAX_AGE_S = 5.0
_SLOW = _Recent()


async def checks(
    client: ServiceClient,
    redis: FleetRedis,
    keys: Keys,
    settings: FleetSettings,
    *,
    processes: Any,
    status: Any = None,
    coach: Any = None,
    now_ms: int,
) -> dict[str, Any]:
    """{"integration": ..., "preflight": ...}: the Phase 3 gate's and gate 1's pre-flight
    readings. `status` and `coach` are fetched unless the caller has them already."""

    async def have(body: Any, service: str, path: str) -> Any:
        return body if body is not None else await fetch(client, service, path, TIMEOUT_S)

    async def slow() -> tuple[Any, Any, Any, bool | None]:
        reports_status, alerting, (nodes, shards_ok) = await asyncio.gather(
            fetch(client, "reports", "/api/v1/reports/status", TIMEOUT_S),
            fetch(client, "reports", "/api/v1/reports/alerts/deliveries?limit=1", TIMEOUT_S),
            _redis_checks(redis, keys, settings.shards),
        )
        return reports_status, alerting, nodes, shards_ok

    status, coach, (reports_status, alerting, nodes, shards_ok) = await asyncio.gather(
        have(status, "orchestrator", "/api/v1/system/status"),
        have(coach, "coach", "/api/v1/auto-coach/status"),
        _SLOW.get(id(redis), slow),
    )
    integration = fleet_checks.integration_readings(coach, status, now_ms)
    preflight = fleet_checks.preflight_readings(
        processes_body=processes,
        integration=integration,
        redis=fleet_checks.redis_reading(nodes, WaitSettings().commit_wait_replicas),
        shards_recorded=shards_ok,
        memory_alert_pct=settings.redis_memory_alert_pct,
        reports_status_body=reports_status,
        alerting_body=alerting,
    )
    return {"integration": integration, "preflight": preflight}
