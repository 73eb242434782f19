"""The decision record in Redis: each gate's recorded state, the sign-offs and the history
(every key from shared/keys.py, all under the `{gates}` tag, so each write below is one slot).

What makes each write atomic: a gate's evaluation is the `gate_record` script beside this
module (state and history in one step, compare-and-set on the state's version); a sign-off, a
re-open and a full pause/resume entry are one MULTI/EXEC on the `{gates}` slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from services.web.gate_record import GateState
from shared.keys import Keys
from shared.redis_types import FleetRedis, text_map
from shared.scripts import lua_source

HISTORY_CAP = 10_000  # the newest entries kept; at a few changes a day that is years
_RECORD_SOURCE = lua_source(__package__, "gate_record")


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class GateStore:
    def __init__(self, redis: FleetRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._record = redis.register_script(_RECORD_SOURCE)

    async def load(self) -> tuple[dict[str, GateState], dict[str, dict[str, dict[str, Any]]]]:
        """(gate id -> recorded state, gate id -> criterion id -> sign-off), in one round trip
        (one slot). A state that does not parse is left out: the next evaluation records anew."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.gates_state)
            pipe.hgetall(self.keys.gates_signoffs)
            raw_states, raw_signoffs = await pipe.execute()
        states: dict[str, GateState] = {}
        for gate, raw in text_map(raw_states).items():
            try:
                states[gate] = GateState.from_json(orjson.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue
        signoffs: dict[str, dict[str, dict[str, Any]]] = {}
        for field, raw in text_map(raw_signoffs).items():
            gate, _, criterion = field.partition("/")
            try:
                signoffs.setdefault(gate, {})[criterion] = orjson.loads(raw)
            except ValueError:
                continue
        return states, signoffs

    async def record(
        self, gate: str, expected_v: int, state: GateState, events: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Write the gate's new state (version expected_v + 1) and its events; False when
        another writer recorded this gate first (then nothing was written)."""
        body = _json({**state.to_json(), "v": expected_v + 1})
        written = await self._record(
            keys=[self.keys.gates_state, self.keys.gates_history],
            args=[gate, expected_v, body, HISTORY_CAP, *(_json(e) for e in events)],
        )
        return int(written) == 1

    async def put_signoff(
        self, gate: str, criterion: str, signoff: Mapping[str, Any], event: Mapping[str, Any]
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.gates_signoffs, f"{gate}/{criterion}", _json(signoff))
            pipe.lpush(self.keys.gates_history, _json(event))
            pipe.ltrim(self.keys.gates_history, 0, HISTORY_CAP - 1)
            await pipe.execute()

    async def put_state(self, gate: str, state: GateState | None, event: Mapping[str, Any]) -> None:
        """An operator's change of a gate's state (re-open), with its history entry."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if state is not None:
                pipe.hset(self.keys.gates_state, gate, _json({**state.to_json(), "v": state.v + 1}))
            pipe.lpush(self.keys.gates_history, _json(event))
            pipe.ltrim(self.keys.gates_history, 0, HISTORY_CAP - 1)
            await pipe.execute()

    async def append(self, event: Mapping[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.keys.gates_history, _json(event))
            pipe.ltrim(self.keys.gates_history, 0, HISTORY_CAP - 1)
            await pipe.execute()

    async def history(self, limit: int, gate: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries (of one gate, when given), newest first. Bounded: reads at
        most HISTORY_CAP entries."""
        raw = await self.redis.lrange(
            self.keys.gates_history, 0, HISTORY_CAP - 1 if gate else limit - 1
        )
        out: list[dict[str, Any]] = []
        for item in raw:
            try:
                entry = orjson.loads(item)
            except ValueError:
                continue
            if gate is None or entry.get("gate") == gate:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out
