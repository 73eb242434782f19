"""Typed app keys of the training service."""

from __future__ import annotations

from aiohttp import web

from services.training.onboarding import Onboarder
from services.training.rounds import TrainingStore

STORE = web.AppKey("training_store", TrainingStore)
ONBOARDER = web.AppKey("training_onboarder", Onboarder)
