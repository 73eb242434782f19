"""The fleet's Lua scripts, loaded once and called by SHA.

Each `*.lua` file under `shared/lua/` is one atomic state change; its header says which keys it
touches and why it must be atomic. redis-py's `AsyncScript` calls EVALSHA and reloads the script on
NOSCRIPT (for instance after a Redis restart), and a pipeline loads missing scripts before it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.redis_types import FleetRedis

SCRIPT_NAMES = (
    "create_learner",
    "cas_state",
    "commit_rounds",
    "delete_learner",
    "lease_renew",
    "lease_release",
    "shard_lease_acquire",
    "shard_members",
    "stream_trim",
)


def lua_source(package: str, name: str) -> str:
    """The text of `<name>.lua` inside `package`: a script used by one service lives beside the
    code that calls it (`lua_source(__package__, "reports_apply")`), and the owner registers it
    on its own client with `redis.register_script`."""
    return resources.files(package).joinpath(f"{name}.lua").read_text()


def script_source(name: str) -> str:
    """A shared script (`shared/lua/<name>.lua`), used by more than one service."""
    return lua_source("shared.lua", name)


class Scripts:
    """The registered scripts of one Redis client, by name: `scripts.commit_rounds(keys, args)`."""

    def __init__(self, redis: FleetRedis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    def __getattr__(self, name: str) -> AsyncScript:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

    async def load_all(self, redis: FleetRedis) -> None:
        """Load every script now, so the first request does not pay for it."""
        for script in self._scripts.values():
            script.sha = await redis.script_load(script.script)

    def __call__(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        return self._scripts[name](keys=keys, args=args, client=client)


ScriptCall = tuple[list[str], list[Any]]  # (keys, args) of one script run


async def evalsha_each(
    redis: FleetRedis,
    script: AsyncScript,
    calls: list[ScriptCall],
    send: Callable[[str, list[ScriptCall]], Awaitable[list[Any]]],
) -> list[Any]:
    """Run `script` once per call by SHA through `send(sha, calls)`, which sends them together
    (a pipeline, an auto-pipeline) and returns one reply or exception per call, in order.
    A NOSCRIPT reply (a Redis restart, SCRIPT FLUSH) means that call did not run: the script is
    loaded and those calls alone are sent once more (bounded: one reload). redis-py's own
    pipeline would instead ask SCRIPT EXISTS before every batch, a round trip each time. The
    first other error is raised, after every reply is in."""
    if not calls:
        return []
    if not script.sha:
        script.sha = await redis.script_load(script.script)
    replies = await send(script.sha, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        script.sha = await redis.script_load(script.script)
        again = await send(script.sha, [calls[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


async def evalsha_pipelined(
    redis: FleetRedis, script: AsyncScript, calls: list[ScriptCall]
) -> list[Any]:
    """`script` once per call in one non-transactional pipeline (evalsha_each's `send` that
    most callers want). Each call runs atomically on its own keys' slot; the calls together are
    not one atomic step. On a Redis Cluster the client splits the pipeline per node."""

    async def send(sha: str, batch: list[ScriptCall]) -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for keys, args in batch:
                # Not pipe.evalsha: a Redis Cluster's pipeline refuses it (and a Script).
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    return await evalsha_each(redis, script, calls, send)
