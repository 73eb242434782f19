"""Typed application keys of the orchestrator (apart from app.py, so routes can import them)."""

from __future__ import annotations

from aiohttp import web

from orchestrator.fleet_state import FleetState
from orchestrator.redis_watch import RedisWatch
from orchestrator.settings import OrchestratorSettings
from orchestrator.supervisor import Supervisor

ORCH_SETTINGS = web.AppKey("orchestrator_settings", OrchestratorSettings)
FLEET = web.AppKey("fleet_state", FleetState)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
REDIS_WATCH = web.AppKey("redis_watch", RedisWatch)
