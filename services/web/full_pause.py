"""The full pause (rollback level 4): onboarding, the coach and meta stopped together, and
resumed together, recorded in the decision record with its actor.

Order: a pause stops what creates work first (onboarding, then the coach that drives rounds
and meta triggers, then meta); a resume starts them in the reverse order, so no part runs
against one still paused. Each part is one call that persists in Redis (the coach's `active`,
meta's paused flag, the scale hash's `paused`), so a paused fleet stays paused through restarts
of its services. Domain code: no aiohttp (the service client is the fleet's own).
"""

from __future__ import annotations

from typing import Any

from services.web import system
from services.web.gate_store import GateStore
from shared.clock import iso_ms, now_ms
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.redis_types import FleetRedis

CALL_TIMEOUT_S = 3.0
PAUSE_CALLS = (
    ("coach", "/api/v1/auto-coach/stop"),
    ("meta", "/api/v4/meta-learning/pause"),
)
RESUME_CALLS = (
    ("meta", "/api/v4/meta-learning/resume"),
    ("coach", "/api/v1/auto-coach/start"),
)


class PartFailed(Exception):
    def __init__(self, parts: dict[str, Any]) -> None:
        failed = [name for name, part in parts.items() if not part.get("ok")]
        super().__init__(f"not every part of the fleet answered: {', '.join(failed)}")
        self.parts = parts


async def _call(client: ServiceClient, service: str, path: str) -> dict[str, Any]:
    try:
        status, body = await client.post(service, path, {}, timeout_s=CALL_TIMEOUT_S)
    except Exception as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"[:300]}
    if status != 200:
        err = body.get("error") if isinstance(body, dict) else None
        message = err.get("message") if isinstance(err, dict) else f"HTTP {status}"
        return {"ok": False, "status": status, "error": str(message)[:300]}
    return {"ok": True}


async def set_full_pause(
    redis: FleetRedis,
    keys: Keys,
    client: ServiceClient,
    store: GateStore,
    paused: bool,
    actor: str,
    note: str | None,
) -> dict[str, Any]:
    """Pause (or resume) all three parts; record the outcome with its actor, even a partial
    one (then PartFailed: the operator sees which part did not follow and can retry; every
    part is idempotent)."""
    parts: dict[str, Any] = {}
    if paused:
        await system.set_paused(redis, keys, True)
        parts["onboarding"] = {"ok": True}
        for service, path in PAUSE_CALLS:
            parts[service] = await _call(client, service, path)
    else:
        for service, path in RESUME_CALLS:
            parts[service] = await _call(client, service, path)
        await system.set_paused(redis, keys, False)
        parts["onboarding"] = {"ok": True}
    at = now_ms()
    entry = {
        "type": "full_pause" if paused else "full_resume",
        "gate": None,
        "rollback_level": 4 if paused else None,
        "at": iso_ms(at),
        "ms": at,
        "actor": actor,
        "note": note,
        "parts": parts,
    }
    await store.append(entry)
    if not all(p.get("ok") for p in parts.values()):
        raise PartFailed(parts)
    return entry
