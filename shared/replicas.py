"""Replicas of a service: who this process is among them, and the live list of them in Redis.

A service can run as several processes behind its one port (the orchestrator's
`<NAME>_REPLICAS`, or `docker compose --scale`). Through the shared port nobody can pick a
replica, so each one says where it is: every `heartbeat_s` it writes its record
`{replica, pid, host, control_port, started_ms, last_seen_ms}` into one Redis hash per service,
and any replica answers for the whole service by reading that hash and keeping the records seen
within `ttl_s`. A replica stopped cleanly removes its own record; a killed one ages out.

What the orchestrator hands a replica, all optional (a service started by hand needs none):
`TOOLOO_REPLICA` (its name in the process table, e.g. `coach#2`), `TOOLOO_LISTEN_FD` (the
service port's listening socket, bound once by the orchestrator and shared by every replica),
`TOOLOO_CONTROL_FD` or `TOOLOO_CONTROL_PORT` (the replica's private control port: /health, /ready,
/metrics of this one process).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.cancellation import stop_if_cancelled
from shared.clock import now_ms
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis

log = get_logger(__name__)

# A record is pruned from the hash once this many TTLs old (readers ignore it after one TTL);
# the hash itself expires this long after the last heartbeat of any replica.
PRUNE_AFTER_TTLS = 10
PRUNE_EVERY_BEATS = 10
# Requests per kept-alive connection, on average, for a replica on a shared socket: a new TCP
# connection on loopback costs about what one request does, so 1 % overhead at most.
DEFAULT_CONN_RECYCLE = 100
MAX_REPLICAS_LISTED = 256  # bound on what one answer lists (a hash gone wild, never in practice)


class ReplicaSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    replica: str | None = Field(
        None, validation_alias="TOOLOO_REPLICA", pattern=r"^[A-Za-z0-9_.:#@-]{1,64}$"
    )
    listen_fd: int | None = Field(None, ge=0, validation_alias="TOOLOO_LISTEN_FD")
    control_fd: int | None = Field(None, ge=0, validation_alias="TOOLOO_CONTROL_FD")
    control_port: int | None = Field(None, ge=1, le=65535, validation_alias="TOOLOO_CONTROL_PORT")
    # Requests a kept-alive connection serves on average before the answer closes it, so that
    # clients reconnect now and then and their connections spread again over the replicas
    # (0: never; unset: DEFAULT_CONN_RECYCLE for a replica handed a shared socket, else 0).
    conn_recycle: int | None = Field(
        None, ge=0, le=1_000_000, validation_alias="TOOLOO_CONN_RECYCLE"
    )
    # The port this replica also serves its API on, alone (0: any free port). Only a replica on
    # a shared socket opens one: through the shared port nobody can pick a replica, and the
    # gateway needs to, to send every request of one learner to the same process (group commit
    # coalesces only the rounds one process holds).
    api_port: int = Field(0, ge=0, le=65535, validation_alias="TOOLOO_REPLICA_API_PORT")
    heartbeat_s: float = Field(1.0, ge=0.05, le=60, validation_alias="TOOLOO_REPLICA_HEARTBEAT")
    ttl_s: float = Field(5.0, ge=0.2, le=600, validation_alias="TOOLOO_REPLICA_TTL")

    def recycle_every(self) -> int:
        if self.conn_recycle is not None:
            return self.conn_recycle
        return DEFAULT_CONN_RECYCLE if self.listen_fd is not None else 0

    def name(self) -> str:
        """This process's replica name: the orchestrator's, else host and pid (unique per
        container under compose, where every replica has its own host name)."""
        return self.replica or f"{socket.gethostname()}:{os.getpid()}"


def own_api_listener(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket for this replica's own API port on `host`, and the URL others reach it
    at (the host name when bound to a wildcard address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    reach = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return sock, f"http://{f'[{reach}]' if ':' in reach else reach}:{bound}"


def inherited_listener(fd: int, variable: str) -> socket.socket:
    """The listening socket handed down as file descriptor `fd`; a clear exit if it is not one
    (a stale variable in a shell that starts a service by hand)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SystemExit(f"{variable}={fd} is not an open socket: {exc}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()  # not ours to close
        raise SystemExit(f"{variable}={fd} is not a listening TCP socket")
    return sock


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    replica: str
    pid: int
    host: str
    control_port: int | None
    started_ms: int
    last_seen_ms: int = 0
    # Where this replica alone serves the API (`http://host:port`), None when it has no port of
    # its own (a single process, or one container per replica behind a name).
    api_url: str | None = None


class ReplicaRegistry:
    """This replica's heartbeat into `Keys.replicas(service)`, and the live records read back."""

    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        service: str,
        me: ReplicaRecord,
        *,
        heartbeat_s: float = 1.0,
        ttl_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.key = keys.replicas(service)
        self.service = service
        self.me = me
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self._beats = 0

    async def beat(self) -> None:
        # One HSET replaces this replica's whole record atomically; the PEXPIRE only keeps the
        # hash from outliving the service. Both on one key, so one Cluster slot.
        record = asdict(self.me) | {"last_seen_ms": now_ms()}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key, self.me.replica, orjson.dumps(record))
            pipe.pexpire(self.key, int(self.ttl_s * 1000 * PRUNE_AFTER_TTLS))
            await pipe.execute()
        self._beats += 1
        if self._beats % PRUNE_EVERY_BEATS == 0:
            await self._prune()

    async def _prune(self) -> None:
        """Remove records long dead (killed replicas, never stopped cleanly). Not atomic with the
        read: a replica of the same name that came back in between loses its record until its
        next heartbeat, which readers can tolerate; a record is only pruned PRUNE_AFTER_TTLS
        TTLs after it went quiet, so a live replica is never the one removed."""
        cutoff = now_ms() - int(self.ttl_s * 1000 * PRUNE_AFTER_TTLS)
        stale = [r["replica"] for r in await self._records() if r["last_seen_ms"] < cutoff]
        if stale:
            await self.redis.hdel(self.key, *stale)

    async def leave(self) -> None:
        await self.redis.hdel(self.key, self.me.replica)

    async def _records(self) -> list[dict[str, Any]]:
        return await _records(self.redis, self.key)

    async def live(self) -> list[dict[str, Any]]:
        return await live_replicas(self.redis, self.key, self.ttl_s)

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed beat is logged and retried at the next one."""
        while True:  # ends by cancellation at shutdown
            stop_if_cancelled()
            try:
                await self.beat()
            except Exception as exc:  # Redis away: the record ages out, and comes back with it
                log.warning("replica_heartbeat_failed", error=f"{exc.__class__.__name__}: {exc}")
            await asyncio.sleep(self.heartbeat_s)


async def _records(redis: FleetRedis, key: str) -> list[dict[str, Any]]:
    raw = await redis.hgetall(key)
    records = []
    for value in list(raw.values())[:MAX_REPLICAS_LISTED]:
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("last_seen_ms"), int):
            records.append(record)
    return records


async def live_replicas(redis: FleetRedis, key: str, ttl_s: float) -> list[dict[str, Any]]:
    """The records of `key` (Keys.replicas) seen within `ttl_s`, by replica name, each with its
    `age_ms` (by this process's clock: replicas on other hosts need clocks within the TTL of
    each other)."""
    now = now_ms()
    horizon = int(ttl_s * 1000)
    live = [
        r | {"age_ms": max(0, now - r["last_seen_ms"])}
        for r in await _records(redis, key)
        if now - r["last_seen_ms"] <= horizon
    ]
    return sorted(live, key=lambda r: str(r.get("replica")))
