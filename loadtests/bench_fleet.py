"""Fleet benchmark: the whole fleet started as an operator starts it (`honcho start`), measured.

Figures:
- time from `honcho start` to the orchestrator reporting `armed` (target ≤ 5 s);
- time from `kill -9` of the coach to coaching again (target ≤ 3 s): the orchestrator has
  restarted it and the fleet's round counter rises again after the new coach is up.

    python -m loadtests.bench_fleet

The fleet is `harness.honcho.HonchoFleet`, the one the fleet-level integration tests start.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from harness.honcho import HonchoFleet

ARMED_TARGET_S = 5.0
COACH_RECOVERY_TARGET_S = 3.0


# ---- the benchmark ---------------------------------------------------------------------------
def _row(figure: str, measured: float | None, unit: str, target: float) -> dict[str, Any]:
    passed = measured is not None and measured <= target
    return {
        "figure": figure,
        "measured": None if measured is None else round(measured, 3),
        "unit": unit,
        "target": f"<= {target:g}",
        "passed": passed,
    }


def measure_coach_recovery(fleet: HonchoFleet, timeout_s: float = 30.0) -> float:
    """kill -9 the coach; seconds until a round is committed after the new coach is up."""
    old = fleet.processes()["coach"]["pid"]
    t_kill = time.monotonic()
    os.kill(old, signal.SIGKILL)

    def new_coach() -> int | None:
        coach = fleet.processes().get("coach") or {}
        pid = coach.get("pid")
        return pid if pid and pid != old and coach.get("state") == "running" else None

    fleet.wait_for(new_coach, timeout_s, "coach restarted", poll_s=0.02)
    base = fleet.rounds_committed()
    fleet.wait_for(lambda: fleet.rounds_committed() > base, timeout_s, "rounds", poll_s=0.02)
    return time.monotonic() - t_kill


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    samples_wanted = 1 if quick else 3
    fleet = HonchoFleet()
    try:
        fleet.start()
        try:
            fleet.wait_armed(timeout_s=60)
            armed_s: float | None = time.monotonic() - fleet.started_at
        except (TimeoutError, RuntimeError) as exc:
            print(exc, file=sys.stderr)
            armed_s = None
        rows.append(_row("honcho start -> armed", armed_s, "s", ARMED_TARGET_S))
        recovery: float | None = None
        if armed_s is not None and "coach" in fleet.processes():
            # Let the coach run a moment so "again" means something.
            fleet.wait_for(lambda: fleet.rounds_committed() > 0, 30, "first rounds")
            samples = []
            for _ in range(samples_wanted):
                samples.append(measure_coach_recovery(fleet))
                fleet.wait_armed(timeout_s=30)
            recovery = max(samples)
            print(f"coach recovery samples (s): {[round(s, 3) for s in samples]}")
        rows.append(
            _row(
                f"kill -9 coach -> coaching again (worst of {samples_wanted})",
                recovery,
                "s",
                COACH_RECOVERY_TARGET_S,
            )
        )
    finally:
        fleet.stop()
        fleet.cleanup()
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'figure':<48} {'measured':>10} {'unit':<5} {'target':<8} passed")
    for row in rows:
        measured = "-" if row["measured"] is None else f"{row['measured']:.3f}"
        print(
            f"{row['figure']:<48} {measured:>10} {row['unit']:<5} {row['target']:<8} "
            f"{'yes' if row['passed'] else 'NO'}"
        )


if __name__ == "__main__":
    print_table(run())
