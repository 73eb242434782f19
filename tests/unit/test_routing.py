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
