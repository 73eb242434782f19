"""The reports app: the stream consumer as a background task, and the read endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.reports import alerts, routes
from services.reports.alert_sender import AlertSender
from services.reports.app_keys import ALERT_SETTINGS, ALERTS, CONSUMER, LEASES
from services.reports.consumer import ReportsConsumer, StreamTrimmer, consumer_name
from shared.app_factory import add_background_task, create_base_app
from shared.app_keys import KEYS, REDIS, SETTINGS
from shared.replicas import ReplicaSettings
from shared.settings import FleetSettings
from shared.shard_leases import ShardLeases, ShardLeaseSettings, reports_role


async def consumer_ready(app: web.Application) -> str | None:
    consumer = app.get(CONSUMER)
    if consumer is None or not consumer.state.running:
        return "reports consumer not running"
    return None


async def _consumer_ctx(app: web.Application) -> AsyncIterator[None]:
    name = consumer_name(app[SETTINGS].port_of("reports"), ReplicaSettings().replica)
    # Replicas split the shard streams through per-shard leases, as the coach's replicas do; the
    # consumer follows the leases' changes at run time (claiming a gained shard's pending
    # entries). Counting stays exactly once whoever reads an entry (reports_apply.lua), so the
    # leases only spread the work; a lone replica ends up holding every shard.
    leases = ShardLeases.from_settings(
        app[REDIS], app[KEYS], reports_role(app[KEYS]), ShardLeaseSettings()
    )
    app[LEASES] = leases
    app[CONSUMER] = ReportsConsumer(app[REDIS], app[KEYS], name, leases)
    # The one alert sender is the holder of shard 0's lease (services/reports/alert_sender.py).
    app[ALERTS] = AlertSender(
        app[REDIS],
        app[KEYS],
        app[ALERT_SETTINGS],
        app[SETTINGS],
        lambda: 0 in leases.owned(),
        name,
    )
    yield


async def _run_leases(app: web.Application) -> None:
    await app[LEASES].run()


async def _consume(app: web.Application) -> None:
    await app[CONSUMER].run()


async def _send_alerts(app: web.Application) -> None:
    await app[ALERTS].run()


async def _trim(app: web.Application) -> None:
    settings = app[SETTINGS]
    trimmer = StreamTrimmer(
        app[REDIS],
        app[KEYS],
        cap=settings.stream_cap,
        retention_ms=int(settings.stream_retention_s * 1000),
        # The consumer's shards: a replica trims the streams it reads (and the system stream).
        ownership=app[CONSUMER].ownership,
    )
    await trimmer.run(settings.stream_trim_interval_s)


def create_app(settings: FleetSettings | None = None) -> web.Application:
    app = create_base_app("reports", settings, ready_checks=[consumer_ready])
    app[ALERT_SETTINGS] = alerts.load_settings()  # a bad webhook URL stops the start
    routes.register(app)
    # After the Redis context (registered by the base app), which provides REDIS.
    app.cleanup_ctx.append(_consumer_ctx)
    # Cleanup runs in reverse: the consumer and the trimmer stop before the leases are given back.
    add_background_task(app, _run_leases, "reports-leases")
    add_background_task(app, _consume, "reports-consumer")
    add_background_task(app, _trim, "stream-trimmer")
    add_background_task(app, _send_alerts, "alert-sender")
    return app
