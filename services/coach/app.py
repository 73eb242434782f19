"""The coach app: base app + routes + the lease, the loop and the meta trigger as background
tasks (they start after Redis and the service client, and stop before them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.coach import routes
from services.coach.app_keys import INSTANCE, LEASE, LOOP, META, STORE, TRAINING
from services.coach.lease import Lease, new_instance_token
from services.coach.loop import CoachLoop
from services.coach.meta_api import HttpMetaApi
from services.coach.meta_trigger import MetaTrigger
from services.coach.store import CoachStore
from services.coach.training_api import HttpTrainingApi
from shared import domain_metrics
from shared.app_factory import add_background_task, create_base_app
from shared.app_keys import CLIENT, KEYS, REDIS, SCRIPTS, SETTINGS
from shared.settings import FleetSettings


def call_timeout(settings: FleetSettings) -> float:
    """Timeout of each call to training or meta (never above the fleet's bound)."""
    return min(settings.http_timeout_s, 5.0)


async def _coach_ctx(app: web.Application) -> AsyncIterator[None]:
    redis, keys, client = app[REDIS], app[KEYS], app[CLIENT]
    timeout = call_timeout(app[SETTINGS])
    lease = Lease(redis, keys, app[SCRIPTS], token=app[INSTANCE])
    app[LEASE] = lease
    # The leader-only writes carry the lease's fencing token (see services/coach/store.py).
    store = CoachStore(redis, keys, fencing=lease)
    # Before anything reads or writes them: keys from before the `{coach}` tag are moved, so an
    # upgraded fleet keeps its stored settings (idempotent; concurrent replicas are safe).
    await store.migrate_keys()
    await store.ensure_default_settings()
    app[STORE] = store
    app[TRAINING] = HttpTrainingApi(client, timeout_s=timeout)
    meta = MetaTrigger(store, HttpMetaApi(client, timeout_s=timeout), lease, consumer=app[INSTANCE])
    app[META] = meta
    app[LOOP] = CoachLoop(store, app[TRAINING], lease, meta=meta)
    yield


async def _run_lease(app: web.Application) -> None:
    await app[LEASE].run()


async def _run_loop(app: web.Application) -> None:
    await app[LOOP].run()


async def _run_meta(app: web.Application) -> None:
    await app[META].run()


def create_app(settings: FleetSettings) -> web.Application:
    app = create_base_app("coach", settings, use_client=True)
    app[INSTANCE] = new_instance_token()
    app.cleanup_ctx.append(_coach_ctx)
    # Cleanup runs in reverse: the loop and the meta trigger stop first, the lease (released on
    # the way out, so a standby takes over at once) after them.
    add_background_task(app, _run_lease, "coach-lease")
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
