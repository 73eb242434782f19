"""Query models of the reports endpoints (bounded; unknown parameters refused → 422)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.reports.queries import SERIES_METRICS
from shared.validation import QueryModel

SeriesMetric = Literal[*SERIES_METRICS]  # type: ignore[valid-type]


class WindowQuery(QueryModel):
    window: int = Field(60, ge=60, le=86_400, description="window in seconds")


class TimeseriesQuery(QueryModel):
    metric: SeriesMetric = Field(description="which per-minute series")
    minutes: int = Field(60, ge=1, le=1440)


class ExportQuery(QueryModel):
    format: Literal["csv", "json"] = "json"
    minutes: int = Field(60, ge=1, le=1440)


class ComprehensiveQuery(QueryModel):
    window: int = Field(60, ge=60, le=86_400, description="window in seconds")
    # Sent by the original fleet's clients: JSON is the one format of this report, and
    # `details` adds the per-service table, error rate and uptime.
    format: Literal["json"] = "json"
    details: bool = False


class DeliveriesQuery(QueryModel):
    limit: int = Field(50, ge=1, le=1000, description="newest delivery attempts to list")
