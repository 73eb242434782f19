"""The reports app: the stream consumer as a background task, and the read endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.reports import routes
from services.reports.app_keys import CONSUMER
from services.reports.consumer import ReportsConsumer, consumer_name
from shared.app_factory import add_background_task, create_base_app
from shared.app_keys import KEYS, REDIS, SCRIPTS, SETTINGS
from shared.settings import FleetSettings


async def consumer_ready(app: web.Application) -> str | None:
    consumer = app.get(CONSUMER)
    if consumer is None or not consumer.state.running:
        return "reports consumer not running"
    return None


def create_app(settings: FleetSettings | None = None) -> web.Application:
    app = create_base_app("reports", settings, ready_checks=[consumer_ready])
    routes.register(app)

    async def consumer_ctx(app: web.Application) -> AsyncIterator[None]:
        name = consumer_name(app[SETTINGS].port_of("reports"))
        app[CONSUMER] = ReportsConsumer(app[REDIS], app[SCRIPTS], app[KEYS], name)
        yield

    app.cleanup_ctx.append(consumer_ctx)

    async def consume(app: web.Application) -> None:
        await app[CONSUMER].run()

    add_background_task(app, consume, "reports-consumer")
    return app
