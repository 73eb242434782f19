"""Web endpoints the original fleet's Control Room pages and scripts call: `/system/status`,
the priority modes and `/favicon.ico`. Kept apart from the gateway's own system routes.

Priority here is the coach's share of training against interactive rounds (a person's or a
script's `round` and `boost` calls), set through the coach's fast lane, which is its rush mode:
- chat priority: the fast lane off, so the loop runs at its normal pace (the top-level
  intervalMs, microBatchesPerTick, batchSize) and training answers interactive rounds first;
- background priority: the fast lane on with its own (rush) values, and the coach started.
The original also stopped the coach for chat priority and set a budget policy; a stopped coach
would leave the whole population uncoached, and the budget service is not part of this fleet.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from services.web import events
from services.web.models import EmptyBody
from shared.app_keys import CLIENT, SETTINGS
from shared.errors import UpstreamError
from shared.fleet import NAMES
from shared.http_client import ServiceClient
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import parse_body

COACH = "/api/v1/auto-coach"
STATUS_TIMEOUT_S = 1.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def system_status(request: web.Request) -> web.Response:
    """The original's `/system/status`: ports, the orchestrator, each service's health and the
    coach's state (the original's was always inactive), plus the fleet's phase in `status`."""
    client = request.app[CLIENT]
    settings = request.app[SETTINGS]
    probed = [n for n in NAMES if n != "web"]
    orch, procs, coach, *health = await asyncio.gather(
        events.fetch(client, "orchestrator", "/api/v1/system/status", STATUS_TIMEOUT_S),
        events.fetch(client, "orchestrator", "/api/v1/system/processes", STATUS_TIMEOUT_S),
        events.fetch(client, "coach", f"{COACH}/status", STATUS_TIMEOUT_S),
        *(events.fetch(client, n, "/health", STATUS_TIMEOUT_S) for n in probed),
    )
    services = {n: "error" not in h for n, h in zip(probed, health, strict=True)}
    running = "error" not in orch
    coach_status = coach.get("status") if "error" not in coach else None
    return ok(
        time=_now(),
        ports={n: urlsplit(settings.url_of(n)).port for n in NAMES},
        orchestrator={"running": running, "pid": (procs.get("orchestrator") or {}).get("pid")},
        services=services,
        autoCoach=(
            {
                "active": bool(coach_status.get("active")),
                "lastAction": coach_status.get("lastAction"),
            }
            if isinstance(coach_status, dict)
            else {"active": False, "error": coach.get("error")}
        ),
        status={
            "phase": orch.get("phase") if running else None,
            "healthy": all(services.values()),
            "down": sorted(n for n, up in services.items() if not up),
        },
    )


async def _coach(client: ServiceClient, method: str, path: str, body: Any = None) -> Any:
    status, answer = await client.request("coach", method, f"{COACH}{path}", json=body)
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise UpstreamError(
            f"coach answered {status} to {method} {COACH}{path}",
            details={"service": "coach", "status": status, "error": error},
        )
    return answer


async def _set_fast_lane(client: ServiceClient, enable: bool) -> dict[str, Any]:
    # The fast-lane POST is a partial update: only the switch changes.
    answer = await _coach(client, "POST", "/fast-lane", {"enable": enable})
    fast_lane: dict[str, Any] = answer["fastLane"]
    return fast_lane


async def priority_chat(request: web.Request) -> web.Response:
    """Interactive rounds first: the coach's fast lane (rush mode) off; the coach keeps
    coaching at its normal pace."""
    await parse_body(request, EmptyBody)
    fast_lane = await _set_fast_lane(request.app[CLIENT], False)
    return ok(mode="chat-priority", coach={"fastLane": fast_lane})


async def priority_background(request: web.Request) -> web.Response:
    """The coach first: its fast lane (rush mode) on, and the coach started."""
    await parse_body(request, EmptyBody)
    client = request.app[CLIENT]
    fast_lane = await _set_fast_lane(client, True)
    started = await _coach(client, "POST", "/start", {})
    return ok(
        mode="background-priority",
        coach={"fastLane": fast_lane, "active": started["status"].get("active")},
    )


async def favicon(request: web.Request) -> web.Response:
    """No icon: 204, so browsers stop asking and the logs stay free of 404s."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def declare(routes: ApiRoutes) -> None:
    routes.get("/system/status", summary="Ports, services' health, orchestrator, coach")(
        system_status
    )
    upstream = {502: "The coach is down", 504: "The coach did not answer in time"}
    routes.post(
        "/api/v1/system/priority/chat",
        body=EmptyBody,
        summary="Interactive rounds first: the coach's fast lane off",
        responses=upstream,
    )(priority_chat)
    routes.post(
        "/api/v1/system/priority/background",
        body=EmptyBody,
        summary="The coach first: its fast lane on, the coach started",
        responses=upstream,
    )(priority_background)
    routes.get("/favicon.ico", summary="No icon (204)", include_in_schema=False)(favicon)
