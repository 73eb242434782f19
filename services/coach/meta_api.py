"""The coach's calls to meta: a batch of readiness triggers (`run-batch`), or one learner's
(`run-all`) when meta refuses a batch as a whole."""

from __future__ import annotations

from typing import Any, Protocol

from shared.http_client import ServiceClient

RUN_ALL_PATH = "/api/v4/meta-learning/run-all"
RUN_BATCH_PATH = "/api/v4/meta-learning/run-batch"


class MetaApi(Protocol):
    """Each call answers (status, body) as meta sent it, and raises UpstreamError (or
    UpstreamTimeout) when meta does not answer."""

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]: ...

    async def run_all(self, learner: str, trigger: dict[str, int]) -> tuple[int, Any]: ...


class HttpMetaApi:
    def __init__(self, client: ServiceClient, *, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        """`items`: [{learner, trigger: {round, ts}}, …], distinct learners."""
        return await self.client.post(
            "meta", RUN_BATCH_PATH, {"items": items}, timeout_s=self.timeout_s
        )

    async def run_all(self, learner: str, trigger: dict[str, int]) -> tuple[int, Any]:
        return await self.client.post(
            "meta",
            RUN_ALL_PATH,
            {"learner": learner, "trigger": trigger},
            timeout_s=self.timeout_s,
        )
