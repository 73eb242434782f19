"""The meta service's application: the base app plus the meta engine on the shared Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.meta import routes
from services.meta.app_keys import ENGINE
from services.meta.engine import MetaEngine
from services.meta.store import MetaStore
from shared.app_factory import create_base_app
from shared.app_keys import KEYS, REDIS, SCRIPTS
from shared.settings import FleetSettings


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    store = MetaStore(app[REDIS], app[KEYS], app[SCRIPTS])
    await store.load_scripts()
    app[ENGINE] = MetaEngine(store)
    yield


def create_app(settings: FleetSettings) -> web.Application:
    app = create_base_app("meta", settings)
    # After the Redis context (registered by the base app), which provides REDIS and SCRIPTS.
    app.cleanup_ctx.append(_engine_ctx)
    routes.register(app)
    return app
