"""Child processes of the fleet: start, health-check, restart, stop.

What keeps supervision safe: every health check has a timeout and the monitor never overlaps
itself; an exit is seen at once (the child is awaited,
not polled); a restart stops the old process and waits for it to exit (port released) before
spawning; restarts back off exponentially within a budget, beyond which the service is `failed`
(no restart storm); one restart per service at a time (its lock, and a restart only acts on the
process it was asked about); the steps of pre-arm that concern a restarted service run again;
only processes started here are signalled, by pid; a dead child's pid is not reported. Each
child's output is relayed with its service's name in front (output_relay.py).

A service run as N > 1 replicas (`<NAME>_REPLICAS`) is N records, `coach#1` … `coach#N`, each
started, probed, restarted and stopped on its own exactly as a single process is. They share the
service's listening socket, bound here once and inherited (listeners.py); each is probed on its
own control port, since through the shared port any replica may answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from orchestrator.fleet_state import FleetState, ProcessRecord, ProcState
from orchestrator.listeners import Listeners
from orchestrator.output_relay import MAX_LINE_BYTES, OutputRelay
from orchestrator.prearm import Emit, HttpCaller, Prearm
from orchestrator.service_table import module_available, stop_waves
from orchestrator.settings import OrchestratorSettings
from shared.errors import ApiError
from shared.logging import get_logger

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1
READY_POLL_S = 0.05
PREARM_RETRY_GAP_S = 2.0
RESTART_SEEN_TOLERANCE_S = 0.25
OUTPUT_DRAIN_S = 1.0  # at shutdown, for the stopped children's last lines to be relayed
# What the orchestrator hands a replica; never passed on to a single process.
REPLICA_ENV = ("TOOLOO_REPLICA", "TOOLOO_LISTEN_FD", "TOOLOO_CONTROL_FD", "TOOLOO_CONTROL_PORT")


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child if the orchestrator dies without
    stopping it (e.g. SIGKILLed by honcho's kill timeout), so no child is orphaned."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def answering_pid(body: Any) -> int | None:
    """The pid a service's /health or /ready answer names (shared/observability.py)."""
    pid = body.get("pid") if isinstance(body, dict) else None
    return pid if isinstance(pid, int) else None


class Supervisor:
    def __init__(
        self,
        settings: OrchestratorSettings,
        state: FleetState,
        prearm: Prearm,
        http: HttpCaller,
        emit: Emit,
        on_change: Callable[[], Awaitable[None]],
        wait_redis: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.prearm = prearm
        self.http = http
        self.emit = emit
        self.on_change = on_change
        self.wait_redis = wait_redis
        self.manage = settings.manage
        self._main: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spawns: set[asyncio.Task[Any]] = set()
        self._initial_done = False
        # Children's output, prefixed by service; started with the first child.
        self._output: OutputRelay | None = None
        self._relays: set[asyncio.Task[None]] = set()
        # The replicated services' listening sockets and the replicas' control sockets.
        self.listeners = Listeners(settings.host)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="orchestrator-supervisor")

    async def _run(self) -> None:
        if self.wait_redis is not None:
            # Every service needs Redis to start: none is started (and no restart budget spent)
            # before it answers; meanwhile the phase is `waiting_for_redis`.
            self.state.waiting_for_redis = True
            await self.changed()
            await self.wait_redis()
        self.state.waiting_for_redis = False
        await self.changed()
        if self.manage:
            await self._start_fleet()
            await self.prearm.run()
        self._initial_done = True
        await self.changed()
        await self._monitor()

    async def shutdown(self) -> None:
        """Stop every child, coach first, then the rest wave by wave; SIGKILL after the grace
        period. Safe to call at any point of start-up."""
        self.state.stopping = True
        await self.changed()
        tasks = [t for t in (self._main, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A spawn in flight finishes (it is shielded) so its child is known and stopped below.
        await asyncio.gather(*self._spawns, return_exceptions=True)
        if not self.manage:
            return
        table = tuple({r.spec.name: r.spec for r in self.state.processes.values()}.values())
        for wave in stop_waves(table):
            records = [r for spec in wave for r in self.state.replicas_of(spec.name)]
            await asyncio.gather(*(self._terminate(r) for r in records))
            for record in records:
                if record.state is not ProcState.FAILED:
                    record.state = ProcState.STOPPED
        self.listeners.close_all()
        await self._close_output()
        log.info("fleet_stopped")

    async def _close_output(self) -> None:
        """The children are gone: relay what they wrote last, then stop the relay (bounded)."""
        if self._relays:
            _, pending = await asyncio.wait(self._relays, timeout=OUTPUT_DRAIN_S)
            for task in pending:  # a grandchild still holds the pipe open
                task.cancel()
        if self._output is not None:
            await self._output.close()

    def _background(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def changed(self) -> None:
        """The state changed: let the phase follow (and be announced if it moved)."""
        await self.on_change()

    # ---- start-up ----------------------------------------------------------------------------
    async def _start_fleet(self) -> None:
        # Each service starts as soon as the services it depends on are up (or have failed:
        # then it starts anyway and copes, rather than waiting forever); a service's replicas
        # start together, and it is settled once all of them are.
        services = {r.service: r.spec for r in self.state.processes.values()}
        settled = {name: asyncio.Event() for name in services}

        async def start_service(name: str) -> None:
            try:
                for dep in services[name].depends_on:
                    await settled[dep].wait()
                await asyncio.gather(
                    *(self._initial_start(r) for r in self.state.replicas_of(name))
                )
            finally:
                settled[name].set()

        await asyncio.gather(*(start_service(name) for name in services))

    async def _initial_start(self, record: ProcessRecord) -> None:
        async with record.lock:
            if not module_available(record.spec.module):
                record.state = ProcState.FAILED
                record.error = (
                    f"module {record.spec.module!r} cannot be run (not installed?); leave the "
                    "service out with ORCHESTRATOR_SERVICES or point ORCHESTRATOR_MODULE_"
                    f"{record.name.upper()} at it"
                )
                log.error("service_unavailable", service=record.name, error=record.error)
                await self.emit(record.name, "process_failed", error=record.error)
                await self.changed()
                return
            record.state = ProcState.STARTING
            await self.changed()
            if await self._spawn_and_wait(record):
                record.state = ProcState.RUNNING
            else:
                await self._restart_loop(record, reason=record.error or "start failed")
            await self.changed()

    # ---- processes ---------------------------------------------------------------------------
    async def _spawn(self, record: ProcessRecord) -> None:
        hook = _die_with_parent(os.getpid())
        if self._output is None:
            self._output = OutputRelay()
        output = self._output

        async def spawn() -> None:
            env, fds = self._child_env(record)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                record.spec.module,
                stdin=asyncio.subprocess.DEVNULL,
                # Relayed line by line with the service's name in front (output_relay.py).
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=MAX_LINE_BYTES,
                env=env,
                pass_fds=fds,
                # Its own process group: a Ctrl-C in the terminal reaches the orchestrator only,
                # which then stops the children in order.
                start_new_session=True,
                preexec_fn=hook,
            )
            # No await between the spawn and this bookkeeping, so a child is never unknown.
            record.proc = proc
            record.pid = proc.pid
            record.started_at = time.time()
            record.stopping = False
            record.healthy = False
            record.health_failures = 0
            record.watcher = asyncio.create_task(self._watch(record, proc))
            if proc.stdout is not None:  # always: a pipe was asked for
                relay = asyncio.create_task(output.relay(record.name, proc.stdout))
                self._relays.add(relay)
                relay.add_done_callback(self._relays.discard)

        task = asyncio.create_task(spawn())
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)
        await asyncio.shield(task)
        log.info("process_started", service=record.name, pid=record.pid)
        await self.emit(
            record.name,
            "process_started",
            pid=record.pid,
            port=record.port,
            module=record.spec.module,
            **({"control_port": record.control_port} if record.control_port else {}),
        )

    def _child_env(self, record: ProcessRecord) -> tuple[dict[str, str], tuple[int, ...]]:
        """The child's environment and the descriptors it inherits: for a replica, the service's
        listening socket and its own control socket (bound here at first use, kept across its
        restarts; an OSError, e.g. the port taken by another process, fails this spawn)."""
        env = {k: v for k, v in os.environ.items() if k not in REPLICA_ENV}
        if record.replica is None:
            return env, ()
        listener = self.listeners.get(record.service, record.port)
        control = self.listeners.get(
            record.name, self.settings.control_port_for(record.service, record.replica)
        )
        record.control_port = Listeners.port_of(control)
        env.update(
            TOOLOO_REPLICA=record.name,
            TOOLOO_LISTEN_FD=str(listener.fileno()),
            TOOLOO_CONTROL_FD=str(control.fileno()),
            TOOLOO_CONTROL_PORT=str(record.control_port),
        )
        return env, (listener.fileno(), control.fileno())

    def _probe_base(self, record: ProcessRecord) -> str | None:
        """Where one process is asked about itself: a replica on its control port (any replica
        may answer on the shared port), a single process on the service's URL (None)."""
        if record.control_port is None:
            return None
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{record.control_port}"

    async def _spawn_and_wait(self, record: ProcessRecord) -> bool:
        try:
            await self._spawn(record)
        except OSError as exc:
            record.error = f"spawn failed: {exc}"
            log.error("spawn_failed", service=record.name, error=record.error)
            return False
        proc = record.proc
        deadline = time.monotonic() + self.settings.ready_timeout_s
        squatter: int | None = None
        while True:  # bounded by the ready deadline and the child's exit
            if proc.returncode is not None:
                record.error = f"exited with code {proc.returncode} while starting"
                if squatter is not None:
                    record.error += f"; {self._squatted(record, squatter)}"
                await self._terminate(record)
                return False
            try:
                status, body = await self.http.get(
                    record.service,
                    record.spec.ready_path,
                    timeout_s=1.0,
                    base_url=self._probe_base(record),
                )
                if status == 200 and proc.returncode is None:
                    # Ready only if our child is the one answering: a stale or hostile process
                    # on the port answers too while the child is still importing (review 1.2).
                    answered = answering_pid(body)
                    if answered == proc.pid:
                        record.healthy = True
                        record.health_failures = 0
                        record.error = None
                        return True
                    if squatter is None:
                        log.warning(
                            "port_squatted",
                            service=record.name,
                            port=record.port,
                            child=proc.pid,
                            answered_by=answered,
                        )
                    squatter = answered if answered is not None else -1
            except ApiError:
                pass
            if time.monotonic() >= deadline:
                record.error = f"not ready after {self.settings.ready_timeout_s}s"
                if squatter is not None:
                    record.error += f"; {self._squatted(record, squatter)}"
                await self._terminate(record)
                return False
            await asyncio.sleep(READY_POLL_S)

    @staticmethod
    def _squatted(record: ProcessRecord, answered: int) -> str:
        who = f"pid {answered}" if answered >= 0 else "a process that gives no pid"
        port = record.control_port or record.port
        return f"port {port} is answered by {who}, not by the service's child"

    async def _watch(self, record: ProcessRecord, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        record.last_exit = {"code": code, "at": round(time.time(), 3)}
        expected = record.stopping or self.state.stopping
        current = record.proc is proc
        if current:
            record.pid = None
            record.healthy = False
        if current and not expected and record.state is ProcState.RUNNING:
            self._background(
                self.restart(record, f"exited with code {code}", expected_proc=proc),
                f"restart-{record.name}",
            )
        log.info("process_exited", service=record.name, pid=proc.pid, code=code, expected=expected)
        await self.emit(record.name, "process_exited", pid=proc.pid, code=code, expected=expected)

    async def _terminate(self, record: ProcessRecord) -> None:
        """SIGTERM the current child (by pid), SIGKILL after the grace period, wait for exit."""
        proc = record.proc
        if proc is None:
            return
        record.stopping = True
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.settings.stop_grace_s)
            except TimeoutError:
                log.warning("process_kill", service=record.name, pid=proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5.0)
        if record.watcher is not None:
            # The exit event is appended before anything else happens to this service.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(record.watcher), 2.0)
        record.pid = None
        record.healthy = False

    # ---- restarts ----------------------------------------------------------------------------
    async def restart(
        self,
        record: ProcessRecord,
        reason: str,
        *,
        expected_proc: Any = None,
        manual: bool = False,
    ) -> bool:
        async with record.lock:
            if self.state.stopping or not self.manage:
                return False
            if not manual and (
                record.state is not ProcState.RUNNING or record.proc is not expected_proc
            ):
                return False  # already handled: restarted, failed or stopped meanwhile
            if manual:
                record.restart_times.clear()
            log.warning("process_restart", service=record.name, reason=reason)
            record.state = ProcState.RESTARTING
            self.state.invalidate_steps_of(record.service)
            await self.changed()
            await self._terminate(record)
            ok = await self._restart_loop(record, reason)
        await self.changed()
        if ok:
            await self.prearm.run(self.state.steps_of(record.service))
        return ok

    async def _restart_loop(self, record: ProcessRecord, reason: str) -> bool:
        """Respawn until ready, backing off; `failed` once the budget is spent. Lock held."""
        budget = self.settings.restart_budget
        window = self.settings.restart_window_s
        while True:  # bounded: every pass spends one restart of the budget
            if self.state.stopping:
                return False
            now = time.monotonic()
            while record.restart_times and now - record.restart_times[0] > window:
                record.restart_times.popleft()
            if len(record.restart_times) >= budget:
                record.state = ProcState.FAILED
                record.failed_at = time.monotonic()
                record.error = (
                    f"{budget} restarts within {window:g}s; last: {record.error or reason}"
                )
                log.error("process_failed", service=record.name, error=record.error)
                await self.emit(
                    record.name, "process_failed", restarts=record.restarts, error=record.error
                )
                return False
            delay = min(
                self.settings.backoff_base_s * 2 ** len(record.restart_times),
                self.settings.backoff_max_s,
            )
            record.restart_times.append(now)
            record.state = ProcState.RESTARTING
            await self.changed()
            await asyncio.sleep(delay)
            if self.state.stopping:
                return False
            record.restarts += 1
            if await self._spawn_and_wait(record):
                record.state = ProcState.RUNNING
                await self.emit(
                    record.name,
                    "process_restarted",
                    pid=record.pid,
                    restarts=record.restarts,
                    reason=reason,
                    backoff_s=delay,
                )
                return True
            reason = record.error or reason

    # ---- operator actions --------------------------------------------------------------------
    async def stop_service(self, record: ProcessRecord) -> None:
        async with record.lock:
            record.state = ProcState.STOPPED
            self.state.invalidate_steps_of(record.service)
            await self._terminate(record)
        await self.changed()

    async def start_service(self, record: ProcessRecord) -> bool:
        async with record.lock:
            if record.state in (ProcState.RUNNING, ProcState.STARTING, ProcState.RESTARTING):
                return True
            record.restart_times.clear()
            record.error = None
            record.failed_at = None
            record.state = ProcState.STARTING
            self.state.invalidate_steps_of(record.service)
            await self.changed()
            ok = await self._spawn_and_wait(record)
            if ok:
                record.state = ProcState.RUNNING
            else:
                ok = await self._restart_loop(record, record.error or "start failed")
        await self.changed()
        if ok:
            await self.prearm.run(self.state.steps_of(record.service))
        return ok

    async def run_prearm(self, names: Sequence[str] | None = None) -> bool:
        return await self.prearm.run(names)

    def in_background(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run an operator action so that a client hanging up does not cancel it halfway."""
        return self._background(coro, name)

    # ---- monitoring --------------------------------------------------------------------------
    async def _monitor(self) -> None:
        interval = self.settings.health_interval_s
        while not self.state.stopping:  # ends by cancellation at shutdown
            t0 = time.monotonic()
            await asyncio.gather(*(self._check(r) for r in self.state.processes.values()))
            self._retry_failed()
            self._reconcile_prearm()
            await self.changed()
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - t0)))

    async def _check(self, record: ProcessRecord) -> None:
        if self.manage and (record.state is not ProcState.RUNNING or record.lock.locked()):
            return
        proc = record.proc
        body: Any = None
        try:
            status, body = await self.http.get(
                record.service,
                record.spec.health_path,
                timeout_s=self.settings.health_timeout_s,
                base_url=self._probe_base(record),
            )
            ok = status == 200
        except ApiError:
            ok = False
        if ok and self.manage and answering_pid(body) != record.pid:
            # Something else answers on the port (our child died and a squatter took it).
            log.warning(
                "port_squatted", service=record.name, port=record.control_port or record.port
            )
            ok = False
        if ok:
            self._healthy(record, body)
            return
        record.health_failures += 1
        if record.health_failures < self.settings.health_failures:
            return
        if record.healthy:
            log.warning("process_unhealthy", service=record.name, failures=record.health_failures)
        record.healthy = False
        if self.manage:
            self._background(
                self.restart(
                    record,
                    f"{record.health_failures} failed health checks",
                    expected_proc=proc,
                ),
                f"restart-{record.name}",
            )
        else:
            # Down: its pre-arm steps run again once it answers.
            self.state.invalidate_steps_of(record.service)

    def _retry_failed(self) -> None:
        """Start again, with a fresh budget, each service that failed for spending its restart
        budget ORCHESTRATOR_FAILED_RETRY seconds ago (each retry failing again waits as long)."""
        retry_s = self.settings.failed_retry_s
        if not self.manage or self.state.stopping or retry_s <= 0:
            return
        now = time.monotonic()
        for record in self.state.processes.values():
            failed_at = record.failed_at
            if record.state is not ProcState.FAILED or failed_at is None or record.lock.locked():
                continue
            if now - failed_at >= retry_s:
                record.failed_at = None  # once per failure: a new failure sets it again
                log.warning("process_failed_retry", service=record.name, after_s=retry_s)
                self._background(self.start_service(record), f"retry-{record.name}")

    def _healthy(self, record: ProcessRecord, body: Any) -> None:
        record.health_failures = 0
        if self.manage:
            record.healthy = True
            return
        uptime = body.get("uptime_s") if isinstance(body, dict) else None
        if isinstance(uptime, int | float):
            # When the answering process started, by its own clock: a start not seen before
            # means the platform restarted it between two checks (quicker than the failure
            # threshold), or started one more replica; either way its steps run again.
            started = time.time() - float(uptime)
            seen = record.seen_starts
            if not any(abs(started - s) <= RESTART_SEEN_TOLERANCE_S for s in seen):
                if seen:
                    log.info("external_restart_seen", service=record.name)
                    self.state.invalidate_steps_of(record.service)
                    # Recorded as a restart, so the gates' "zero crashes" sees crashes in
                    # observe mode (compose) too; a replica added by scaling reads the same.
                    self._background(
                        self._restart_seen(record.name, float(uptime)),
                        f"restart-seen-{record.name}",
                    )
                seen.append(started)
            record.seen_uptime_s = float(uptime)
        record.healthy = True

    async def _restart_seen(self, name: str, uptime_s: float) -> None:
        await self.emit(
            name,
            "process_restarted",
            reason="external restart seen (its /health uptime went back)",
            uptime_s=uptime_s,
        )

    def _reconcile_prearm(self) -> None:
        """Re-run steps that are not valid (failed, or their service came back), in pre-arm
        order: a step waits while an earlier invalid step's service is down."""
        if self.state.stopping or not self._initial_done or self.prearm.lock.locked():
            return
        if time.monotonic() - self.prearm.last_run_end < PREARM_RETRY_GAP_S:
            return
        pending: list[str] = []
        for step in self.state.steps.values():
            if step.valid:
                continue
            if not self.state.service_up(step.service):
                break
            pending.append(step.name)
        if pending:
            self._background(self.prearm.run(pending), "prearm")
