"""Typed app state of the reports service."""

from aiohttp import web

from services.reports.consumer import ReportsConsumer
from shared.shard_leases import ShardLeases

CONSUMER = web.AppKey("reports_consumer", ReportsConsumer)
LEASES = web.AppKey("reports_leases", ShardLeases)
