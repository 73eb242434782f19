from aiohttp import web

from shared.routing import ApiRoutes
from shared.validation import QueryModel, StrictModel


class Body(StrictModel):
    rounds: int = 5


class Query(QueryModel):
    limit: int = 10


def test_openapi_is_generated_from_the_declared_models():
    routes = ApiRoutes("demo")

    @routes.post("/x/{name}", body=Body, summary="Do x")
    async def do_x(request: web.Request) -> web.Response:
        raise NotImplementedError

    @routes.get("/y", query=Query)
    async def get_y(request: web.Request) -> web.Response:
        """Read y."""
        raise NotImplementedError

    doc = routes.openapi()
    post = doc["paths"]["/x/{name}"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Body")
    assert doc["components"]["schemas"]["Body"]["additionalProperties"] is False
    assert post["parameters"][0]["name"] == "name"
    assert doc["paths"]["/y"]["get"]["parameters"][0]["name"] == "limit"
    assert doc["paths"]["/y"]["get"]["summary"] == "Read y."


def test_each_operation_documents_its_own_and_the_shared_errors():
    routes = ApiRoutes("demo")

    @routes.post("/items", body=Body, status=201, responses={409: "Exists"})
    async def create(request: web.Request) -> web.Response:
        raise NotImplementedError

    @routes.get("/export", query=Query, media=("application/json", "text/csv"))
    async def export(request: web.Request) -> web.Response:
        raise NotImplementedError

    doc = routes.openapi(secured=True)
    post = doc["paths"]["/items"]["post"]
    # The body reader, parser, edge check, token and Redis, and the handler's own 409.
    assert set(post["responses"]) == {"201", "400", "401", "403", "409", "413", "421", "422", "503"}
    assert post["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert post["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    get = doc["paths"]["/export"]["get"]
    assert "security" not in get and "401" not in get["responses"]  # safe methods need no token
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert get["responses"]["200"]["content"]["text/csv"]["schema"] == {"type": "string"}
    assert "401" not in routes.openapi()["paths"]["/items"]["post"]["responses"]  # no token set


def test_routes_outside_the_table_are_listed_as_documented():
    from shared.routing import documented

    routes = ApiRoutes("demo")
    app = web.Application()

    @documented(media="text/plain", responses={503: "Not ready"})
    async def plain(request: web.Request) -> web.Response:
        raise NotImplementedError

    app.router.add_get("/plain", plain)
    doc = routes.openapi(routes.listed(app))
    responses = doc["paths"]["/plain"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["text/plain"]
    assert set(responses) == {"200", "421", "503"}


def test_a_gateway_merges_what_it_forwards_with_its_own_errors():
    from shared.routing import Upstream

    upstream = ApiRoutes("up")

    @upstream.get("/api/v1/up/thing", responses={404: "No thing"})
    async def thing(request: web.Request) -> web.Response:
        raise NotImplementedError

    @upstream.get("/api/v1/other")
    async def other(request: web.Request) -> web.Response:
        raise NotImplementedError

    gateway = ApiRoutes("gw")
    doc = gateway.openapi(upstreams=[Upstream(upstream, ("/api/v1/up",), {502: "Upstream"})])
    assert set(doc["paths"]) == {"/api/v1/up/thing"}  # only the forwarded prefix
    assert {"404", "502"} <= set(doc["paths"]["/api/v1/up/thing"]["get"]["responses"])


def test_whole_floats_are_ints_for_strict_models():
    import pytest

    from shared.errors import ValidationFailed
    from shared.validation import validate

    assert validate(Body, {"rounds": 9.0}).rounds == 9  # JSON Schema's integer
    deep: object = 1.0
    for _ in range(1000):  # deeper than Python's recursion limit: refused, not a crash
        deep = [deep]
    for bad in ({"rounds": 9.5}, {"rounds": 1e300}, {"rounds": True}, {"rounds": deep}):
        with pytest.raises(ValidationFailed):
            validate(Body, bad)
