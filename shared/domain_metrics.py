"""The fleet's domain metrics on `/metrics`, for the Prometheus rules and the Grafana dashboard in
deploy/: rounds and round latency (training), meta trigger delay (meta), coach throughput and
coverage (coach), learners (training) and gate verdicts (web).

Each metric lives in the registry of the service that measures it, created on first use, so a
service exports only its own. Counters and histograms are updated where the event happens, with one
call from the route; gauges that are a reading of Redis (learners, coach throughput, gates) are
refreshed when Prometheus scrapes (`on_scrape`), bounded by SCRAPE_REFRESH_TIMEOUT_S, so they
cost nothing between scrapes and are never older than the scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.app_keys import METRICS
from shared.logging import get_logger

log = get_logger(__name__)

SCRAPE_REFRESH_TIMEOUT_S = 3.0

# Seconds; the rollout's thresholds (round p95 150 ms, meta trigger delay p50 150 ms) fall
# between buckets that are close enough to tell them apart.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)

Refresher = Callable[[web.Application], Awaitable[None]]

SCRAPE_REFRESHERS = web.AppKey("scrape_refreshers", list[Refresher])
_METRICS = web.AppKey("domain_metrics", dict[str, Any])


def _registry(app: web.Application) -> CollectorRegistry:
    return app[METRICS].registry


def _metric(app: web.Application, name: str, make: Callable[[CollectorRegistry], Any]) -> Any:
    made = app.get(_METRICS)
    if made is None:
        made = {}
        app[_METRICS] = made
    if name not in made:
        made[name] = make(_registry(app))
    return made[name]


def on_scrape(app: web.Application, refresher: Refresher) -> None:
    """Run `refresher(app)` before each `/metrics` answer (e.g. to set gauges from Redis)."""
    if SCRAPE_REFRESHERS not in app:
        app[SCRAPE_REFRESHERS] = []
    app[SCRAPE_REFRESHERS].append(refresher)


async def refresh(app: web.Application) -> None:
    """Every refresher, together, each bounded; a failure leaves its gauges as they were."""
    refreshers = app.get(SCRAPE_REFRESHERS) or []
    if not refreshers:
        return
    results = await asyncio.gather(
        *(asyncio.wait_for(r(app), SCRAPE_REFRESH_TIMEOUT_S) for r in refreshers),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            log.warning("metrics_refresh_failed", error=f"{result.__class__.__name__}: {result}")


# ---- training --------------------------------------------------------------------------------


def rounds_committed(app: web.Application, count: int, seconds: float, kind: str) -> None:
    """`count` rounds committed by one call (`kind` single or batch) that took `seconds`."""
    if count <= 0:
        return
    rounds = _metric(
        app,
        "rounds",
        lambda r: Counter("tooloo_rounds", "Training rounds committed", ["kind"], registry=r),
    )
    latency = _metric(
        app,
        "round_latency",
        lambda r: Histogram(
            "tooloo_round_duration_seconds",
            "Time to run and commit a round call (one round, or a batch)",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
    )
    rounds.labels(kind).inc(count)
    latency.labels(kind).observe(seconds)


def set_learners(app: web.Application, count: int) -> None:
    gauge = _metric(
        app, "learners", lambda r: Gauge("tooloo_learners", "Learners in the fleet", registry=r)
    )
    gauge.set(count)


# ---- meta ------------------------------------------------------------------------------------


def meta_triggers_served(app: web.Application, results: Iterable[Any]) -> None:
    """The trigger delay (readiness → meta answered) of each result that carries one."""
    hist = _metric(
        app,
        "meta_delay",
        lambda r: Histogram(
            "tooloo_meta_trigger_delay_seconds",
            "From a learner's readiness to meta-learning run for it",
            buckets=LATENCY_BUCKETS,
            registry=r,
        ),
    )
    for result in results:
        delay = result.get("delay_ms") if isinstance(result, dict) else None
        if isinstance(delay, int | float) and delay >= 0:
            hist.observe(delay / 1000)


# ---- coach -----------------------------------------------------------------------------------


def set_coach(
    app: web.Application, active: bool, rounds_per_min: float, coverage: float | None
) -> None:
    active_g = _metric(
        app, "coach_active", lambda r: Gauge("tooloo_coach_active", "1 while coaching", registry=r)
    )
    tput = _metric(
        app,
        "coach_tput",
        lambda r: Gauge(
            "tooloo_coach_throughput_rounds_per_minute",
            "Rounds the coach ran over the last minute",
            registry=r,
        ),
    )
    cover = _metric(
        app,
        "coach_coverage",
        lambda r: Gauge(
            "tooloo_coach_coverage_ratio",
            "Share of the learners needing coaching that were coached recently (1 when none need it)",
            registry=r,
        ),
    )
    active_g.set(1 if active else 0)
    tput.set(rounds_per_min)
    cover.set(1.0 if coverage is None else coverage)


# ---- web: the rollout gates ------------------------------------------------------------------


def set_gates(app: web.Application, result: dict[str, Any]) -> None:
    """One series per gate: passed (1/0) and its verdict (a label, value 1)."""
    passed = _metric(
        app,
        "gate_passed",
        lambda r: Gauge(
            "tooloo_gate_passed", "1 when the gate passes", ["gate", "name"], registry=r
        ),
    )
    verdict = _metric(
        app,
        "gate_verdict",
        lambda r: Gauge(
            "tooloo_gate_verdict", "The gate's current verdict", ["gate", "verdict"], registry=r
        ),
    )
    count = _metric(
        app, "gates_passed", lambda r: Gauge("tooloo_gates_passed", "Gates passed", registry=r)
    )
    verdict.clear()  # a verdict that changed leaves no stale series behind
    n = 0
    for gate in result.get("gates") or []:
        number = str(gate.get("number"))
        ok = bool(gate.get("passed"))
        n += ok
        passed.labels(number, str(gate.get("name"))).set(1 if ok else 0)
        verdict.labels(number, str(gate.get("verdict"))).set(1)
    count.set(n)
