"""Route tables that know their request models, so each service's OpenAPI document is generated
from the same pydantic models that validate its requests (`GET /openapi.json`).

    routes = ApiRoutes("training")

    @routes.post("/api/v1/training/round", body=RoundRequest, summary="Run one round")
    async def round_(request): ...

    routes.register(app)

Handlers still parse explicitly (`parse_body(request, RoundRequest)`); the declaration only says
what the endpoint accepts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.responses import json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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

    def register(self, app: web.Application) -> None:
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, spec.handler)
        # Routes added without the table (/health, /ready, /metrics of shared/observability.py,
        # and this document itself) are listed too, without models, so the document is complete.
        document: dict[str, Any] = {}

        async def openapi_json(_: web.Request) -> web.Response:
            """This OpenAPI document."""
            return json_response(document)

        app.router.add_get("/openapi.json", openapi_json)
        declared = {(s.method, s.path) for s in self.specs}
        listed: list[RouteSpec] = []
        for route in app.router.routes():
            path = route.get_info().get("path")
            if (
                route.method in ("GET", "POST", "DELETE")
                and path
                and (route.method, path) not in declared
            ):
                declared.add((route.method, path))
                listed.append(RouteSpec(route.method, path, route.handler))
        document.update(self.openapi(listed))

    def openapi(self, listed: list[RouteSpec] | None = None) -> dict[str, Any]:
        models = {s.body for s in self.specs if s.body is not None}
        _, top = models_json_schema(
            [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        schemas = top.get("$defs", {})
        paths: dict[str, dict[str, Any]] = {}
        op_ids: set[str] = set()
        for spec in [*self.specs, *(listed or [])]:
            if not spec.include_in_schema:
                continue
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
                "responses": _responses(spec),
            }
            params = _path_params(spec.path)
            if spec.query is not None:
                params += _query_params(spec.query)
            if params:
                op["parameters"] = params
            if spec.body is not None:
                op["requestBody"] = {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{spec.body.__name__}"}
                        }
                    },
                }
            paths.setdefault(spec.path, {})[spec.method.lower()] = op
        return {
            # 3.1: pydantic emits JSON Schema 2020-12 (`{"type": "null"}`, numeric
            # exclusiveMinimum), which is OpenAPI 3.1's schema dialect and invalid under 3.0.
            "openapi": "3.1.0",
            "info": {"title": f"TooLoo {self.service}", "version": self.version},
            "paths": paths,
            "components": {"schemas": schemas},
        }


ERROR_SCHEMA = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {
        "ok": {"type": "boolean", "enum": [False]},
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


def _responses(spec: RouteSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {}}}}
    for status, description in spec.responses.items():
        out[str(status)] = {"description": description}
    for status, description in ((401, "Missing or wrong bearer token"), (422, "Invalid input")):
        if spec.method != "GET" or status == 422:
            out.setdefault(
                str(status),
                {
                    "description": description,
                    "content": {"application/json": {"schema": ERROR_SCHEMA}},
                },
            )
    return out


def _path_params(path: str) -> list[dict[str, Any]]:
    params = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1].split(":")[0]
            params.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
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
