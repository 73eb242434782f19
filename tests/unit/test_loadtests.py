"""The pure parts of the load-test harness: reading wrk's output, judging a gate, the table.

(Locust's own modules are not imported here: importing locust monkey-patches the process with
gevent. The locustfile runs in tests/integration/test_locust_smoke.py, in a subprocess.)
"""

from __future__ import annotations

import pytest

from loadtests.chaos import locust_failures_between
from loadtests.gate import judge, period_notes
from loadtests.reference import parse_wrk, percentile
from loadtests.report import fmt, format_table

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:40000/api/v1/training/round
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms    0.52ms  15.20ms   90.00%
    Req/Sec    15.00k     1.20k   17.00k    70.00%
  Latency Distribution
     50%    0.98ms
     75%    1.20ms
     90%    1.60ms
     99%    2.50ms
  149000 requests in 5.00s, 170.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  29800.50
Transfer/sec:     34.00MB
"""


def test_parse_wrk_reads_rate_percentiles_and_every_kind_of_error() -> None:
    result = parse_wrk(WRK_OUTPUT, 5.0, 32)
    assert result.requests == 149_000
    assert result.rps == pytest.approx(29_800.5)
    assert result.p50_ms == pytest.approx(0.98)
    assert result.p99_ms == pytest.approx(2.5)
    assert result.errors == 7 + 3  # non-2xx plus socket errors


def test_parse_wrk_converts_microseconds_and_seconds() -> None:
    out = WRK_OUTPUT.replace("0.98ms", "850.00us").replace("2.50ms", "1.20s")
    result = parse_wrk(out, 5.0, 32)
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p99_ms == pytest.approx(1200.0)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0


def _measured(**reports: object) -> dict[str, object]:
    return {
        "locust": {"error_rate_pct": 0.1, "p95_ms": 40.0, "p99_ms": 90.0, "round_p99_s": 0.05},
        "reports": {
            "uptime_pct": 100.0,
            "coach": {
                "throughput_rounds_per_min": 5000.0,
                "demand_throughput": {"idle": False, "p10": 5000, "demand_minutes": 3},
            },
            "round_latency_ms": {"p99": 12.0},
            "meta_trigger_delay_ms": {"p99": 30.0, "count": 4},
            "restarts": 0,
            **reports,
        },
        "fleet_verdict": "GO",
    }


def test_gate_1_passes_on_good_figures() -> None:
    rows = judge(1, _measured())
    assert all(row["passed"] for row in rows), rows


def test_gate_1_fails_below_the_seed_throughput_and_on_a_restart() -> None:
    slow = {"demand_throughput": {"idle": False, "p10": 200, "demand_minutes": 3}}
    rows = judge(1, _measured(coach=slow, restarts=1))
    failed = {row["criterion"] for row in rows if not row["passed"]}
    assert failed == {"coach throughput", "critical restarts"}


def test_an_idle_coach_is_not_a_throughput_failure() -> None:
    idle = {"demand_throughput": {"idle": True, "p10": None, "demand_minutes": 0}}
    row = next(r for r in judge(1, _measured(coach=idle)) if r["criterion"] == "coach throughput")
    assert row["measured"] == "idle" and row["passed"] is True


def test_a_period_longer_than_the_run_is_left_to_the_fleet() -> None:
    record = {"hold_s": 72000, "hold": "20 hours", "seals_at": None}
    (note,) = period_notes(record, 1800)
    assert "20 hours" in note and "1800 s" in note and "fleet's own record decides" in note
    assert period_notes({"hold_s": 600, "hold": "10 min"}, 1800) == []


def test_a_criterion_with_nothing_measured_fails() -> None:
    rows = judge(1, _measured(meta_trigger_delay_ms={"p99": 0.0, "count": 0}))
    meta = next(row for row in rows if row["criterion"] == "meta trigger delay p99")
    assert meta["measured"] == "not measured"
    assert meta["passed"] is False


def test_table_formats_numbers_and_verdicts() -> None:
    assert fmt(1234567.8) == "1,234,568"
    assert fmt(None) == "—"
    assert fmt(True) == "PASS"
    table = format_table([{"a": 1.5, "b": False}], [("a", "A"), ("b", "B")])
    assert table.splitlines()[0].split() == ["A", "B"]
    assert table.splitlines()[2].split() == ["1.50", "FAIL"]


def test_chaos_window_counts_failures_of_the_row_written_in_the_kill_second() -> None:
    # Rows stamped int(time) at writing: the row stamped 115 was written after a kill at 115.05
    # and already holds its first failures; they belong to the fault window, not before it.
    history = [(113.0, 1000, 2), (114.0, 1100, 2), (115.0, 1200, 278), (116.0, 1300, 491)]
    assert locust_failures_between(history, 115.05, 117.5) == 489
    # A kill on a whole second: the row stamped that second may be written after it too.
    assert locust_failures_between(history, 115.0, 117.5) == 489
    # A window after all failures counts none.
    assert locust_failures_between(history, 117.0, 120.0) == 0
