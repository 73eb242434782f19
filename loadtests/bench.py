"""Every benchmark of the fleet in one command, side by side with references measured in the
same run, on the same machine, with the same client and concurrency.

    python -m loadtests.bench                 # everything (several minutes)
    python -m loadtests.bench --quick         # short durations, for a smoke check of the harness
    python -m loadtests.bench --only training,refs
    python -m loadtests.bench --repeats 3     # every group three times: medians and spreads

Groups (for --only):
  refs         the references: the bare aiohttp+uvloop endpoint (aiohttp client and, when
               installed, wrk; 32 connections), the Redis commit_rounds ceiling, and
               commit_rounds with an append-only file fsynced everysec vs always
               (TOOLOO_FSYNC; pipelined and one commit at a time), in the same run
  training     loadtests.bench_training: single round, batch, Redis memory per learner
  training-wrk training single-round driven by wrk, against a real training process, judged
               against the bare endpoint under the same wrk client
  coach        loadtests.bench_coach: coach capacity, meta trigger delay, the required 215 rpm
  boost        POST /api/v1/auto-coach/boost with rounds=20 against a running coach: p50/p99
  fleet        loadtests.bench_fleet: start to armed, recovery after kill -9

It prints one table (figure, measured = the median of the repeats, their spread, reference and
ratio with their spreads, target, how many repeats passed) and the load average around each
repeat, and writes every row, each repeat's rows, the references' details and the machine (with
those load averages) to loadtests/results/bench-<timestamp>.json (loadtests/repeats.py says how repeats
are folded). Exit code 1 when a figure misses its target in more than half the repeats
(benchmarks are not part of CI).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtests import reference, repeats
from loadtests.fleetctl import BenchFleet
from loadtests.report import format_table, results_path, stamp, write_json

GROUPS = ("refs", "training", "training-wrk", "coach", "boost", "fleet")
# Training single-round >= 24 % of the bare ceiling under wrk: parity with the original fleet
# (6,844 rounds/s against 28,082 for the bare endpoint, measured side by side, wrk -t2 -c32).
SINGLE_ROUND_SHARE = 0.24
ONE_LEARNER_SHARE = 0.8  # one learner's concurrent rounds >= 0.8x the many-learner rate
SINGLE_ROUND_P99_MS = 25.0
COACH_SHARE = 0.18  # coach capacity >= 18% of the Redis commit ceiling (it was 19.8–20.5 %)
COACH_MIN_RPM = 300_000.0
BOOST_P99_MS = 100.0
BOOST_PACE_S = 0.2  # the coach allows 60 boosts per 10 s per client; stay under it


@dataclass(slots=True)
class Durations:
    load_s: float  # one HTTP load run
    redis_s: float  # the Redis commit ceiling
    training: float  # bench_training's duration (20 s of single rounds by default)
    coach: float  # bench_coach's duration per phase (60 s by default)
    boosts: int  # boost calls measured

    @classmethod
    def pick(cls, quick: bool) -> Durations:
        return cls(5.0, 4.0, 5.0, 10.0, 30) if quick else cls(20.0, 10.0, 20.0, 60.0, 100)


class Refs:
    """References measured once per run, lazily, so --only measures just what it needs."""

    def __init__(self, durations: Durations) -> None:
        self.d = durations
        self._bare: dict[tuple[str, int], reference.LoadResult] = {}
        self._commit: reference.CommitResult | None = None
        self._fsync: dict[tuple[str, bool], reference.CommitResult] = {}
        self.body_bytes = 2500  # replaced by a real round response's size when one is measured

    def bare(self, client: str) -> reference.LoadResult:
        key = (client, self.body_bytes)
        if key not in self._bare:
            self._bare[key] = reference.bare_ceiling(
                self.body_bytes, seconds=self.d.load_s, client=client
            )
        return self._bare[key]

    def commit(self) -> reference.CommitResult:
        if self._commit is None:
            self._commit = reference.redis_commit_ceiling(seconds=self.d.redis_s)
        return self._commit

    def fsync_commit(self, mode: str, pipelined: bool) -> reference.CommitResult:
        """commit_rounds on a Redis with its append-only file fsynced as `mode` (TOOLOO_FSYNC):
        pipelined from 2 clients (throughput), or 1 client, one commit at a time (what each
        acknowledged round waits for)."""
        key = (mode, pipelined)
        if key not in self._fsync:
            self._fsync[key] = reference.redis_commit_ceiling(
                seconds=self.d.redis_s,
                appendonly=True,
                fsync=mode,
                **({} if pipelined else {"pipeline": 1, "clients": 1}),
            )
        return self._fsync[key]

    def details(self) -> dict[str, Any]:
        return {
            "bare": {f"{c}/{size}B": r.as_dict() for (c, size), r in self._bare.items()},
            "redis_commit": self._commit.as_dict() if self._commit else None,
            "redis_commit_fsync": {
                f"{mode}/{'pipelined' if piped else 'single'}": r.as_dict()
                for (mode, piped), r in self._fsync.items()
            },
            "seed_throughput_rpm": reference.SEED_THROUGHPUT_RPM,
        }


def row(
    group: str,
    figure: str,
    measured: Any,
    unit: str,
    target: str,
    passed: bool | None,
    *,
    reference_value: float | None = None,
    reference_name: str = "",
) -> dict[str, Any]:
    ratio = None
    if reference_value and isinstance(measured, int | float):
        ratio = float(measured) / reference_value
    return {
        "group": group,
        "figure": figure,
        "measured": measured,
        "unit": unit,
        "reference": reference_value,
        "reference_name": reference_name,
        "ratio": ratio,
        "target": target,
        "passed": passed,
    }


# ---- the bench modules -------------------------------------------------------------------------


def call_module(name: str, duration_s: float, quick: bool) -> list[dict[str, Any]]:
    """`loadtests.<name>.run(...)`, passing only the arguments its signature accepts."""
    module = importlib.import_module(f"loadtests.{name}")
    run: Callable[..., list[dict[str, Any]]] = module.run
    params = inspect.signature(run).parameters
    offered: dict[str, Any] = {
        "quick": quick,
        "duration_s": duration_s,
        "duration": duration_s,
        "seconds": duration_s,
    }
    kwargs = {k: v for k, v in offered.items() if k in params}
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in kwargs
    ]
    if missing:
        raise TypeError(f"loadtests.{name}.run needs arguments the harness cannot give: {missing}")
    return list(run(**kwargs))


def _target_text(raw: dict[str, Any]) -> str:
    return str(raw.get("target", ""))


def training_rows(refs: Refs, durations: Durations, quick: bool) -> list[dict[str, Any]]:
    raw_rows = call_module("bench_training", durations.training, quick)
    rows = []
    by_figure = {str(r.get("figure", "")).lower(): r for r in raw_rows}
    p99 = next((r["measured"] for f, r in by_figure.items() if "single" in f and "p99" in f), None)
    for raw in raw_rows:
        figure = str(raw.get("figure", ""))
        low = figure.lower()
        if "single" in low and "throughput" in low:
            # Same client as bench_training's figure: an aiohttp client, 32 connections.
            bare = refs.bare("aiohttp")
            share_ok = float(raw["measured"]) >= SINGLE_ROUND_SHARE * bare.rps
            p99_ok = p99 is not None and float(p99) <= SINGLE_ROUND_P99_MS
            rows.append(
                row(
                    "training",
                    figure,
                    raw["measured"],
                    str(raw.get("unit", "")),
                    f">= {SINGLE_ROUND_SHARE:.0%} of bare, p99 <= {SINGLE_ROUND_P99_MS:g} ms"
                    f" ({_target_text(raw)})",
                    share_ok and p99_ok and bool(raw.get("passed")),
                    reference_value=bare.rps,
                    reference_name="bare aiohttp+uvloop, aiohttp client, 32 conn",
                )
            )
            continue
        rows.append(
            row(
                "training",
                figure,
                raw.get("measured"),
                str(raw.get("unit", "")),
                _target_text(raw),
                raw.get("passed"),
            )
        )
    return rows


def training_wrk_rows(refs: Refs, durations: Durations) -> list[dict[str, Any]]:
    """Training single-round and the bare endpoint, both driven by wrk at 32 connections."""
    if reference.wrk_path() is None:
        return [row("training-wrk", "wrk not installed", None, "", "apt-get install wrk", None)]
    learners = [f"wrk-{i:04d}" for i in range(256)]
    with BenchFleet(prefix="benchwrk") as fleet:
        fleet.start("training")
        for learner in learners:
            status, _ = fleet.call(
                "training", "POST", "/api/v1/training/start", {"learner": learner}
            )
            if status != 200:
                raise RuntimeError(f"training/start answered {status}")
        # The reference answers a body of the real response's size.
        import urllib.request

        req = urllib.request.Request(
            fleet.url("training") + "/api/v1/training/round",
            data=b'{"learner": "wrk-0000"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            refs.body_bytes = len(resp.read())
        result = reference.load_http(
            fleet.url("training") + "/api/v1/training/round",
            learners,
            seconds=durations.load_s,
            client="wrk",
        )
        # The original's own workload: every request for one learner, whose rounds are serial;
        # concurrent ones are committed together (services/training/coalesce.py).
        one = reference.load_http(
            fleet.url("training") + "/api/v1/training/round",
            learners[:1],
            seconds=durations.load_s,
            client="wrk",
        )
    bare = refs.bare("wrk")
    one_ok = one.rps >= ONE_LEARNER_SHARE * result.rps and one.errors == 0
    share_ok = result.rps >= SINGLE_ROUND_SHARE * bare.rps
    return [
        row(
            "training-wrk",
            "training single-round (wrk)",
            result.rps,
            "rounds/s",
            f">= {SINGLE_ROUND_SHARE:.0%} of bare",
            share_ok and result.errors == 0,
            reference_value=bare.rps,
            reference_name=f"bare aiohttp+uvloop, wrk, 32 conn, {refs.body_bytes} B body",
        ),
        row(
            "training-wrk",
            "training single-round p99 (wrk)",
            result.p99_ms,
            "ms",
            f"<= {SINGLE_ROUND_P99_MS:g}",
            result.p99_ms <= SINGLE_ROUND_P99_MS,
            reference_value=bare.p99_ms,
            reference_name="bare p99",
        ),
        row(
            "training-wrk",
            "training single-round errors (wrk)",
            result.errors,
            "requests",
            "0",
            result.errors == 0,
        ),
        row(
            "training-wrk",
            "training single-round, one learner (wrk)",
            one.rps,
            "rounds/s",
            f">= {ONE_LEARNER_SHARE:g}x many learners",
            one_ok,
            reference_value=result.rps,
            reference_name=f"the same over {len(learners)} learners, same run",
        ),
        row(
            "training-wrk",
            "training single-round, one learner p99 (wrk)",
            one.p99_ms,
            "ms",
            f"<= {SINGLE_ROUND_P99_MS:g}",
            one.p99_ms <= SINGLE_ROUND_P99_MS,
        ),
    ]


def coach_rows(refs: Refs, durations: Durations, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for raw in call_module("bench_coach", durations.coach, quick):
        figure = str(raw.get("figure", ""))
        low = figure.lower()
        unit = str(raw.get("unit", ""))
        measured = raw.get("measured")
        is_rpm = "rounds/min" in unit.lower() or "rpm" in unit.lower()
        if is_rpm and any(w in low for w in ("default", "seed", "215")):
            rows.append(
                row(
                    "coach",
                    figure,
                    measured,
                    unit,
                    _target_text(raw),
                    raw.get("passed"),
                    reference_value=reference.SEED_THROUGHPUT_RPM,
                    reference_name="requirement: 215 rounds/min",
                )
            )
        elif is_rpm and any(w in low for w in ("capacity", "sustained")):
            ceiling = refs.commit().rounds_per_min
            ok = (
                isinstance(measured, int | float)
                and measured >= COACH_SHARE * ceiling
                and measured >= COACH_MIN_RPM
            )
            rows.append(
                row(
                    "coach",
                    figure,
                    measured,
                    unit,
                    f">= {COACH_SHARE:.0%} of Redis ceiling and >= {COACH_MIN_RPM:,.0f}",
                    ok and bool(raw.get("passed", True)),
                    reference_value=ceiling,
                    reference_name="Redis commit_rounds ceiling (pipelined clients)",
                )
            )
        else:
            rows.append(row("coach", figure, measured, unit, _target_text(raw), raw.get("passed")))
    return rows


def module_rows(group: str, name: str, duration_s: float, quick: bool) -> list[dict[str, Any]]:
    return [
        row(
            group,
            str(raw.get("figure", "")),
            raw.get("measured"),
            str(raw.get("unit", "")),
            _target_text(raw),
            raw.get("passed"),
        )
        for raw in call_module(name, duration_s, quick)
    ]


def boost_rows(durations: Durations) -> list[dict[str, Any]]:
    """Boosts of 20 rounds while the coach loop runs with the pre-arm defaults."""
    learners = [f"boost-{i:03d}" for i in range(50)]
    latencies: list[float] = []
    failures = 0
    with BenchFleet(prefix="benchboost") as fleet:
        fleet.start("training", "meta", "coach")
        for learner in learners:
            fleet.call("training", "POST", "/api/v1/training/start", {"learner": learner})
        fleet.prearm(learner=learners[0])
        for i in range(durations.boosts):  # bounded by the sample size
            started = time.perf_counter()
            status, body = fleet.call(
                "coach",
                "POST",
                "/api/v1/auto-coach/boost",
                {"learner": learners[i % len(learners)], "rounds": 20},
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            ok = status == 200 and isinstance(body, dict) and len(body.get("results") or []) == 20
            if ok:
                latencies.append(elapsed_ms)
            else:
                failures += 1
            time.sleep(max(0.0, BOOST_PACE_S - elapsed_ms / 1000))
    p50 = reference.percentile(latencies, 50) if latencies else None
    p99 = reference.percentile(latencies, 99) if latencies else None
    return [
        row("boost", "boost of 20 rounds p50", p50, "ms", "-", None),
        row(
            "boost",
            f"boost of 20 rounds p99 ({len(latencies)} calls)",
            p99,
            "ms",
            f"<= {BOOST_P99_MS:g}",
            p99 is not None and p99 <= BOOST_P99_MS,
        ),
        row("boost", "boost calls failed", failures, "calls", "0", failures == 0),
    ]


def ref_rows(refs: Refs) -> list[dict[str, Any]]:
    rows = []
    clients = ["aiohttp"] + (["wrk"] if reference.wrk_path() else [])
    for client in clients:
        bare = refs.bare(client)
        rows.append(
            row(
                "refs",
                f"bare aiohttp+uvloop endpoint ({client}, 32 conn)",
                bare.rps,
                "requests/s",
                f"p99 {bare.p99_ms:.2f} ms, {bare.errors} errors",
                None,
            )
        )
    commit = refs.commit()
    rows.append(
        row(
            "refs",
            f"Redis commit_rounds ceiling ({commit.clients} pipelined clients)",
            commit.rounds_per_min,
            "rounds/min",
            f"redis CPU {commit.redis_cpu_pct:.0f}%, {commit.state_bytes} B state",
            None,
        )
    )
    rows += fsync_rows(refs)
    rows.append(
        row(
            "refs",
            "throughput requirement",
            reference.SEED_THROUGHPUT_RPM,
            "rounds/min",
            "coach, at the pre-arm defaults",
            None,
        )
    )
    return rows


def fsync_rows(refs: Refs) -> list[dict[str, Any]]:
    """TOOLOO_FSYNC's cost, measured in this run: `always` against the default `everysec`
    (which may lose the last second of acknowledged rounds on a power loss)."""
    rows = []
    for pipelined in (True, False):
        everysec = refs.fsync_commit("everysec", pipelined)
        always = refs.fsync_commit("always", pipelined)
        how = f"{everysec.clients} pipelined clients" if pipelined else "1 client, unpipelined"
        for mode, result in (("everysec", everysec), ("always", always)):
            rows.append(
                row(
                    "refs",
                    f"Redis commit_rounds, AOF appendfsync {mode} ({how})",
                    result.rounds_per_min,
                    "rounds/min",
                    "TOOLOO_FSYNC cost: ratio to everysec"
                    if mode == "always"
                    else "default: may lose the last ~1 s on power loss",
                    None,
                    reference_value=everysec.rounds_per_min if mode == "always" else None,
                    reference_name=f"appendfsync everysec ({how})",
                )
            )
    return rows


# ---- the run -----------------------------------------------------------------------------------

COLUMNS = [
    ("figure", "figure"),
    ("measured", "measured"),
    ("spread", "spread"),
    ("unit", "unit"),
    ("reference", "reference"),
    ("reference_spread", "ref spread"),
    ("ratio", "ratio"),
    ("ratio_spread", "ratio spread"),
    ("target", "target"),
    ("result", "result"),
    ("passes", "passed"),
]


def run(groups: list[str], quick: bool) -> tuple[list[dict[str, Any]], Refs]:
    durations = Durations.pick(quick)
    refs = Refs(durations)
    steps: dict[str, Callable[[], list[dict[str, Any]]]] = {
        # training-wrk first: it measures a real round response, whose size the bare endpoint uses.
        "training-wrk": lambda: training_wrk_rows(refs, durations),
        "training": lambda: training_rows(refs, durations, quick),
        "coach": lambda: coach_rows(refs, durations, quick),
        "boost": lambda: boost_rows(durations),
        "fleet": lambda: module_rows("fleet", "bench_fleet", durations.training, quick),
        "refs": lambda: ref_rows(refs),
    }
    rows: list[dict[str, Any]] = []
    for group in steps:  # the order above, filtered by --only
        if group not in groups:
            continue
        print(f"[bench] {group} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            rows += steps[group]()
        except Exception as exc:
            traceback.print_exc()
            rows.append(row(group, f"{group}: benchmark failed", None, "", repr(exc)[:120], False))
        print(f"[bench] {group} done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    for r in rows:
        if r["passed"] is None:
            r["result"] = "ref" if r["group"] == "refs" else "info"
        else:
            r["result"] = "PASS" if r["passed"] else "FAIL"
    return rows, refs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run every benchmark of the fleet")
    parser.add_argument("--quick", action="store_true", help="short durations")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma list of {GROUPS}")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of every group (default 3; medians, spreads)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 20:
        parser.error("--repeats must be 1..20")
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown groups {unknown}; choose from {GROUPS}")
    started = time.time()
    runs: list[list[dict[str, Any]]] = []
    details: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    for n in range(args.repeats):  # bounded by --repeats
        print(f"[bench] repeat {n + 1}/{args.repeats}", file=sys.stderr, flush=True)
        # The machine's load average around each repeat: on a shared machine it says how far
        # the absolute figures (not the same-run ratios) can be compared with another run's.
        load_before = os.getloadavg()
        raw, refs = run(groups, args.quick)
        loads.append({"repeat": n + 1, "before": load_before, "after": os.getloadavg()})
        runs.append(raw)
        details.append(refs.details())
    rows = repeats.fold(runs)
    for r in rows:
        if r["passed"] is None:
            r["result"] = "ref" if r["group"] == "refs" else "info"
        else:
            r["result"] = "PASS" if r["passed"] else "FAIL"
    print()
    print(format_table(rows, COLUMNS))
    print(
        "load average (1 min) before → after each repeat: "
        + ", ".join(f"{x['before'][0]:.2f} → {x['after'][0]:.2f}" for x in loads)
        + f" ({os.cpu_count()} CPUs)"
    )
    out = write_json(
        results_path(f"bench-{stamp()}.json"),
        {
            "started": started,
            "seconds": time.time() - started,
            "quick": args.quick,
            "groups": groups,
            "machine": {
                "platform": platform.platform(),
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "load_average": loads,
            },
            "repeats": args.repeats,
            "rows": rows,
            "runs": runs,
            "references": details,
        },
    )
    print(f"\nresults: {out}")
    raise SystemExit(1 if any(r["passed"] is False for r in rows) else 0)


if __name__ == "__main__":
    main()
