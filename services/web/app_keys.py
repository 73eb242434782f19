"""Typed application keys of the web service."""

from __future__ import annotations

from aiohttp import web

from services.web.events import SnapshotCache
from services.web.gate_store import GateStore
from services.web.gates import GateTable
from services.web.proxy import Forwarder, ProxyTable
from services.web.ramp_runner import RampConfig, RampRunner

GATE_TABLE = web.AppKey("gate_table", GateTable)
PROXY_TABLE = web.AppKey("proxy_table", ProxyTable)
FORWARDER = web.AppKey("forwarder", Forwarder)
SNAPSHOTS = web.AppKey("snapshots", SnapshotCache)
# Each local /api/ path and the methods it takes.
LOCAL_API_ROUTES = web.AppKey("local_api_routes", dict[str, set[str]])
GATE_STORE = web.AppKey("gate_store", GateStore)
RAMP_CONFIG = web.AppKey("ramp_config", RampConfig)
RAMP_RUNNER = web.AppKey("ramp_runner", RampRunner)
