"""The fleet phase's changes, made known: logged and appended to the system events stream as
`fleet_phase`. Both the supervisor and pre-arm call it after they change the fleet's state, so
it depends on neither of them."""

from __future__ import annotations

from orchestrator.fleet_state import FleetState
from orchestrator.prearm import Emit
from shared.logging import get_logger

log = get_logger(__name__)


class PhaseAnnouncer:
    def __init__(self, state: FleetState, emit: Emit) -> None:
        self.state = state
        self.emit = emit

    async def __call__(self) -> None:
        phase, changed = self.state.update_phase()
        if changed:
            log.info("fleet_phase", phase=phase.value)
            await self.emit("orchestrator", "fleet_phase", phase=phase.value)
