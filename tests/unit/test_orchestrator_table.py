"""The orchestrator's data without processes: the service table and its configuration, stop
order, and the fleet phase derived from the process table and the pre-arm steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.fleet_state import FleetState, Phase, ProcessRecord, ProcState, StepRecord
from orchestrator.service_table import (
    DEFAULT_TABLE,
    TableError,
    load_table,
    module_available,
    stop_waves,
)


def test_table_selection_overrides_and_dependencies() -> None:
    table = load_table(None, {})
    assert [s.name for s in table] == ["training", "meta", "coach", "reports", "web"]
    assert table == DEFAULT_TABLE
    partial = load_table("coach, training", {"ORCHESTRATOR_MODULE_COACH": "pkg.other"})
    assert [s.name for s in partial] == ["training", "coach"]
    coach = partial[1]
    assert coach.module == "pkg.other"
    # meta is not supervised here, so the coach does not wait for it.
    assert coach.depends_on == ("training",)
    with pytest.raises(TableError):
        load_table("training,budget", {})


def test_stop_waves_put_the_coach_first_and_training_last() -> None:
    waves = [[s.name for s in wave] for wave in stop_waves(DEFAULT_TABLE)]
    assert waves[0] == ["coach"]
    assert waves[-1] == ["training"]
    assert sorted(n for wave in waves for n in wave) == sorted(s.name for s in DEFAULT_TABLE)


def test_module_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert module_available("orchestrator")  # a package with __main__
    assert not module_available("orchestrator.nope")
    assert not module_available("no_such_package_xyz")
    (tmp_path / "empty_pkg_xyz").mkdir()  # a namespace package cannot run with -m
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not module_available("empty_pkg_xyz")


def test_phase_follows_processes_and_steps() -> None:
    specs = {s.name: s for s in DEFAULT_TABLE}
    training = ProcessRecord(specs["training"], 1, ProcState.STARTING)
    coach = ProcessRecord(specs["coach"], 2, ProcState.STARTING)
    steps = [StepRecord("training", "training"), StepRecord("coach", "coach")]
    state = FleetState("manage", [training, coach], steps)
    assert state.update_phase() == (Phase.STARTING, True)
    training.state = coach.state = ProcState.RUNNING
    assert state.phase() is Phase.PRE_ARMING
    for step in steps:
        step.valid = step.ok = True
    assert state.update_phase() == (Phase.ARMED, True)
    assert state.armed_at is not None
    assert state.update_phase() == (Phase.ARMED, False)
    coach.state = ProcState.RESTARTING
    state.invalidate_steps_of("coach")
    assert state.phase() is Phase.STARTING and not steps[1].valid and steps[0].valid
    coach.state = ProcState.FAILED
    assert state.phase() is Phase.DEGRADED
    assert state.status_view()["services"]["coach"]["state"] == "failed"
    state.stopping = True
    assert state.phase() is Phase.STOPPING
