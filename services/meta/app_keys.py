"""Typed app state of the meta service."""

from aiohttp import web

from services.meta.engine import MetaEngine

ENGINE = web.AppKey("meta_engine", MetaEngine)
