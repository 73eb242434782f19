"""Pre-arm: bring the fleet into its working state, checking every answer.

training ready → learner `default` started (never reset) → meta ready and started → coach
started with the fast lane on (weight 2, interval 600 ms). Each step waits for its service's
/ready, checks the response, and is retried with exponential back-off (bounded); its timing and
attempts are recorded and appended to the system events stream. No failure is swallowed,
nothing resets progress, and a restarted service gets its steps again.

The operator's settings win over pre-arm's defaults: the coach is started and its fast lane set
only on a fleet never configured (the coach's status says `configured` once anyone started or
stopped it, pre-arm's own first run included); a stopped coach stays stopped and a changed fast
lane stays changed through any restart, and a paused meta stays paused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.fleet_state import FleetState, StepRecord
from orchestrator.settings import OrchestratorSettings
from shared import fleet
from shared.errors import ApiError

READY_WAIT_S = 10.0
CALL_TIMEOUT_S = 3.0


class HttpCaller(Protocol):
    async def get(self, service: str, path: str, **kw: Any) -> tuple[int, Any]: ...

    async def post(
        self, service: str, path: str, json: Any = None, **kw: Any
    ) -> tuple[int, Any]: ...


Emit = Callable[..., Awaitable[None]]


class StepFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    service: str
    run: Callable[[HttpCaller, OrchestratorSettings], Awaitable[dict[str, Any]]]


def _expect_ok(what: str, status: int, body: Any) -> dict[str, Any]:
    if status != 200 or not isinstance(body, dict) or body.get("ok") is not True:
        raise StepFailed(f"{what} answered {status}: {_short(body)}")
    return body


def _short(body: Any) -> str:
    text = str(body)
    return text if len(text) <= 300 else text[:300] + "…"


async def wait_ready(http: HttpCaller, service: str, timeout_s: float = READY_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:  # bounded by the deadline
        try:
            status, body = await http.get(service, fleet.service(service).ready_path, timeout_s=1.0)
            if status == 200:
                return
            last = f"{status} {_short(body)}"
        except ApiError as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise StepFailed(f"{service} not ready after {timeout_s}s: {last}")
        await asyncio.sleep(0.1)


async def training_step(http: HttpCaller, _: OrchestratorSettings) -> dict[str, Any]:
    await wait_ready(http, "training")
    # {} = learner `default`, reset false: starting never erases progress.
    status, body = await http.post(
        "training", "/api/v1/training/start", {}, timeout_s=CALL_TIMEOUT_S
    )
    body = _expect_ok("training start", status, body)
    result = body.get("result") or {}
    if result.get("success") is False:
        raise StepFailed(f"training start refused: {_short(result)}")
    return {"learner": result.get("learner", "default")}


async def meta_step(http: HttpCaller, _: OrchestratorSettings) -> dict[str, Any]:
    await wait_ready(http, "meta")
    status, body = await http.post(
        "meta", "/api/v4/meta-learning/start", {}, timeout_s=CALL_TIMEOUT_S
    )
    error = body.get("error") if isinstance(body, dict) else None
    if status == 409 and isinstance(error, dict) and error.get("code") == "meta_paused":
        # Paused by an operator (a full pause): pre-arm leaves it paused.
        return {"kept": "meta is paused"}
    _expect_ok("meta start", status, body)
    return {}


def _find_fast_lane(body: Any) -> dict[str, Any] | None:
    """The fast-lane settings in an answer, wherever the coach put them."""
    if not isinstance(body, dict):
        return None
    for candidate in (body, body.get("status"), body.get("result"), body.get("settings")):
        if isinstance(candidate, dict):
            lane = candidate.get("fastLane")
            if isinstance(lane, dict):
                return lane
    return None


async def coach_step(http: HttpCaller, settings: OrchestratorSettings) -> dict[str, Any]:
    await wait_ready(http, "coach")
    # The operator's settings win: once the coach has been configured (started or stopped,
    # by pre-arm's first run or by anyone since), its stored state and fast lane stay as they
    # are; a crash and restart must not undo a stop or a changed fast lane.
    status, body = await http.get("coach", "/api/v1/auto-coach/status", timeout_s=CALL_TIMEOUT_S)
    current = _expect_ok("coach status", status, body).get("status") or {}
    if current.get("configured") is True:
        return {
            "fastLane": current.get("fastLane"),
            "active": current.get("active"),
            "kept": "the stored settings (the coach was configured before)",
        }
    status, body = await http.post(
        "coach", "/api/v1/auto-coach/start", {}, timeout_s=CALL_TIMEOUT_S
    )
    _expect_ok("coach start", status, body)
    want: dict[str, Any] = {}
    if settings.fast_lane_on:
        want = {
            "enable": True,
            "weight": settings.fast_lane_weight,
            "intervalMs": settings.fast_lane_interval_ms,
        }
        status, body = await http.post(
            "coach", "/api/v1/auto-coach/fast-lane", want, timeout_s=CALL_TIMEOUT_S
        )
        _expect_ok("coach fast-lane", status, body)
        shown = _find_fast_lane(body)
        if shown is not None:
            _check_fast_lane("fast-lane answer", shown, want)
    # The coach's own status is the proof: active, and the fast lane as asked.
    status, body = await http.get("coach", "/api/v1/auto-coach/status", timeout_s=CALL_TIMEOUT_S)
    body = _expect_ok("coach status", status, body)
    coach = body.get("status") or {}
    if coach.get("active") is not True:
        raise StepFailed(f"coach not active after start: {_short(coach)}")
    if want:
        lane = coach.get("fastLane")
        if not isinstance(lane, dict):
            raise StepFailed(f"coach status shows no fastLane: {_short(coach)}")
        _check_fast_lane("coach status", lane, want)
    return {"fastLane": coach.get("fastLane")}


def _check_fast_lane(where: str, lane: dict[str, Any], want: dict[str, Any]) -> None:
    enabled = lane.get("enabled", lane.get("enable"))
    if (
        enabled is not True
        or lane.get("weight") != want["weight"]
        or lane.get("intervalMs") != want["intervalMs"]
    ):
        raise StepFailed(f"{where} does not show the fast lane {want}: {_short(lane)}")


STEPS: tuple[StepSpec, ...] = (
    StepSpec("training", "training", training_step),
    StepSpec("meta", "meta", meta_step),
    StepSpec("coach", "coach", coach_step),
)


def steps_for(services: list[str]) -> list[StepSpec]:
    """The steps whose service is supervised (a step of an absent service is not required)."""
    return [s for s in STEPS if s.service in services]


class Prearm:
    def __init__(
        self,
        http: HttpCaller,
        state: FleetState,
        settings: OrchestratorSettings,
        emit: Emit,
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self.http = http
        self.state = state
        self.settings = settings
        self.emit = emit
        self.on_change = on_change
        self.specs = {s.name: s for s in STEPS if s.name in state.steps}
        # One pre-arm run at a time; a restart's steps queue behind a running full pre-arm.
        self.lock = asyncio.Lock()
        self.last_run_end = 0.0

    async def run(self, names: Sequence[str] | None = None) -> bool:
        """Run the given steps (default: all) in pre-arm order; stop at the first that fails,
        since each later step relies on the earlier ones. True when all succeeded."""
        wanted = [n for n in self.specs if names is None or n in names]
        async with self.lock:
            self.state.prearm_running = True
            await self.on_change()
            try:
                for name in wanted:
                    if self.state.stopping:
                        return False
                    if not await self._run_step(self.specs[name]):
                        return False
                return True
            finally:
                self.state.prearm_running = False
                self.last_run_end = time.monotonic()
                await self.on_change()

    def _given_up(self, service: str) -> bool:
        return self.state.service_given_up(service)

    async def _run_step(self, spec: StepSpec) -> bool:
        record: StepRecord = self.state.steps[spec.name]
        record.ok = None
        record.valid = False
        record.error = None
        record.attempts = 0
        record.runs += 1
        record.started_at = time.time()
        t0 = time.monotonic()
        delay = 0.2
        detail: dict[str, Any] = {}
        for attempt in range(1, self.settings.prearm_attempts + 1):
            record.attempts = attempt
            if self._given_up(spec.service):
                # Waiting for a service that failed or was stopped would only hold the lock.
                record.ok = False
                states = sorted({r.state.value for r in self.state.replicas_of(spec.service)})
                record.error = f"{spec.service} is {'/'.join(states)}"
                break
            try:
                detail = await spec.run(self.http, self.settings)
                record.ok = True
                record.error = None
                break
            except (StepFailed, ApiError) as exc:
                record.ok = False
                record.error = exc.message if isinstance(exc, ApiError) else str(exc)
            if attempt < self.settings.prearm_attempts and not self.state.stopping:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.prearm_backoff_max_s)
        record.duration_ms = round((time.monotonic() - t0) * 1000, 1)
        record.valid = bool(record.ok)
        await self.emit(
            spec.service,
            "prearm_step",
            step=spec.name,
            ok=bool(record.ok),
            attempts=record.attempts,
            duration_ms=record.duration_ms,
            error=record.error,
            **{k: v for k, v in detail.items() if isinstance(v, str | int | float | bool)},
        )
        return bool(record.ok)
