"""Controller snapshots and the revert (rollback level 2): the settings that steer the fleet,
recorded, and put back.

A snapshot holds the coach's settings (thresholds, pace, fast lane) and whether it runs, the
scale hash (target, hold, paused) and the ramp controller's switch. One is taken on request and
automatically before every throttle (level 1), emergency pause (level 3), full pause (level 4)
and revert (so a revert can be reverted). Learner data is not part of it: restoring data is the
`tooloo restore` command's job (a backup file), not the controller's.

The coach's part goes through the coach's own HTTP API (with a timeout), not its Redis keys: the
coach validates each value with its own models and applies it live in every replica, and its
storage format is the coach's to change. The rest lives in the `{system}` slot: a revert writes
`scale`, `ramp` and its `settings_changed` event in one MULTI/EXEC. The snapshot list is one
LPUSH + LTRIM MULTI. Domain code: no aiohttp (the service client is the fleet's own).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from services.coach.models import FastLaneSettingsUpdate, SettingsUpdate
from services.web.gate_store import GateStore
from shared import capped_log
from shared.clock import iso_ms, now_ms
from shared.events import SystemEvent
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.redis_types import FleetRedis, field_map, text_map, text_or_none

SNAPSHOTS_CAP = 200  # the newest kept; a snapshot is a few hundred bytes
COACH_TIMEOUT_S = 3.0
COACH = "/api/v1/auto-coach"


class UnknownSnapshot(Exception):
    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"No snapshot {snapshot_id!r} (the newest {SNAPSHOTS_CAP} are kept)")


class RevertIncomplete(Exception):
    def __init__(self, parts: dict[str, Any]) -> None:
        failed = [name for name, part in parts.items() if not part.get("ok")]
        super().__init__(f"not every part was put back: {', '.join(failed)}")
        self.parts = parts


def _error(status: int, body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("message") if isinstance(err, dict) else f"HTTP {status}")[:300]


async def _coach_part(client: ServiceClient) -> dict[str, Any]:
    """{settings, active} as the coach answers them (both asked at once), or {error}."""
    try:
        (status, body), (s_status, s_body) = await asyncio.gather(
            client.get("coach", f"{COACH}/settings", timeout_s=COACH_TIMEOUT_S),
            client.get("coach", f"{COACH}/status", timeout_s=COACH_TIMEOUT_S),
        )
    except Exception as exc:  # unreachable or timed out: the snapshot says so
        return {"error": f"{exc.__class__.__name__}: {exc}"[:300]}
    if status != 200:
        return {"error": _error(status, body)}
    if s_status != 200:
        return {"error": _error(s_status, s_body)}
    status_doc = s_body.get("status") if isinstance(s_body, dict) else None
    active = bool(status_doc.get("active")) if isinstance(status_doc, dict) else False
    return {"settings": body.get("settings"), "active": active}


async def take(
    redis: FleetRedis,
    keys: Keys,
    client: ServiceClient,
    actor: str,
    note: str | None,
    reason: str,
) -> dict[str, Any]:
    """Record the controller settings as they are now; returns the snapshot."""
    coach = await _coach_part(client)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.scale)
        pipe.hget(keys.ramp, "enabled")
        scale_raw, ramp_enabled = await pipe.execute()
    scale = text_map(scale_raw)
    at = now_ms()
    snapshot = {
        "id": f"snap-{at}-{secrets.token_hex(3)}",
        "at": iso_ms(at),
        "ms": at,
        "actor": actor,
        "note": note,
        "reason": reason,
        "coach": coach,
        "scale": {
            "target": int(scale["target"]) if scale.get("target") else None,
            "hold": scale.get("hold") == "1",
            "paused": scale.get("paused") == "1",
        },
        "ramp": {"enabled": text_or_none(ramp_enabled) == "1"},
    }
    await capped_log.append(redis, keys.controller_snapshots, snapshot, SNAPSHOTS_CAP)
    return snapshot


async def listing(redis: FleetRedis, keys: Keys, limit: int) -> list[dict[str, Any]]:
    return await capped_log.newest(redis, keys.controller_snapshots, limit, SNAPSHOTS_CAP)


async def find(redis: FleetRedis, keys: Keys, snapshot_id: str) -> dict[str, Any]:
    for snapshot in await listing(redis, keys, SNAPSHOTS_CAP):
        if snapshot.get("id") == snapshot_id:
            return snapshot
    raise UnknownSnapshot(snapshot_id)


def coach_update(settings: dict[str, Any]) -> dict[str, Any]:
    """The stored coach settings as a body the coach's settings endpoint takes: only the fields
    its update model knows (a field the coach has since dropped is left out, not refused)."""
    top = set(SettingsUpdate.model_fields) - {"autoBoostEnabled", "boostInterval", "targetMastery"}
    body = {k: v for k, v in settings.items() if k in top and k != "fastLane"}
    lane = settings.get("fastLane")
    if isinstance(lane, dict):
        body["fastLane"] = {
            k: v for k, v in lane.items() if k in FastLaneSettingsUpdate.model_fields
        }
    return body


async def _put_coach(client: ServiceClient, coach: dict[str, Any]) -> dict[str, Any]:
    if "settings" not in coach or not isinstance(coach["settings"], dict):
        return {"ok": True, "skipped": "the snapshot has no coach settings: " + str(coach)[:200]}
    try:
        status, body = await client.post(
            "coach", f"{COACH}/settings", coach_update(coach["settings"]), timeout_s=COACH_TIMEOUT_S
        )
        if status != 200:
            return {"ok": False, "status": status, "error": _error(status, body)}
        path = f"{COACH}/start" if coach.get("active") else f"{COACH}/stop"
        status, body = await client.post("coach", path, {}, timeout_s=COACH_TIMEOUT_S)
        if status != 200:
            return {"ok": False, "status": status, "error": _error(status, body)}
    except Exception as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"[:300]}
    return {"ok": True}


async def revert(
    redis: FleetRedis,
    keys: Keys,
    client: ServiceClient,
    store: GateStore,
    snapshot_id: str,
    actor: str,
    note: str | None,
) -> dict[str, Any]:
    """Put the snapshot's settings back (UnknownSnapshot before anything is written); recorded
    in the decision record with its actor, even a partial revert (then RevertIncomplete: every
    part is idempotent, retrying is safe)."""
    snapshot = await find(redis, keys, snapshot_id)
    before = await take(redis, keys, client, actor, f"before revert to {snapshot_id}", "revert")
    scale = snapshot.get("scale") or {}
    fields: dict[str, str] = {
        "hold": "1" if scale.get("hold") else "0",
        "paused": "1" if scale.get("paused") else "0",
    }
    if scale.get("target") is not None:
        fields["target"] = str(int(scale["target"]))
    enabled = "1" if (snapshot.get("ramp") or {}).get("enabled") else "0"
    event = SystemEvent(
        type="settings_changed",
        service="web",
        ts=now_ms(),
        extra={"setting": "revert", "snapshot": snapshot_id, "actor": actor, **fields},
    )
    # MULTI/EXEC, one slot ({system}): scale, the ramp switch and the event together or not at all.
    async with redis.pipeline(transaction=True) as pipe:
        if "target" not in fields:
            pipe.hdel(keys.scale, "target")
        pipe.hset(keys.scale, mapping=field_map(fields))
        pipe.hset(keys.ramp, "enabled", enabled)
        pipe.xadd(keys.stream_system, field_map(event.to_fields()))
        await pipe.execute()
    parts = {
        "scale": {"ok": True},
        "ramp": {"ok": True},
        "coach": await _put_coach(client, snapshot.get("coach") or {}),
    }
    at = now_ms()
    entry = {
        "type": "revert",
        "gate": None,
        "rollback_level": 2,
        "at": iso_ms(at),
        "ms": at,
        "actor": actor,
        "note": note,
        "snapshot": snapshot_id,
        "before": before["id"],
        "parts": parts,
    }
    await store.append(entry)
    if not all(p.get("ok") for p in parts.values()):
        raise RevertIncomplete(parts)
    return entry
