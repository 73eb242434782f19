"""What the gates read beyond the reports metrics: the coach integration (the Phase 3 gate) and
gate 1's pre-flight checklist, from the answers the web service gathers (services/web/
gate_inputs.py). Pure: no I/O, no aiohttp.

Every reading is 1 (holds), 0 (does not) or None (the source did not answer: not measured,
never guessed). Items of the checklist the fleet cannot see (the provider budget service, the
incident channel, a backup dry run, a restore after a restart) are not here: they are sign-off
criteria of gate 1 (services/web/gates.json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# What pre-arm sets on a fleet never configured; another setting is the operator's decision.
DEFAULT_FAST_LANE = {"enabled": True, "weight": 2, "intervalMs": 600}
# "A boost of 3 rounds": a boost of more rounds is judged at its pace per 3 rounds; a shorter one
# says nothing about 3 rounds and is left out.
BOOST_ROUNDS = 3
# The recent boosts judged: the newest this many, none older than RECENT_BOOST_MS.
RECENT_BOOSTS = 5
RECENT_BOOST_MS = 24 * 3600 * 1000
# Process states of a service that is up (EXTERNAL: observe mode, the platform supervises it).
UP_STATES = ("running", "external")


def _ok(body: Any) -> Mapping[str, Any] | None:
    """A service's answer, or None when the fetch failed (its `error` entry)."""
    if not isinstance(body, Mapping) or "error" in body:
        return None
    return body


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bit(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def boost_reading(boosts: Any, now_ms: int) -> dict[str, Any]:
    """The recent real boosts (the coach's record of its boost endpoint): how many, and the
    slowest one's duration scaled to 3 rounds. `count` 0 is "no boost yet": pending."""
    judged: list[dict[str, Any]] = []
    for b in boosts if isinstance(boosts, list) else []:
        if not isinstance(b, Mapping):
            continue
        rounds, ms, at = _number(b.get("rounds")), _number(b.get("ms")), _number(b.get("at_ms"))
        if rounds is None or ms is None or at is None:
            continue
        if rounds < BOOST_ROUNDS or now_ms - at > RECENT_BOOST_MS:
            continue
        judged.append({"rounds": int(rounds), "ms": ms, "at_ms": int(at)})
        if len(judged) >= RECENT_BOOSTS:
            break
    if not judged:
        return {"count": 0, "worst_3_rounds_ms": None, "last_ms": None}
    worst = max(b["ms"] * BOOST_ROUNDS / b["rounds"] for b in judged)
    return {
        "count": len(judged),
        "worst_3_rounds_ms": round(worst, 1),
        "last_ms": judged[0]["ms"],
        "last_rounds": judged[0]["rounds"],
    }


def fast_lane_reading(coach_status: Mapping[str, Any] | None) -> dict[str, Any]:
    """`default` 1 when the fast lane is on at 2/600; otherwise `changed`: the operator's setting
    (only the coach's API changes it; pre-arm never overrides a stored one), shown as such."""
    lane = coach_status.get("fastLane") if coach_status else None
    if not isinstance(lane, Mapping):
        return {"default": None, "changed": False, "setting": None, "enabled_weight_ok": None}
    current = {k: lane.get(k) for k in DEFAULT_FAST_LANE}
    is_default = current == DEFAULT_FAST_LANE
    enabled = lane.get("enabled") is True
    weight = lane.get("weight")
    setting = f"on, weight {weight}, interval {lane.get('intervalMs')} ms" if enabled else "off"
    return {
        "default": int(is_default),
        "changed": not is_default,
        "setting": setting,
        "enabled_weight_ok": int(enabled and isinstance(weight, int) and weight >= 1),
    }


def integration_readings(coach_body: Any, status_body: Any, now_ms: int) -> dict[str, Any]:
    """The Phase 3 gate's readings: coach active, fast lane, recent boosts, pre-arm armed."""
    coach = _ok(coach_body)
    coach_status = coach.get("status") if coach else None
    coach_status = coach_status if isinstance(coach_status, Mapping) else None
    status = _ok(status_body)
    armed = status.get("armed") if status else None
    return {
        # A coach that does not answer is not active: the fleet asked and saw it.
        "coach_active": _bit(coach_status is not None and coach_status.get("active") is True),
        "fast_lane": fast_lane_reading(coach_status),
        "boost": boost_reading(coach_status.get("boosts") if coach_status else None, now_ms),
        "prearm_armed": _bit(armed is True) if status is not None else None,
        "prearm_phase": status.get("phase") if status else None,
    }


def services_healthy(processes_body: Any) -> tuple[int | None, list[str]]:
    """1 when every process the orchestrator lists is up and healthy; the others by name."""
    body = _ok(processes_body)
    rows = body.get("processes") if body else None
    if not isinstance(rows, list) or not rows:
        return None, []
    bad = [
        str(p.get("name"))
        for p in rows
        if isinstance(p, Mapping) and (p.get("state") not in UP_STATES or p.get("healthy") is False)
    ]
    return int(not bad), bad


def redis_reading(
    nodes: Sequence[Mapping[str, Any]] | None, wait_replicas: int | None
) -> dict[str, Any]:
    """Redis reachable on every master, the append-only file on and writing, and, when
    TOOLOO_COMMIT_WAIT_REPLICAS asks for replicas, every master with at least that many.
    `nodes`: each master's INFO (persistence + replication); None: Redis did not answer."""
    if nodes is None:
        return {"ok": 0, "reason": "Redis did not answer"}
    problems = []
    for info in nodes:
        name = info.get("node", "redis")
        if int(info.get("aof_enabled", 0)) != 1:
            problems.append(f"{name}: append-only file off")
        elif info.get("aof_last_write_status", "ok") != "ok":
            problems.append(f"{name}: append-only writes failing")
        if wait_replicas and int(info.get("connected_slaves", 0)) < wait_replicas:
            problems.append(f"{name}: {info.get('connected_slaves', 0)} replicas < {wait_replicas}")
    return {"ok": int(not problems), "reason": "; ".join(problems) or None}


def preflight_readings(
    *,
    processes_body: Any,
    integration: Mapping[str, Any],
    redis: Mapping[str, Any],
    shards_recorded: bool | None,
    memory_alert_pct: float,
    reports_status_body: Any,
    alerting_body: Any,
) -> dict[str, Any]:
    """Gate 1's pre-flight checklist, as far as the fleet can check it. Reports' status says
    whether metrics are being recorded (its consumer running, no stream lagging) and how full
    Redis's fullest master is; a Redis without maxmemory has no headroom to measure."""
    healthy, unhealthy = services_healthy(processes_body)
    reports_status = _ok(reports_status_body)
    status = reports_status.get("status") if reports_status else None
    recording, memory_pct = None, None
    if isinstance(status, Mapping):
        alerts = status.get("alerts")
        alerts = alerts if isinstance(alerts, list) else []
        lagging = [a for a in alerts if isinstance(a, str) and a.startswith("stream_lag")]
        recording = int(status.get("ok") is True and not lagging)
        memory = status.get("redis_memory")
        pct = memory.get("used_pct") if isinstance(memory, Mapping) else None
        memory_pct = float(pct) if isinstance(pct, int | float) else None
    alerting = _ok(alerting_body)
    armed = None
    if alerting is not None:
        webhooks = alerting.get("webhooks")
        armed = int(isinstance(webhooks, int) and webhooks > 0)
    return {
        "services_healthy": healthy,
        "unhealthy": unhealthy,
        "fast_lane_enabled": integration["fast_lane"].get("enabled_weight_ok"),
        "redis_ok": redis.get("ok"),
        "redis_reason": redis.get("reason"),
        "shards_recorded": _bit(shards_recorded),
        "memory_headroom": None if memory_pct is None else int(memory_pct < memory_alert_pct),
        "memory_used_pct": memory_pct,
        "reports_recording": recording,
        "alerting_armed": armed,
    }
