"""Folding the repeats of a benchmark run into one row per figure: the median and the spread.

The machine is shared and noisy, so one run proves little. `python -m loadtests.bench --repeats N`
runs every selected group N times (references included, re-measured in each repeat, so each
ratio compares figures taken minutes apart at most) and this module folds the N tables:

- `measured`: the median of the repeats; `spread`: "min–max" of them;
- `reference` and `ratio`: the medians of the repeats' references and ratios (the ratio's median,
  not the ratio of medians, so each ratio pairs figures of one repeat), each with its spread
  (`reference_spread`, `ratio_spread`);
- `passed`: the verdict of at least half the repeats (a figure that passed once in three did
  not pass); `result` says how many passed ("2/3").

Rows are matched by group and position within the group (figure names may carry counts that
vary between repeats); a repeat whose group came out with another number of rows (a benchmark
that failed half-way) is left out of that group and counted in `missing`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any


def _numbers(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _spread(values: list[float]) -> str:
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    return f"{lo:,.4g}–{hi:,.4g}" if lo != hi else f"{lo:,.4g}"


def fold(repeats: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per figure from the rows of each repeat (each a list of bench rows)."""
    if not repeats:
        return []
    by_group: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    order: list[str] = []
    for rows in repeats:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[r["group"]].append(r)
        for group, grows in groups.items():
            if group not in by_group:
                order.append(group)
            by_group[group].append(grows)
    out: list[dict[str, Any]] = []
    for group in order:
        runs = by_group[group]
        width = statistics.mode(len(g) for g in runs)
        whole = [g for g in runs if len(g) == width]
        for i in range(width):
            same = [g[i] for g in whole]
            first = same[0]
            measured = _numbers([r["measured"] for r in same])
            verdicts = [r["passed"] for r in same if r["passed"] is not None]
            passed: bool | None = None
            if verdicts:
                passed = sum(bool(v) for v in verdicts) * 2 >= len(verdicts)
            refs = _numbers([r.get("reference") for r in same])
            ratios = _numbers([r.get("ratio") for r in same])
            out.append(
                {
                    **first,
                    "measured": statistics.median(measured) if measured else first["measured"],
                    "spread": _spread(measured) if len(measured) > 1 else "—",
                    "reference": statistics.median(refs) if refs else None,
                    "reference_spread": _spread(refs) if len(refs) > 1 else "—",
                    "ratio": statistics.median(ratios) if ratios else None,
                    "ratio_spread": _spread(ratios) if len(ratios) > 1 else "—",
                    "passed": passed,
                    "passes": f"{sum(bool(v) for v in verdicts)}/{len(verdicts)}"
                    if verdicts
                    else "",
                    "repeats": len(same),
                    "missing": len(runs) - len(whole),
                    "samples": [r["measured"] for r in same],
                }
            )
    return out
