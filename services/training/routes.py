"""Training HTTP handlers: parse, call the store / presenters, answer."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from services.training import compat, presenters
from services.training.app_keys import STORE
from services.training.models import (
    BatchRequest,
    CreateLearnerRequest,
    HistoryQuery,
    LearnerQuery,
    ListQuery,
    NewTopicRequest,
    RoundRequest,
    SettingsRequest,
    StartRequest,
)
from services.training.store import (
    Idempotency,
    ReplayedRounds,
    TrainingStore,
)
from shared import domain_metrics
from shared.commit_rounds import request_hash
from shared.compat import warnings_of, with_warnings
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.learner_state import LearnerState
from shared.rate_limit import RateLimit, limit
from shared.responses import ok
from shared.routing import ApiRoutes
from shared.validation import (
    DEFAULT_LEARNER,
    IDEMPOTENCY_RESPONSES,
    LEARNER_ID_PATTERN,
    idempotency_key,
    learner_from,
    parse_body,
    parse_query,
)

api = ApiRoutes("training")
# Per client, fleet-wide. A new topic changes every learner's curriculum (and each round's cost);
# a created learner is a state hash, history and index entries kept forever. Onboarding at scale
# goes through web's scale loop, not this endpoint.
NEW_TOPIC_LIMIT = RateLimit("training-new-topic", 10, 60)
CREATE_LEARNER_LIMIT = RateLimit("training-create-learner", 100, 10)


def register(app: web.Application) -> None:
    api.register(app)


@api.post(
    "/api/v1/training/start",
    body=StartRequest,
    summary="Start (or reset) training",
    responses={404: "Unknown learner"},
)
async def start(request: web.Request) -> web.Response:
    body = await parse_body(request, StartRequest)
    learner = learner_from(request, body.learner)
    store = request.app[STORE]
    await store.start(learner, body.reset)
    return ok(result=presenters.started(learner, store.curriculum.current, body.reset))


async def _idempotency(request: web.Request, *request_parts: str) -> Idempotency | None:
    """The request's Idempotency-Key (400 when malformed), claimed for this request's hash
    (422 when it was first used for another request); None without the header."""
    key = idempotency_key(request)
    if key is None:
        return None
    idem = Idempotency(key, request_hash(request.path, *request_parts))
    await request.app[STORE].claim_idempotency(idem)
    return idem


@api.post(
    "/api/v1/training/round",
    body=RoundRequest,
    summary="Run one training round (Idempotency-Key: a retry replays the first answer's ids)",
    responses={
        404: "Unknown learner",
        409: "Training not started, or the learner is inactive (a throttle holds it back)",
        **IDEMPOTENCY_RESPONSES,
    },
)
async def one_round(request: web.Request) -> web.Response:
    body = await parse_body(request, RoundRequest)
    learner = learner_from(request, body.learner)
    idem = await _idempotency(request, learner)
    done = await request.app[STORE].run_round(learner, idem)
    if isinstance(done, ReplayedRounds):
        return ok(result=presenters.round_replayed(done))
    domain_metrics.rounds_committed(request.app, 1, time.perf_counter() - done.started, "single")
    return ok(result=presenters.round_answer(done))


def _fences(raw: dict[str, int] | None, shards: int) -> dict[int, int] | None:
    """The batch's fencing tokens by shard number; 409 for a shard this fleet does not have: the
    body is well-formed (the schema allows every shard number a fleet may have), but it
    disagrees with this fleet's shard count, which no document can state in advance."""
    if raw is None:
        return None
    fences = {int(shard): token for shard, token in raw.items()}
    unknown = sorted(shard for shard in fences if shard >= shards)
    if unknown:
        raise Conflict(
            f"fences names shards this fleet does not have (it has {shards}: 0..{shards - 1})",
            code="unknown_shard",
            details={"shards": unknown[:10]},
        )
    return fences


@api.post(
    "/api/v1/training/rounds",
    body=BatchRequest,
    summary="Run rounds for many learners (Idempotency-Key: a retry commits nothing twice; "
    "fences: a coach's per-shard tokens, a learner of a fenced-off shard fails with `fenced`)",
    responses={**IDEMPOTENCY_RESPONSES, 409: "A fence names a shard this fleet does not have"},
)
async def rounds_batch(request: web.Request) -> web.Response:
    body = await parse_body(request, BatchRequest)
    store = request.app[STORE]
    fences = _fences(body.fences, store.keys.shards)
    idem = await _idempotency(request, ",".join(body.learners), str(body.rounds_per_learner))
    batch = await store.run_batch(body.learners, body.rounds_per_learner, idem, fences)
    committed = sum(len(c.outcomes) for c in batch.committed)
    domain_metrics.rounds_committed(
        request.app, committed, time.perf_counter() - batch.started, "batch"
    )
    return ok(**presenters.batch_answer(batch))


async def _state(request: web.Request) -> tuple[TrainingStore, LearnerState, bool]:
    query = parse_query(request, LearnerQuery)
    store = request.app[STORE]
    _, state, ready = await store.load(query.learner or DEFAULT_LEARNER)
    await store.curriculum.refresh_if_stale()
    return store, state, ready


@api.get(
    "/api/v1/training/overview",
    query=LearnerQuery,
    responses={404: "Unknown learner"},
    summary="Per-domain overview",
)
async def overview(request: web.Request) -> web.Response:
    store, state, _ = await _state(request)
    return ok(data=presenters.overview(state, store.curriculum.current, time.time()))


@api.get(
    "/api/v1/training/status",
    query=LearnerQuery,
    responses={404: "Unknown learner"},
    summary="Training status",
)
async def status(request: web.Request) -> web.Response:
    store, state, _ = await _state(request)
    return ok(status=presenters.status(state, store.curriculum.current, time.time()))


@api.get(
    "/api/v1/training/settings",
    query=LearnerQuery,
    responses={404: "Unknown learner"},
    summary="Selection settings",
)
async def get_settings(request: web.Request) -> web.Response:
    _, state, _ = await _state(request)
    return ok(settings=presenters.settings_view(state))


@api.post(
    "/api/v1/training/settings",
    body=SettingsRequest,
    summary="Change selection settings",
    responses={404: "Unknown learner"},
)
async def post_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, SettingsRequest)
    learner = learner_from(request, body.learner)
    patch = body.model_dump(exclude_none=True, exclude={"learner"})
    if not patch:
        raise ValidationFailed("No setting given", code="empty_settings")
    state = await request.app[STORE].update_settings(learner, patch)
    return ok(**with_warnings(body.folded(), settings=presenters.settings_view(state)))


@api.get(
    "/api/v1/training/deep-dive/{topic}",
    query=LearnerQuery,
    summary="One topic in depth",
    responses={404: "Unknown topic or learner"},
)
async def deep_dive(request: web.Request) -> web.Response:
    store, state, _ = await _state(request)
    key = request.match_info["topic"]
    topic = store.curriculum.current.get(key)
    if topic is None:
        raise NotFound(f"Unknown topic {key[:64]!r}", code="invalid_topic")
    return ok(data=presenters.deep_dive(state, topic, time.time()))


@api.get(
    "/api/v1/next-domain",
    query=LearnerQuery,
    responses={404: "Unknown learner"},
    summary="What to train next",
)
async def next_domain(request: web.Request) -> web.Response:
    store, state, _ = await _state(request)
    thresholds = await store.readiness_thresholds()
    return ok(next=presenters.next_domain(state, store.curriculum.current, time.time(), thresholds))


@api.post(
    "/api/v1/training/new-topic",
    body=NewTopicRequest,
    summary="Add a topic (duplicates need force; at most TOOLOO_MAX_TOPICS in all)",
    responses={
        409: "Topic exists, or the curriculum is full",
        429: "More than 10 calls a minute from this client",
    },
)
async def new_topic(request: web.Request) -> web.Response:
    body = await parse_body(request, NewTopicRequest)
    await limit(request, NEW_TOPIC_LIMIT)
    store = request.app[STORE]
    key = body.topic_key
    warnings = warnings_of(body)
    if body.problems is None:
        problems = compat.generic_problems(key)
        warnings.append("problems: not given, so the topic has three generic system-design ones")
    else:
        problems = [p.model_dump(exclude_none=True) for p in body.problems]
    updated = await store.curriculum.add_topic(
        key, body.name or key, problems, body.background, body.force
    )
    topic = store.curriculum.current.get(key)
    return ok(
        **with_warnings(
            warnings,
            added=presenters.topic_added(key, body.background, updated),
            topic={"key": key, **(topic.to_dict() if topic else {})},
        )
    )


@api.delete(
    "/api/v1/training/topics/{topic}",
    summary="Delete a topic added at run time",
    responses={404: "Unknown topic", 409: "Built-in topic"},
)
async def delete_topic(request: web.Request) -> web.Response:
    key = request.match_info["topic"]
    await request.app[STORE].curriculum.delete_topic(key)
    return ok(deleted=key)


@api.get(
    "/api/v1/training/history",
    query=HistoryQuery,
    responses={404: "Unknown learner"},
    summary="Recorded rounds, newest first",
)
async def history(request: web.Request) -> web.Response:
    query = parse_query(request, HistoryQuery)
    learner = query.learner or DEFAULT_LEARNER
    entries = await request.app[STORE].history(learner, query.limit)
    return ok(learner=learner, count=len(entries), history=entries)


@api.post(
    "/api/v1/learners",
    body=CreateLearnerRequest,
    summary="Create a learner",
    status=201,
    responses={409: "Learner exists", 429: "More than 100 calls in 10 s from this client"},
)
async def create_learner(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateLearnerRequest)
    await limit(request, CREATE_LEARNER_LIMIT)
    learner = body.id or f"u-{secrets.token_hex(6)}"
    store = request.app[STORE]
    state = await store.create_learner(learner, body.region, body.active)
    return ok(
        http_status=201,
        learner=presenters.learner_detail(state, store.curriculum.current, time.time(), False),
    )


@api.get(
    "/api/v1/learners",
    query=ListQuery,
    summary="Learners of every shard in one stable order; cursor = the last row's seq",
)
async def list_learners(request: web.Request) -> web.Response:
    query = parse_query(request, ListQuery)
    store = request.app[STORE]
    listed, next_cursor = await store.list_learners(query.cursor, query.limit)
    total = await store.count_learners()
    curriculum, now = store.curriculum.current, time.time()
    return ok(
        learners=[presenters.learner_row(x, curriculum, now) for x in listed],
        next_cursor=next_cursor,
        total=total,
    )


def _path_learner(request: web.Request) -> str:
    return learner_from(request, request.match_info["id"])


LEARNER_PATH = {"id": {"type": "string", "pattern": LEARNER_ID_PATTERN}}
BAD_LEARNER = "Learner id does not match its pattern"


@api.get(
    "/api/v1/learners/{id}",
    summary="One learner",
    path_params=LEARNER_PATH,
    responses={404: "Unknown learner", 422: BAD_LEARNER},
)
async def get_learner(request: web.Request) -> web.Response:
    store = request.app[STORE]
    _, state, ready = await store.load(_path_learner(request))
    await store.curriculum.refresh_if_stale()
    return ok(
        learner=presenters.learner_detail(state, store.curriculum.current, time.time(), ready)
    )


@api.delete(
    "/api/v1/learners/{id}",
    summary="Erase a learner and every key of it",
    path_params=LEARNER_PATH,
    responses={404: "Unknown learner", 422: BAD_LEARNER},
)
async def delete_learner(request: web.Request) -> web.Response:
    learner = _path_learner(request)
    await request.app[STORE].delete_learner(learner)
    return ok(deleted=learner)


compat.declare(api)
# The original's clients changed settings with a GET of /settings/update; here that path takes
# POST with the body of POST /settings (a GET answers 405 naming the POST).
api.post(
    "/api/v1/training/settings/update",
    body=SettingsRequest,
    responses={404: "Unknown learner"},
    summary="Change selection settings (same as POST /api/v1/training/settings)",
)(post_settings)
