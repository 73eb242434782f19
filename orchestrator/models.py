"""Request models of the orchestrator's control API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.validation import StrictModel

StepName = Literal["training", "meta", "coach"]


class ServiceAction(StrictModel):
    """Body of POST /api/v1/system/services/{name}/restart|stop|start (no options yet)."""


class PrearmRequest(StrictModel):
    # Which steps to run (in pre-arm order); all of them when absent.
    steps: list[StepName] | None = Field(None, min_length=1, max_length=3)
