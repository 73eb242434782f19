"""The coach's typed app keys (shared by app.py and routes.py)."""

from __future__ import annotations

from aiohttp import web

from services.coach.lease import Lease
from services.coach.loop import CoachLoop
from services.coach.meta_trigger import MetaTrigger
from shared.settings import FleetSettings

INSTANCE = web.AppKey("coach_instance", str)
LEASE = web.AppKey("coach_lease", Lease)
LOOP = web.AppKey("coach_loop", CoachLoop)
META = web.AppKey("coach_meta_trigger", MetaTrigger)


def call_timeout(settings: FleetSettings) -> float:
    """Timeout of each call to training or meta (never above the fleet's bound)."""
    return min(settings.http_timeout_s, 5.0)
