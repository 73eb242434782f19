"""`python -m loadtests.gate --gate 2`, its judging on recorded figures: gate 2's own criteria
over the run's window, the sign-off rows (revenue) from the fleet's answer, and its 20 hours as
a row the run cannot cover, left to the fleet's record. The table an operator sees."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.gate import NOT_COVERED, judge, parse_signoffs, period_rows, sign_off_rows
from loadtests.report import format_table

REVENUE = {
    "id": "revenue_signal",
    "name": "Revenue Signal",
    "metric": None,
    "comparator": ">=",
    "target": 5.8,
    "unit": "%",
}
RECORD = {
    "hold_s": 72_000,
    "hold": "20 hours",
    "sealed": False,
    "seals_at": "2026-12-04T14:00:00.000Z",
    "passing_for_s": 600,
}


def measured(signed: bool, verdict: str = "PASS", **reports: Any) -> dict[str, Any]:
    revenue = dict(REVENUE, status="not_measured", measured=None)
    if signed:
        revenue.update(status="pass", measured=6.1, signed_off={"actor": "cfo", "value": 6.1})
    return {
        "locust": {"error_rate_pct": 0.02, "p95_ms": 38.0, "p99_ms": 90.0, "round_p99_s": 0.05},
        "reports": {
            "error_rate_pct": 0.01,
            "uptime_pct": 100.0,
            "coach": {"coverage": 0.97},
            "meta_trigger_misses": {"pct": 0.2, "idle": False},
            "learners": 50_000,
            "regions": 6,
            "restarts": 0,
            **reports,
        },
        "fleet_verdict": verdict,
        "fleet_record": RECORD,
        "fleet_gate": {"number": 2, "verdict": verdict, "criteria": [revenue]},
    }


def table(m: dict[str, Any], window_s: int = 1800) -> list[dict[str, Any]]:
    return judge(2, m) + sign_off_rows(m["fleet_gate"]) + period_rows(m["fleet_record"], window_s)


def test_gate2_passes_on_a_healthy_fleet_once_revenue_is_signed_off() -> None:
    rows = table(measured(signed=True))
    assert [r["criterion"] for r in rows if r["passed"] is False] == []
    revenue = next(r for r in rows if r["source"] == "sign-off")
    assert revenue["passed"] is True and "signed off by cfo" in revenue["measured"]
    text = format_table(
        rows,
        [("criterion", "criterion"), ("source", "source"), ("target", "target"),
         ("measured", "measured"), ("passed", "result")],
    )  # fmt: skip
    print(text)
    # The period the run could not cover is a row of the table, left to the fleet's record.
    period = next(line for line in text.splitlines() if "period: hold 20 hours" in line)
    assert "run covered 1800 s" in period and "seals at 2026-12-04T14:00" in period
    assert NOT_COVERED in period
    assert "Revenue Signal" in text and "FAIL" not in text


def test_without_the_signoff_revenue_fails_and_so_does_the_fleets_verdict() -> None:
    rows = table(measured(signed=False, verdict="CONDITIONAL PASS"))
    failed = {r["criterion"] for r in rows if r["passed"] is False}
    assert failed == {"Revenue Signal", "fleet's gate verdict"}
    revenue = next(r for r in rows if r["source"] == "sign-off")
    assert revenue["measured"] == "not signed off"


def test_no_meta_trigger_is_idle_not_a_failure_and_a_short_population_fails() -> None:
    idle = measured(signed=True, meta_trigger_misses={"pct": None, "idle": True}, learners=9_000)
    rows = {r["criterion"]: r for r in judge(2, idle)}
    assert rows["meta triggers missed or > 150 ms"]["measured"] == "idle"
    assert rows["meta triggers missed or > 150 ms"]["passed"] is True
    assert rows["learners"]["passed"] is False


def test_a_run_as_long_as_the_period_needs_no_period_row() -> None:
    assert period_rows(RECORD, 72_000) == []
    sealed = period_rows({**RECORD, "sealed": True, "sealed_at": "x"}, 60)
    assert "sealed at x" in sealed[0]["measured"]


def test_signoff_arguments() -> None:
    assert parse_signoffs(["revenue_signal=6.1"]) == [("revenue_signal", 6.1)]
    for bad in ("revenue_signal", "=6", "revenue_signal=lots"):
        with pytest.raises(SystemExit):
            parse_signoffs([bad])
