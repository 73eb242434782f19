"""Running the ramp controller: its state in Redis, the switch, and the periodic check.

State: the `{system}:ramp` hash (shared/keys.py). Every write of it is one HSET (or one
MULTI/EXEC with its `settings_changed` event, for the switch), so a reader never sees half a
state. The check runs in every web replica, but only the one holding the ramp lease (SET NX PX,
renewed with the token-checked `lease_renew` script) acts, like onboarding in training. An
action is a scale change (system.set_scale: its own MULTI with its event) followed by the ramp
state's HSET; a crash between the two leaves the old state, and the next check decides again
from it and sets the same target (idempotent), so no action is half-applied for long.
Every action is recorded in the decision record with the actor `ramp`. Domain code: no aiohttp.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from services.web import memory_budget, snapshots, system
from services.web.gate_store import GateStore
from services.web.ramp import RampState, check_stages, parse_ints, reading, step
from shared.cancellation import stop_if_cancelled
from shared.clock import iso_ms, now_ms
from shared.events import SystemEvent
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis, field_map, text_map
from shared.scripts import script_source

ACTOR = "ramp"
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RampConfig:
    stages: list[int]
    holds_s: list[float]
    check_s: float


def config_of(stages: str, holds: str, check_s: float) -> RampConfig:
    """The settings' stages and holds, checked (BadStages: the web service does not start)."""
    checked = check_stages(parse_ints(stages, "stages"), parse_ints(holds, "hold_s"))
    return RampConfig(checked[0], checked[1], check_s)


def _state_of(raw: dict[str, str]) -> RampState:
    last = raw.get("last_action")
    return RampState(
        enabled=raw.get("enabled") == "1",
        stage=int(raw.get("stage") or -1),
        since_ms=int(raw.get("since_ms") or 0),
        green_since_ms=int(raw["green_since_ms"]) if raw.get("green_since_ms") else None,
        throttled=raw.get("throttled") == "1",
        last_action=orjson.loads(last) if last else None,
    )


def _fields(state: RampState, next_check: int | None) -> dict[str, str]:
    return {
        "enabled": "1" if state.enabled else "0",
        "stage": str(state.stage),
        "since_ms": str(state.since_ms),
        "green_since_ms": "" if state.green_since_ms is None else str(state.green_since_ms),
        "throttled": "1" if state.throttled else "0",
        "last_action": orjson.dumps(state.last_action).decode() if state.last_action else "",
        "next_check_ms": "" if next_check is None else str(next_check),
    }


async def load(
    redis: FleetRedis, keys: Keys, defaults: RampConfig
) -> tuple[RampState, RampConfig, dict[str, str]]:
    """The ramp's state and the stages it runs with (its own, set with the switch, or the
    settings')."""
    raw = text_map(await redis.hgetall(keys.ramp))
    cfg = defaults
    if raw.get("stages"):
        stages, holds = check_stages(
            parse_ints(raw["stages"], "stages"), parse_ints(raw.get("holds_s") or "3600", "hold_s")
        )
        cfg = RampConfig(stages, holds, defaults.check_s)
    return _state_of(raw), cfg, raw


def describe(state: RampState, cfg: RampConfig, raw: dict[str, str]) -> dict[str, Any]:
    stage = state.stage if 0 <= state.stage < len(cfg.stages) else None
    nxt = raw.get("next_check_ms")
    return {
        "enabled": state.enabled,
        "stages": cfg.stages,
        "holds_s": cfg.holds_s,
        "check_s": cfg.check_s,
        "stage": stage,
        "stage_target": cfg.stages[stage] if stage is not None else None,
        "since": iso_ms(state.since_ms) if stage is not None and state.since_ms else None,
        "green_since": iso_ms(state.green_since_ms) if state.green_since_ms else None,
        "throttled": state.throttled,
        "next_check": iso_ms(int(nxt)) if nxt and state.enabled else None,
        "last_action": state.last_action,
    }


async def set_enabled(
    redis: FleetRedis,
    keys: Keys,
    store: GateStore,
    defaults: RampConfig,
    *,
    enabled: bool,
    actor: str,
    stages: list[int] | None,
    holds_s: list[float] | None,
) -> dict[str, Any]:
    """Switch the ramp on (from the start: the next check places it on a stage) or off. Stages
    and holds given here replace the settings' for this ramp (checked first: BadStages, nothing
    written); the switch and its event are one MULTI/EXEC on the `{system}` slot."""
    custom: RampConfig | None = None
    if stages is not None:
        checked = check_stages(stages, holds_s or defaults.holds_s[:1])
        custom = RampConfig(checked[0], checked[1], defaults.check_s)
    elif holds_s is not None:
        checked = check_stages(defaults.stages, holds_s)
        custom = RampConfig(checked[0], checked[1], defaults.check_s)
    state, _, raw = await load(redis, keys, defaults)
    at = now_ms()
    new = (
        RampState(enabled=True, last_action=state.last_action)
        if enabled
        else replace(state, enabled=False)
    )
    fields = _fields(new, at if enabled else None)
    event_fields = {"setting": "ramp", "enabled": fields["enabled"], "actor": actor}
    if custom is not None:
        fields["stages"] = ",".join(str(s) for s in custom.stages)
        fields["holds_s"] = ",".join(str(int(h)) for h in custom.holds_s)
        event_fields["stages"] = fields["stages"]
    event = SystemEvent(type="settings_changed", service="web", ts=at, extra=event_fields)
    async with redis.pipeline(transaction=True) as pipe:
        if enabled and custom is None:
            pipe.hdel(keys.ramp, "stages", "holds_s")
        pipe.hset(keys.ramp, mapping=field_map(fields))
        pipe.xadd(keys.stream_system, field_map(event.to_fields()))
        await pipe.execute()
    await store.append(
        {
            "type": "ramp_enabled" if enabled else "ramp_disabled",
            "gate": None,
            "rollback_level": None,
            "at": iso_ms(at),
            "ms": at,
            "actor": actor,
            "stages": (custom or defaults).stages if enabled else None,
        }
    )
    state, cfg, raw = await load(redis, keys, defaults)
    return describe(state, cfg, raw)


class RampRunner:
    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        client: ServiceClient,
        store: GateStore,
        defaults: RampConfig,
        evaluate: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.client = client
        self.store = store
        self.defaults = defaults
        self.evaluate = evaluate
        self.token = uuid.uuid4().hex
        self.leader = False
        self._renew = redis.register_script(script_source("lease_renew"))
        self.lease_ms = max(3_000, int(defaults.check_s * 3_000))

    async def _hold_lease(self) -> bool:
        if self.leader:
            renewed = await self._renew(
                keys=[self.keys.ramp_lease], args=[self.token, self.lease_ms]
            )
            self.leader = int(renewed) == 1
        if not self.leader:
            got = await self.redis.set(self.keys.ramp_lease, self.token, nx=True, px=self.lease_ms)
            self.leader = bool(got)
        return self.leader

    async def check(self) -> dict[str, Any] | None:
        """One check; the recorded action, if any."""
        state, cfg, _ = await load(self.redis, self.keys, self.defaults)
        if not state.enabled or not await self._hold_lease():
            return None
        read, why = reading(await self.evaluate())
        scale = await system.read_scale(self.redis, self.keys)
        at = now_ms()
        decision = step(state, cfg.stages, cfg.holds_s, read, why, at, scale["target"])
        new = decision.state
        entry: dict[str, Any] | None = None
        if decision.action != "none" and decision.target is not None:
            target, hold = decision.target, decision.hold
            kind = f"ramp_{decision.action}"
            change = (
                decision.action != "start" or scale["target"] is None or scale["target"] < target
            )
            if change and not hold:
                budget = await memory_budget.budget(self.redis, self.keys, target)
                if not budget.fits:  # stay where it is, say why
                    new, change, kind = state, False, "ramp_blocked"
                    why = f"memory_budget: {budget.details()}"
            if change:
                if hold:
                    await snapshots.take(
                        self.redis, self.keys, self.client, ACTOR, None, "before ramp throttle"
                    )
                await system.set_scale(self.redis, self.keys, target, hold, ACTOR)
            entry = {
                "type": kind,
                "gate": None,
                "rollback_level": 1 if decision.action == "throttle" else None,
                "at": iso_ms(at),
                "ms": at,
                "actor": ACTOR,
                "stage": new.stage,
                "target": target,
                "hold": hold,
                "reading": read,
                "reason": decision.reason if kind != "ramp_blocked" else why,
            }
            await self.store.append(entry)
            new = replace(new, last_action=entry)
        next_check = at + int(cfg.check_s * 1000)
        # One HSET: the whole state at once. `enabled` is not written back: a switch-off
        # meanwhile must win over this check.
        fields = _fields(new, next_check)
        del fields["enabled"]
        await self.redis.hset(self.keys.ramp, mapping=field_map(fields))
        return entry

    async def run(self) -> None:
        """Until cancelled: a check every `check_s` (bounded by cancellation)."""
        while True:  # bounded by task cancellation at shutdown
            stop_if_cancelled()
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or a service away: the next check tries again
                log.warning("ramp_check_failed", error=str(exc)[:300])
            await asyncio.sleep(self.defaults.check_s)
