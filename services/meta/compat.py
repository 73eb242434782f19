"""Meta endpoints the original fleet's clients call that the meta API had no use for: served
here in the original's shape, over this fleet's own data."""

from __future__ import annotations

from aiohttp import web

from services.meta.app_keys import ENGINE
from services.meta.models import LearnerQuery
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import DEFAULT_LEARNER, parse_query

BASE = "/api/v4/meta-learning"
NO_BIBLIOGRAPHY = (
    "No bibliography: meta-learning here works on the learner's measured training state; "
    "`knowledge` is what it knows of it"
)


async def knowledge(request: web.Request) -> web.Response:
    """What meta knows of a learner: its domains (strongest, weakest, fading, practised) and its
    metrics measured now; `sources` is the original's bibliography, which this fleet has not."""
    q = parse_query(request, LearnerQuery)
    learner = q.learner or DEFAULT_LEARNER
    engine = request.app[ENGINE]
    insights = await engine.insights(learner)
    _, live = await engine.metrics(learner)
    return ok(
        sources=[],
        note=NO_BIBLIOGRAPHY,
        knowledge={"domains": insights.get("domains"), "metrics": live},
        learner=learner,
    )


def declare(routes: ApiRoutes) -> None:
    routes.get(
        f"{BASE}/knowledge",
        query=LearnerQuery,
        summary="What meta knows of a learner (the original's knowledge endpoint)",
        responses={404: "Unknown learner"},
    )(knowledge)
