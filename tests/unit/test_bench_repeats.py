"""Folding a benchmark's repeats: medians, spreads, and a verdict of at least half the repeats."""

from __future__ import annotations

from loadtests.repeats import fold


def bench_row(group: str, figure: str, measured, passed, reference=None) -> dict:
    ratio = measured / reference if reference else None
    return {
        "group": group,
        "figure": figure,
        "measured": measured,
        "unit": "x",
        "reference": reference,
        "ratio": ratio,
        "target": "",
        "passed": passed,
    }


def test_median_spread_and_majority_verdict():
    runs = [
        [bench_row("t", "rate (97 calls)", 100.0, True, 400.0), bench_row("t", "p99", 30.0, False)],
        [bench_row("t", "rate (99 calls)", 300.0, False, 600.0), bench_row("t", "p99", 20.0, True)],
        [bench_row("t", "rate (98 calls)", 200.0, True, 500.0), bench_row("t", "p99", 22.0, True)],
    ]
    rate, p99 = fold(runs)
    assert rate["measured"] == 200.0 and rate["spread"] == "100–300"
    assert rate["reference"] == 500.0 and rate["ratio"] == 0.4  # median of 0.25, 0.5, 0.4
    assert rate["reference_spread"] == "400–600" and rate["ratio_spread"] == "0.25–0.5"
    assert p99["reference_spread"] == "—" and p99["ratio_spread"] == "—"  # no reference
    assert rate["passed"] is True and rate["passes"] == "2/3"
    assert p99["measured"] == 22.0 and p99["passed"] is True
    assert rate["figure"] == "rate (97 calls)"  # matched by position, named by the first


def test_one_pass_in_three_is_a_fail_and_a_broken_repeat_is_left_out():
    runs = [
        [bench_row("c", "rpm", 1.0, False), bench_row("c", "delay", 5.0, None)],
        [bench_row("c", "rpm", 2.0, True), bench_row("c", "delay", 6.0, None)],
        [bench_row("c", "c: benchmark failed", None, False)],  # failed half-way
        [bench_row("c", "rpm", 3.0, False), bench_row("c", "delay", 7.0, None)],
    ]
    rpm, delay = fold(runs)
    assert rpm["passed"] is False and rpm["passes"] == "1/3" and rpm["missing"] == 1
    assert delay["passed"] is None and delay["measured"] == 6.0
