"""The coach app: base app + routes + the lease, the loop and the meta trigger as background
tasks (they start after Redis and the service client, and stop before them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.coach import routes
from services.coach.app_keys import INSTANCE, LEASE, LOOP, META, call_timeout
from services.coach.lease import Lease, new_instance_token
from services.coach.loop import CoachLoop
from services.coach.meta_trigger import MetaTrigger
from services.coach.settings_store import ensure_defaults
from shared.app_factory import (
    CLIENT,
    KEYS,
    REDIS,
    SCRIPTS,
    SETTINGS,
    add_background_task,
    create_base_app,
)
from shared.settings import FleetSettings


async def _coach_ctx(app: web.Application) -> AsyncIterator[None]:
    redis, keys, scripts, client = app[REDIS], app[KEYS], app[SCRIPTS], app[CLIENT]
    await ensure_defaults(redis, keys)
    lease = Lease(redis, keys, scripts, token=app[INSTANCE])
    timeout = call_timeout(app[SETTINGS])
    app[LEASE] = lease
    meta = MetaTrigger(redis, keys, client, lease, consumer=app[INSTANCE], call_timeout_s=timeout)
    app[META] = meta
    app[LOOP] = CoachLoop(redis, keys, scripts, client, lease, call_timeout_s=timeout, meta=meta)
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
    return app
