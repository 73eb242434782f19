"""One learner, one training replica: the gateway sends every request of a learner to the same
training process, so that the rounds of one learner meet in one process, where group commit
coalesces them (services/training/coalesce.py) instead of racing each other's commits from
several processes.

Each training replica on a shared socket also serves its API on a port of its own and names it
in its heartbeat (`api_url`, shared/replicas.py). The gateway reads those records every
`REFRESH_S` and picks a learner's replica by rendezvous hashing: every replica gets a score
hash(replica, learner), the highest wins. Every gateway process computes the same answer from the
same list, and when a replica leaves only its own learners move (to their second choice), when
one joins it takes only the learners it now wins. A replica that refuses a connection (killed,
not yet aged out of the list) is skipped for `DOWN_S` and the learner's next choice serves it;
with no replica left, the shared port (any replica) does, as without replicas.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson

from shared.cancellation import stop_if_cancelled
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis
from shared.replicas import live_replicas
from shared.validation import DEFAULT_LEARNER

log = get_logger(__name__)

ROUTED_SERVICE = "training"
REFRESH_S = 1.0  # how stale the gateway's list of replicas may be
DOWN_S = 5.0  # a replica that refused a connection is skipped this long (the heartbeat TTL)
LEARNERS_PREFIX = "/api/v1/learners/"
TRAINING_PREFIX = "/api/v1/training/"
# Training paths that address no single learner (the batch names many): any replica serves them.
UNROUTED_PATHS = frozenset({"/api/v1/training/rounds"})
MAX_BODY_PEEK = 4096  # a round's body is tens of bytes; a larger one is a batch or a topic


def learner_of(path: str, learner_param: str | None, body: bytes) -> str | None:
    """The learner a training request addresses, as its handler will find it: the body's
    `learner`, else the `learner` query parameter, else the learner in the path, else `default`
    on the training paths that default to it; None for a request about no single learner."""
    if body and len(body) <= MAX_BODY_PEEK and body[:1] == b"{":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None  # training answers the 400; any replica can
        if isinstance(data, dict) and isinstance(value := data.get("learner"), str):
            return value
    if learner_param:
        return learner_param
    if path.startswith(LEARNERS_PREFIX):
        learner = path[len(LEARNERS_PREFIX) :].split("/", 1)[0]
        return learner or None
    if path.startswith(TRAINING_PREFIX) and path not in UNROUTED_PATHS:
        return DEFAULT_LEARNER
    return None


def _score(replica: str, learner: str) -> int:
    digest = hashlib.blake2b(f"{replica}\0{learner}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class LearnerRouter:
    """The training replicas that serve an API port of their own, and each learner's order of
    preference among them."""

    def __init__(self, redis: FleetRedis, keys: Keys, *, ttl_s: float = 5.0) -> None:
        self.redis = redis
        self.key = keys.replicas(ROUTED_SERVICE)
        self.ttl_s = ttl_s
        self.replicas: tuple[tuple[str, str], ...] = ()  # (replica name, api_url), by name
        self._down_until: dict[str, float] = {}

    async def refresh(self) -> None:
        live = await live_replicas(self.redis, self.key, self.ttl_s)
        self.replicas = tuple(
            sorted(
                (str(r["replica"]), url)
                for r in live
                if isinstance(url := r.get("api_url"), str) and url.startswith("http")
            )
        )
        now = time.monotonic()
        self._down_until = {n: t for n, t in self._down_until.items() if t > now}

    async def run(self) -> None:
        while True:  # ends by cancellation at shutdown
            stop_if_cancelled()
            try:
                await self.refresh()
            except Exception as exc:  # Redis away: keep the last list, try again next period
                log.warning("learner_routes_refresh_failed", error=exc.__class__.__name__)
            await asyncio.sleep(REFRESH_S)

    def candidates(self, learner: str) -> list[tuple[str, str]]:
        """The replicas to try for `learner`, best first, without those that just refused."""
        if not self.replicas:
            return []
        now = time.monotonic()
        up = [r for r in self.replicas if self._down_until.get(r[0], 0.0) <= now]
        if len(up) <= 1:
            return up
        return sorted(up, key=lambda r: _score(r[0], learner), reverse=True)

    def mark_down(self, replica: str) -> None:
        self._down_until[replica] = time.monotonic() + DOWN_S
        log.warning("training_replica_refused", replica=replica, skipped_s=DOWN_S)
