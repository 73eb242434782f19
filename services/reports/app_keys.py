"""Typed app state of the reports service."""

from aiohttp import web

from services.reports.alert_sender import AlertSender
from services.reports.alerts import AlertSettings
from services.reports.consumer import ReportsConsumer
from shared.shard_leases import ShardLeases

CONSUMER = web.AppKey("reports_consumer", ReportsConsumer)
LEASES = web.AppKey("reports_leases", ShardLeases)
ALERT_SETTINGS = web.AppKey("reports_alert_settings", AlertSettings)
ALERTS = web.AppKey("reports_alerts", AlertSender)
