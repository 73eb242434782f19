"""Route tables that know their request models, so each service's OpenAPI document is generated
from the same pydantic models that validate its requests (`GET /openapi.json`).

    routes = ApiRoutes("training")

    @routes.post("/api/v1/training/round", body=RoundRequest, summary="Run one round",
                 responses={404: "Unknown learner"})
    async def round_(request): ...

    routes.register(app)

Handlers still parse explicitly (`parse_body(request, RoundRequest)`); the declaration says what
the endpoint accepts and answers. Each operation's documented answers come from here alone: its
success status and media type, the errors its handler raises (`responses`), and the errors the
shared middlewares and parsers answer on every route of its kind (`_common_errors`), all in the
error envelope's schema. A route added without the table (/health, /metrics, ...) is listed
too, with what `documented()` says about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.app_keys import SETTINGS
from shared.responses import json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"
# Unsafe methods: the ones the auth and cross-site checks apply to (shared/middlewares.py).
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(slots=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    summary: str = ""
    responses: dict[int, str] = field(default_factory=dict)
    include_in_schema: bool = True
    # The success answer: its status and media type(s) (a non-JSON body is documented as a
    # string; several types: the route serves files of each).
    status: int = 200
    media: str | tuple[str, ...] = JSON
    # JSON Schema of each path parameter; a parameter not named here is any non-empty string.
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # False for routes that need nothing from Redis to answer (/health, this document).
    uses_redis: bool = True


@dataclass(frozen=True, slots=True)
class Documented:
    """What the document says about a handler registered without a route table."""

    media: str = JSON
    responses: dict[int, str] = field(default_factory=dict)
    uses_redis: bool = False


def documented(
    *, media: str = JSON, responses: dict[int, str] | None = None, uses_redis: bool = False
) -> Callable[[Handler], Handler]:
    """Describe a handler added to the router directly (not through a table): its media type and
    the errors it answers, for the document of every app it is registered on."""

    def decorate(handler: Handler) -> Handler:
        handler.__dict__["openapi"] = Documented(media, dict(responses or {}), uses_redis)
        return handler

    return decorate


@dataclass(frozen=True, slots=True)
class Upstream:
    """Another service's table, served through a gateway: its operations under `prefixes` are
    merged into the gateway's document, with the errors the gateway itself adds."""

    routes: ApiRoutes
    prefixes: tuple[str, ...]
    errors: dict[int, str]

    def serves(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)


class ApiRoutes:
    def __init__(self, service: str, version: str = "1.0.0") -> None:
        self.service = service
        self.version = version
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        summary: str = "",
        responses: dict[int, str] | None = None,
        include_in_schema: bool = True,
        status: int = 200,
        media: str | tuple[str, ...] = JSON,
        path_params: dict[str, dict[str, Any]] | None = None,
        uses_redis: bool = True,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.specs.append(
                RouteSpec(
                    method.upper(),
                    path,
                    handler,
                    body,
                    query,
                    summary or (handler.__doc__ or "").strip().split("\n")[0],
                    responses or {},
                    include_in_schema,
                    status,
                    media,
                    path_params or {},
                    uses_redis,
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def register(
        self,
        app: web.Application,
        *,
        upstreams: Iterable[Upstream] = (),
    ) -> None:
        """Add the table's routes and `GET /openapi.json`. With a bearer token set
        (TOOLOO_API_TOKEN), every unsafe operation documents the token and its 401.
        `upstreams`: the tables a gateway forwards to, merged into its document."""
        settings = app.get(SETTINGS)
        secured = settings is not None and settings.token() is not None
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, spec.handler)
        # Routes added without the table (/health, /ready, /metrics of shared/observability.py,
        # and this document itself) are listed too, so the document is complete. Filled on the
        # app's startup: routes a service adds after this call are listed as well.
        document: dict[str, Any] = {}
        merged = list(upstreams)

        async def openapi_json(_: web.Request) -> web.Response:
            """This OpenAPI document."""
            return json_response(document)

        openapi_json.__dict__["openapi"] = Documented()
        app.router.add_get("/openapi.json", openapi_json)

        async def build(_: web.Application) -> None:
            document.update(self.openapi(self.listed(app), secured=secured, upstreams=merged))

        app.on_startup.append(build)

    def listed(self, app: web.Application) -> list[RouteSpec]:
        """The app's routes this table does not declare, as specs."""
        declared = {(s.method, s.path) for s in self.specs}
        listed: list[RouteSpec] = []
        for route in app.router.routes():
            path = route.get_info().get("path") or route.get_info().get("formatter")
            if route.method in ("GET", "POST", "DELETE") and path:
                if (route.method, path) in declared:
                    continue
                declared.add((route.method, path))
                info: Documented = getattr(route.handler, "openapi", None) or Documented()
                listed.append(
                    RouteSpec(
                        route.method,
                        path,
                        route.handler,
                        responses=dict(info.responses),
                        media=info.media,
                        uses_redis=info.uses_redis,
                    )
                )
        return listed

    def openapi(
        self,
        listed: list[RouteSpec] | None = None,
        *,
        secured: bool = False,
        upstreams: Iterable[Upstream] = (),
    ) -> dict[str, Any]:
        own = [s for s in [*self.specs, *(listed or [])] if s.include_in_schema]
        operations: list[tuple[RouteSpec, dict[int, str]]] = [(s, {}) for s in own]
        for upstream in upstreams:
            operations += [
                (s, upstream.errors)
                for s in upstream.routes.specs
                if s.include_in_schema and upstream.serves(s.path)
            ]
        models = {s.body for s, _ in operations if s.body is not None}
        # Each model's $ref as pydantic names it: two models of one name (web's and meta's
        # EmptyBody, in the gateway's merged document) get names of their own.
        refs, top = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        schemas: dict[str, Any] = {**top.get("$defs", {}), "Error": ERROR_SCHEMA}
        paths: dict[str, dict[str, Any]] = {}
        op_ids: set[str] = set()
        for spec, extra in operations:
            op_id = base = f"{spec.method.lower()}_{spec.handler.__name__}"
            # Operation ids must be unique (meta's and /metrics' handlers are both `metrics`).
            for n in range(2, len(op_ids) + 3):
                if op_id not in op_ids:
                    break
                op_id = f"{base}_{n}"
            op_ids.add(op_id)
            op: dict[str, Any] = {
                "summary": spec.summary or (spec.handler.__doc__ or "").strip().split("\n")[0],
                "operationId": op_id,
                "responses": _responses(spec, secured, extra),
            }
            params = _path_params(spec)
            if spec.query is not None:
                params += _query_params(spec.query)
            if params:
                op["parameters"] = params
            if spec.body is not None:
                op["requestBody"] = {
                    # An empty body reads as `{}` (shared/validation.py read_json): optional
                    # unless `{}` is not a valid body (a required field, or a rule such as
                    # "at least one setting" that `{}` breaks).
                    "required": _body_required(spec.body.model_json_schema()),
                    "content": {JSON: {"schema": dict(refs[(spec.body, "validation")])}},
                }
            if secured and spec.method in UNSAFE:
                op["security"] = [{"bearer": []}]
            paths.setdefault(spec.path, {})[spec.method.lower()] = op
        components: dict[str, Any] = {"schemas": schemas}
        if secured:
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        return {
            # 3.1: pydantic emits JSON Schema 2020-12 (`{"type": "null"}`, numeric
            # exclusiveMinimum), which is OpenAPI 3.1's schema dialect and invalid under 3.0.
            "openapi": "3.1.0",
            "info": {"title": f"TooLoo {self.service}", "version": self.version},
            "paths": paths,
            "components": components,
        }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {
        "ok": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        },
    },
}
# Every JSON success answer is the envelope `{"ok": true, ...}` (shared/responses.py ok()).
SUCCESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok"],
    "properties": {"ok": {"const": True}},
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# The schema of one answer in each non-JSON media type: a server-sent event is an object of the
# event's fields (its `data` a JSON text); any other is a string.
MEDIA_SCHEMAS: dict[str, dict[str, Any]] = {
    "text/event-stream": {
        "type": "object",
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    },
}


def _common_errors(spec: RouteSpec, secured: bool) -> dict[int, str]:
    """The errors an operation can answer whatever its handler does: the edge check, the token,
    the body reader and the parsers, and Redis being away (shared/middlewares.py)."""
    errors = {421: "Host is not one of the fleet's names (TOOLOO_ALLOWED_HOSTS)"}
    if spec.method in UNSAFE:
        errors[403] = "A browser's cross-site call from an origin not allowed (TOOLOO_CORS_ORIGINS)"
        if secured:
            errors[401] = "Missing or wrong Authorization: Bearer <token>"
    if spec.body is not None:
        errors[400] = "Body is not JSON, or could not be read"
        errors[413] = "Body larger than the service's limit"
        errors[422] = "Body does not match the schema"
    if spec.query is not None:
        errors[422] = "A query parameter does not match the schema"
    if spec.uses_redis:
        errors[503] = "Redis is not answering; retry after Retry-After"
    return errors


def _responses(spec: RouteSpec, secured: bool, extra: dict[int, str]) -> dict[str, Any]:
    media = (spec.media,) if isinstance(spec.media, str) else spec.media
    content: dict[str, Any] = {
        m: {"schema": SUCCESS_SCHEMA if m == JSON else MEDIA_SCHEMAS.get(m, {"type": "string"})}
        for m in media
    }
    out: dict[str, Any] = {str(spec.status): {"description": "OK", "content": content}}
    errors = {**_common_errors(spec, secured), **extra, **spec.responses}
    for status in sorted(errors):
        if str(status) not in out:
            out[str(status)] = {
                "description": errors[status],
                "content": {JSON: {"schema": ERROR_REF}},
            }
    return out


def _path_params(spec: RouteSpec) -> list[dict[str, Any]]:
    params = []
    for part in spec.path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1].split(":")[0]
            schema = spec.path_params.get(name, {"type": "string", "minLength": 1})
            params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in ("title",)}
        # A query string cannot carry null: an optional parameter is simply left out, so
        # `anyOf: [X, null]` is documented as X (with the default, if any).
        options = [o for o in prop.get("anyOf", []) if o != {"type": "null"}]
        if "anyOf" in prop and len(options) == 1:
            prop = {**options[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
            if prop.get("default", "") is None:
                del prop["default"]
        params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _body_required(schema: dict[str, Any]) -> bool:
    """Whether an absent body (read as `{}`) breaks the model's schema: a required field, or an
    anyOf/oneOf whose every branch requires a field."""
    if schema.get("required"):
        return True
    for combinator in ("anyOf", "oneOf"):
        branches = schema.get(combinator)
        if branches and all(b.get("required") for b in branches):
            return True
    return False
