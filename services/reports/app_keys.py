"""Typed app state of the reports service."""

from aiohttp import web

from services.reports.consumer import ReportsConsumer

CONSUMER = web.AppKey("reports_consumer", ReportsConsumer)
