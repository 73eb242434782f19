"""Request parsing into pydantic models: every failure is a 4xx ApiError, never a 500."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from shared.commit_rounds import IDEMPOTENCY_HEADER, idempotency_key_of
from shared.errors import BadRequest, ValidationFailed

LEARNER_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
LearnerId = Annotated[str, StringConstraints(pattern=LEARNER_ID_PATTERN)]
DEFAULT_LEARNER = "default"

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every request model: unknown fields are refused, strings are not coerced to
    numbers, and NaN/Infinity are not numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class QueryModel(BaseModel):
    """Base of query-string models: values arrive as strings, so coercion is allowed, but unknown
    parameters are still refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; an empty body reads as {}. Size is bounded by the app's
    client_max_size (413 beyond it)."""
    raw = await request.read()
    # Only a body of no bytes at all: blanks are no JSON document, and the schema says JSON.
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            "Request body is not valid JSON", code="invalid_json", details=str(exc)
        ) from None


# Whole floats beyond this are not read as ints: past 2**53 a float is no exact integer anyway.
_EXACT_INT = 2**53
# How deep the retry looks: the models nest a few levels; a body nested deeper (orjson reads up
# to 1024 levels, past Python's recursion limit) is refused as it is.
_MAX_DEPTH = 16


def _whole_floats_as_ints(value: Any, depth: int = 0) -> tuple[Any, bool]:
    """`value` with every whole float (`9.0`) as the int it equals, down to `_MAX_DEPTH`, and
    whether any was found."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        return int(value), True
    if depth >= _MAX_DEPTH:
        return value, False
    if isinstance(value, dict):
        pairs = {k: _whole_floats_as_ints(v, depth + 1) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    if isinstance(value, list):
        items = [_whole_floats_as_ints(v, depth + 1) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise ValidationFailed("Request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # JSON Schema counts `9.0` as an integer, and a client's JSON library may write one;
        # strict models take only ints. Retried with whole floats as ints (a float field takes
        # an int), only when the first try failed: the common request pays nothing for it.
        fixed, changed = _whole_floats_as_ints(data)
        if changed:
            try:
                return model.model_validate(fixed)
            except ValidationError:
                pass
        raise ValidationFailed("Invalid request", details=_errors(exc)) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    return validate(model, await read_json(request))


def parse_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if len(values) > 1:
            raise ValidationFailed(f"Query parameter {key!r} given more than once")
        data[key] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("Invalid query parameters", details=_errors(exc)) from None


def learner_from(request: web.Request, body_value: str | None = None) -> str:
    """The addressed learner: body field, else `learner` query parameter, else `default`."""
    value = body_value if body_value is not None else request.query.get("learner")
    if value is None:
        return DEFAULT_LEARNER
    if not isinstance(value, str) or not re.fullmatch(LEARNER_ID_PATTERN, value):
        raise ValidationFailed("learner must match [A-Za-z0-9_.-]{1,64}", code="invalid_learner")
    return value


def dump(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(model.model_dump_json(by_alias=True))
    return data


# What a route that takes an Idempotency-Key adds to its documented answers.
IDEMPOTENCY_RESPONSES = {
    400: "Malformed Idempotency-Key",
    422: "Idempotency-Key already used for a different request",
}


def idempotency_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key, None without one; 400 when it is malformed."""
    try:
        return idempotency_key_of(request.headers.get(IDEMPOTENCY_HEADER))
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_idempotency_key") from None
