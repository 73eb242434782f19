"""The rollout's decisions: evaluate the gates on the fleet's metrics with the recorded
sign-offs, record what changed (services/web/gate_record.py, gate_store.py), and answer the
dashboard's summary from the record. Sign-offs and explicit re-openings are validated here.

Domain code: no aiohttp; the handlers in routes.py fetch the metrics and call these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.web import gate_record, gates
from services.web.gate_record import GateState
from services.web.gate_store import GateStore
from services.web.gates import GateTable
from shared.clock import iso_ms
from shared.domain_errors import ConflictError, NotFoundError, RequestMismatch


class UnknownGate(NotFoundError):
    """No gate of that id in the table (404)."""

    code = "unknown_gate"


class BadSignoff(RequestMismatch):
    """A sign-off for a criterion the gate does not have, or one the fleet measures (422)."""

    code = "invalid_criterion"


class NotSealed(ConflictError):
    """A re-open of a gate that is not sealed (409)."""

    code = "gate_not_sealed"


def gate_of(table: GateTable, gate_id: str) -> gates.Gate:
    found = next((g for g in table.gates if g.id == gate_id), None)
    if found is None:
        known = ", ".join(g.id for g in table.gates)
        raise UnknownGate(f"No gate {gate_id[:64]!r} (gates: {known})")
    return found


def _holds(table: GateTable) -> dict[str, tuple[int, str | None]]:
    return {g.id: (g.hold_s, g.hold) for g in table.gates}


def _phases(table: GateTable) -> dict[str, str | None]:
    return {g.id: g.phase_after for g in table.gates}


async def evaluate(
    store: GateStore,
    table: GateTable,
    metrics: Mapping[str, Any],
    *,
    available: bool,
    reason: str | None,
    now_ms: int,
    record: bool,
) -> dict[str, Any]:
    """The gates' summary on these metrics. With `record`, each gate's evaluation is recorded
    (verdict changes, seals, regressions); the dashboard's decisions always come from the
    record, so a reader with another window sees the same gates passed."""
    states, signoffs = await store.load()
    summary = gates.evaluate(
        table, metrics, metrics_available=available, unavailable_reason=reason, signoffs=signoffs
    )
    if record:
        earlier_sealed = True
        for result in summary["gates"]:
            gate = gate_of(table, result["id"])
            prev = states.get(gate.id)
            state, events = gate_record.step(prev, result, now_ms, gate.hold_s, earlier_sealed)
            expected = prev.v if prev is not None else 0
            if await store.record(gate.id, expected, state, events):
                states[gate.id] = GateState(**{**state.to_json(), "v": expected + 1})
            else:  # another replica recorded this gate first: show what is stored
                states = (await store.load())[0] | {}
            current = states.get(gate.id)
            earlier_sealed = (
                earlier_sealed and current is not None and current.sealed_at is not None
            )
    return gate_record.decide(summary, states, _holds(table), _phases(table), table.current_phase)


async def sign_off(
    store: GateStore,
    table: GateTable,
    gate_id: str,
    criterion: str,
    value: float,
    actor: str,
    note: str | None,
    now_ms: int,
) -> dict[str, Any]:
    """Record who stated what for a criterion the fleet cannot measure; checked first, so a bad
    sign-off records nothing."""
    gate = gate_of(table, gate_id)
    signable = gates.signable(gate)
    if criterion not in signable:
        measured = {c.id for c in gate.criteria} - set(signable)
        why = "is measured by the fleet" if criterion in measured else "is not a criterion of"
        raise BadSignoff(
            f"{criterion[:64]!r} {why} {gate.id}; sign-offs: {', '.join(sorted(signable))}"
        )
    signoff = {"value": value, "actor": actor, "note": note, "at": iso_ms(now_ms), "ms": now_ms}
    event = {"type": "signoff", "gate": gate.id, "criterion": criterion, **signoff}
    await store.put_signoff(gate.id, criterion, signoff, event)
    c = signable[criterion]
    result = gates.measure(c, None, signoff)
    return {"gate": gate.id, "criterion": criterion, "signoff": signoff, "status": result["status"]}


async def reopen(
    store: GateStore, table: GateTable, gate_id: str, actor: str, note: str | None, now_ms: int
) -> dict[str, Any]:
    """An operator's explicit re-open of a sealed gate, recorded with its actor."""
    gate = gate_of(table, gate_id)
    states, _ = await store.load()
    prev = states.get(gate.id)
    if prev is None or prev.sealed_at is None:
        raise NotSealed(f"{gate.id} is not sealed; only a passed gate can be re-opened")
    state, event = gate_record.reopen(prev, now_ms, gate.id, actor, note)
    await store.put_state(gate.id, state, event)
    return event
