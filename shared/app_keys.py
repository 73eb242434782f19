"""The `web.AppKey`s every service's application carries, set by `create_base_app`.

A leaf module: it names the keys and their types and imports nothing that builds an app, so the
factory, the health/ready/metrics handlers and the services can all read the same keys without
importing each other. A service's own keys live in its own `app_keys.py`.
"""

from __future__ import annotations

from aiohttp import web

from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.middlewares import RequestMetrics
from shared.redis_types import FleetRedis
from shared.request_stats import RequestStats
from shared.scripts import Scripts
from shared.settings import FleetSettings

SERVICE = web.AppKey("service", str)
SETTINGS = web.AppKey("settings", FleetSettings)
KEYS = web.AppKey("keys", Keys)
REDIS: web.AppKey[FleetRedis] = web.AppKey("redis")
SCRIPTS = web.AppKey("scripts", Scripts)
CLIENT = web.AppKey("client", ServiceClient)
METRICS = web.AppKey("metrics", RequestMetrics)
STATS = web.AppKey("stats", RequestStats)
# Wall-clock start of the app (for /health's uptime), and the checks /ready runs.
APP_STARTED = web.AppKey("started_at", float)
READY_CHECKS = web.AppKey("ready_checks", list)
