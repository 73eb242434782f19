"""The coach's typed app keys (shared by app.py and routes.py)."""

from __future__ import annotations

from aiohttp import web

from services.coach.loop import CoachLoop
from services.coach.meta_trigger import MetaTrigger
from services.coach.store import CoachStore
from services.coach.training_api import HttpTrainingApi
from shared.shard_leases import ShardLeases

INSTANCE = web.AppKey("coach_instance", str)
STORE = web.AppKey("coach_store", CoachStore)
TRAINING = web.AppKey("coach_training", HttpTrainingApi)
LEASES = web.AppKey("coach_leases", ShardLeases)
LOOP = web.AppKey("coach_loop", CoachLoop)
META = web.AppKey("coach_meta_trigger", MetaTrigger)
