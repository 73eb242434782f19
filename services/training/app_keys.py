"""Typed app keys of the training service."""

from __future__ import annotations

from aiohttp import web

from services.training.onboarding import Onboarder
from services.training.settings import TrainingSettings
from services.training.store import TrainingStore

TRAINING_SETTINGS = web.AppKey("training_settings", TrainingSettings)
STORE = web.AppKey("training_store", TrainingStore)
ONBOARDER = web.AppKey("training_onboarder", Onboarder)
