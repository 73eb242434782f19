"""The coach app: base app + routes + the shard leases, the loop and the meta trigger as
background tasks (they start after Redis and the service client, and stop before them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.coach import routes
from services.coach.app_keys import INSTANCE, LEASES, LOOP, META, STORE, TRAINING
from services.coach.loop import CoachLoop
from services.coach.meta_api import HttpMetaApi
from services.coach.meta_trigger import MetaTrigger
from services.coach.store import CoachStore
from services.coach.training_api import HttpTrainingApi
from shared import domain_metrics
from shared.app_factory import add_background_task, create_base_app
from shared.app_keys import CLIENT, KEYS, REDIS, SETTINGS
from shared.settings import FleetSettings
from shared.shard_leases import ShardLeases, ShardLeaseSettings, coach_role, new_member_token


def call_timeout(settings: FleetSettings) -> float:
    """Timeout of each call to training or meta (never above the fleet's bound)."""
    return min(settings.http_timeout_s, 5.0)


async def _coach_ctx(app: web.Application) -> AsyncIterator[None]:
    redis, keys, client = app[REDIS], app[KEYS], app[CLIENT]
    timeout = call_timeout(app[SETTINGS])
    leases = ShardLeases.from_settings(
        redis, keys, coach_role(keys), ShardLeaseSettings(), token=app[INSTANCE]
    )
    app[LEASES] = leases
    # The writes for a shard carry this replica's fencing token of it (services/coach/store.py).
    store = CoachStore(redis, keys, leases)
    await store.ensure_default_settings()
    app[STORE] = store
    app[TRAINING] = HttpTrainingApi(client, timeout_s=timeout)
    meta_api = HttpMetaApi(client, timeout_s=timeout)
    meta = MetaTrigger(store, meta_api, leases, consumer=app[INSTANCE])
    app[META] = meta
    app[LOOP] = CoachLoop(store, app[TRAINING], leases, meta=meta)
    yield


async def _run_leases(app: web.Application) -> None:
    await app[LEASES].run()


async def _run_loop(app: web.Application) -> None:
    await app[LOOP].run()


async def _run_meta(app: web.Application) -> None:
    await app[META].run()


def create_app(settings: FleetSettings) -> web.Application:
    app = create_base_app("coach", settings, use_client=True)
    # Settings of the leases checked before anything starts: a bad TOOLOO_SHARD_LEASE_* is a
    # clear error and a non-zero exit.
    ShardLeaseSettings()
    app[INSTANCE] = new_member_token()
    app.cleanup_ctx.append(_coach_ctx)
    # Cleanup runs in reverse: the loop and the meta trigger stop first, the leases (released on
    # the way out, so the other replicas take the shards at their next cycle) after them.
    add_background_task(app, _run_leases, "coach-leases")
    add_background_task(app, _run_meta, "coach-meta-trigger")
    add_background_task(app, _run_loop, "coach-loop")
    routes.register(app)
    domain_metrics.on_scrape(app, _scrape)
    return app


async def _scrape(app: web.Application) -> None:
    store = app[STORE]
    cover = await store.coverage()
    active = (await store.read_status()).active
    domain_metrics.set_coach(app, active, await store.rounds_per_min(), cover["ratio"])
