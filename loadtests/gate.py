"""Run a rollout gate (services/web/gates.json) as a load test and judge it.

    python -m loadtests.gate --gate 1 --minutes 10                 # against the fleet on :3000
    python -m loadtests.gate --gate 1 --minutes 3 --start-fleet    # against a private fleet
    python -m loadtests.gate --gate 2 --minutes 30 --host http://10.0.0.5:3000

It runs Locust headless (the locustfile plus the ramp shape with the gate's population stages)
for N minutes, then checks the gate's criteria against two independent sources:

- Locust's own statistics, the client's view: error rate, p95 and p99 over every request, and
  the training round p99;
- the fleet's reports (`GET /api/v1/reports/metrics` over the run's window): uptime, coach
  throughput over the minutes learners needed coaching (at least the fleet's requirement of 215
  rounds/min; "idle" when none did), round time, meta trigger delay (p99), restarts, learners;
  and the fleet's own verdict for the gate over the same window
  (`GET /api/v1/system/gates?window=`);
- the fleet's sign-offs, for the criteria it cannot measure (gate 2's revenue signal): a row per
  criterion, passed only once someone signed it off (`--signoff revenue_signal=6.1 --actor cfo`
  records one before the run, as `POST /api/v1/system/gates/{id}/signoff` does).

The run judges its own window. A gate's own period ("hold 20 hours") longer than the run is a
row of the table too, "not covered": it does not fail the run, the fleet's decision record
decides it (the row says where the record stands: passing since when, sealed at).

It prints a table of target vs measured, writes Locust's CSV and HTML report and a JSON summary
under loadtests/results/, and exits 1 when a criterion fails (2 when the run itself failed). A
criterion with nothing measured (for instance no learner became ready, so no meta trigger delay)
fails: a gate passes on evidence only.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.http import probe_json
from harness.processes import ROOT
from loadtests.fleetctl import BenchFleet
from loadtests.report import format_table, results_path, stamp, write_json

SEED_COACH_RPM = 215.0


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    source: str  # "locust", "reports" or "fleet"
    comparator: str  # "<", "<=", ">", ">=", "==", "in" (threshold "A|B": one of them)
    threshold: float | str
    unit: str
    get: Callable[[dict[str, Any]], float | str | None]


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _reports(path: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def get(m: dict[str, Any]) -> float | None:
        value = _dig(m.get("reports"), path)
        return float(value) * scale if isinstance(value, int | float) else None

    return get


def _meta_delay_p99(m: dict[str, Any]) -> float | None:
    # No trigger in the window means nothing was measured, not a delay of zero.
    if not _dig(m.get("reports"), "meta_trigger_delay_ms.count"):
        return None
    return _reports("meta_trigger_delay_ms.p99")(m)


def _idle_or(path: str, field: str) -> Callable[[dict[str, Any]], float | str | None]:
    """A reports reading that may be idle: "idle" when the window had nothing to judge (no
    failure), else its `field` as a number (None when absent)."""

    def read(m: dict[str, Any]) -> float | str | None:
        reading = _dig(m.get("reports"), path)
        if not isinstance(reading, dict):
            return None
        if reading.get("idle") is True:
            return "idle"
        value = reading.get(field)
        return float(value) if isinstance(value, int | float) else None

    return read


# The coach's pace over the minutes learners needed coaching (the floor held 90 % of them).
_demand_throughput = _idle_or("coach.demand_throughput", "p10")
# Meta triggers missed or later than 150 ms, in % of all triggers.
_misses_pct = _idle_or("meta_trigger_misses", "pct")


def _locust(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda m: _dig(m.get("locust"), key)


def _fleet_verdict(m: dict[str, Any]) -> str | None:
    return m.get("fleet_verdict")


# The rollout gates' pass thresholds (services/web/gates.json); coach throughput uses the fleet's
# requirement of 215 rpm, which is stricter than gate 1's 90 rpm threshold.
GATES: dict[int, dict[str, Any]] = {
    1: {
        "title": "Gate 1: pre-ramp go/no-go (load test 5K → 10K learners)",
        "stages": "5000,10000",
        "criteria": [
            Criterion("error rate", "locust", "<", 0.6, "%", _locust("error_rate_pct")),
            Criterion("latency p95", "locust", "<", 250, "ms", _locust("p95_ms")),
            Criterion("latency p99", "locust", "<", 600, "ms", _locust("p99_ms")),
            Criterion("uptime", "reports", ">", 99.90, "%", _reports("uptime_pct")),
            Criterion(
                "coach throughput",
                "reports",
                ">=",
                SEED_COACH_RPM,
                "rounds/min",
                _demand_throughput,
            ),
            Criterion(
                "training round time p99",
                "reports",
                "<",
                7,
                "s",
                _reports("round_latency_ms.p99", 0.001),
            ),
            Criterion("training round p99 (client)", "locust", "<", 7, "s", _locust("round_p99_s")),
            Criterion("meta trigger delay p99", "reports", "<", 150, "ms", _meta_delay_p99),
            Criterion("critical restarts", "reports", "<=", 0, "restarts", _reports("restarts")),
            Criterion("fleet's gate verdict", "fleet", "in", "GO|PASS", "", _fleet_verdict),
        ],
    },
    # Gate 2's own criteria (gates.json), each judged over the run's window; its revenue signal
    # is a sign-off row (sign_off_rows), its 20 hours a period row (period_rows).
    2: {
        "title": "Gate 2: full rollout (5K → 10K → 25K → 50K learners, then sustain)",
        "stages": "5000,10000,25000,50000",
        "criteria": [
            Criterion("error rate", "locust", "<", 0.1, "%", _locust("error_rate_pct")),
            Criterion("latency p95", "locust", "<", 100, "ms", _locust("p95_ms")),
            Criterion("error rate (fleet)", "reports", "<", 0.1, "%", _reports("error_rate_pct")),
            Criterion("uptime", "reports", ">", 99.99, "%", _reports("uptime_pct")),
            # reports answers coverage as a share in [0, 1]
            Criterion("coach coverage", "reports", ">", 90, "%", _reports("coach.coverage", 100)),
            Criterion("meta triggers missed or > 150 ms", "reports", "<", 1, "%", _misses_pct),
            Criterion("learners", "reports", ">=", 50_000, "learners", _reports("learners")),
            Criterion("regions with learners", "reports", ">=", 1, "regions", _reports("regions")),
            Criterion("critical restarts", "reports", "<=", 0, "restarts", _reports("restarts")),
            Criterion("fleet's gate verdict", "fleet", "in", "GO|PASS", "", _fleet_verdict),
        ],
    },
}


def compare(value: float | str, comparator: str, threshold: float | str) -> bool:
    if value == "idle":  # no demand in the window: nothing to judge a pace on, nothing wrong
        return True
    if comparator == "==":
        return value == threshold
    if comparator == "in":
        return str(value) in str(threshold).split("|")
    v, t = float(value), float(threshold)
    return {"<": v < t, "<=": v <= t, ">": v > t, ">=": v >= t}[comparator]


# ---- Locust ------------------------------------------------------------------------------------


def run_locust(
    *,
    host: str,
    seconds: int,
    stages: str,
    csv_prefix: Path,
    html: Path,
    training_host: str | None,
    users_per_k: float,
    population: int,
    token: str | None,
) -> int:
    locustfiles = f"{ROOT / 'loadtests' / 'locustfile.py'},{ROOT / 'loadtests' / 'shapes.py'}"
    n_stages = len([s for s in stages.split(",") if s])
    env = dict(os.environ)
    env.update(
        {
            "TOOLOO_RAMP_STAGES": stages,
            # The run is split evenly between the stages plus a final sustain of one stage.
            "TOOLOO_RAMP_STAGE_S": str(seconds / (n_stages + 1)),
            "TOOLOO_RAMP_USERS_PER_K": str(users_per_k),
            "TOOLOO_LOAD_POPULATION": str(population),
        }
    )
    if token:
        env["TOOLOO_API_TOKEN"] = token
    if training_host:
        env["TOOLOO_LOAD_TRAINING_HOST"] = training_host
    cmd = [
        sys.executable, "-m", "locust", "-f", locustfiles, "--headless",
        "--host", host, "--run-time", f"{seconds}s", "--stop-timeout", "5",
        "--csv", str(csv_prefix), "--html", str(html), "--only-summary",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    # Locust's exit code is 1 when any request failed; the criteria below judge that instead.
    return subprocess.run(cmd, cwd=ROOT, env=env, timeout=seconds + 120, check=False).returncode


def read_locust_stats(csv_prefix: Path) -> dict[str, Any]:
    """The aggregated row of Locust's `_stats.csv`, plus the training round's p99."""
    path = Path(f"{csv_prefix}_stats.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_name = {row["Name"]: row for row in rows}
    agg = by_name.get("Aggregated")
    if agg is None or int(agg["Request Count"]) == 0:
        raise RuntimeError(f"Locust made no requests (see {path})")
    requests, failures = int(agg["Request Count"]), int(agg["Failure Count"])
    round_row = by_name.get("training POST /api/v1/training/round")
    return {
        "requests": requests,
        "failures": failures,
        "error_rate_pct": failures / requests * 100,
        "rps": float(agg["Requests/s"]),
        "p50_ms": _num(agg["50%"]),
        "p95_ms": _num(agg["95%"]),
        "p99_ms": _num(agg["99%"]),
        "round_p99_s": _num(round_row["99%"]) / 1000 if round_row else None,
        "by_name": {
            name: {"requests": int(r["Request Count"]), "failures": int(r["Failure Count"])}
            for name, r in by_name.items()
            if name != "Aggregated"
        },
    }


def _num(text: str) -> float:
    return float(text) if text not in ("", "N/A") else float("nan")


# ---- the fleet's side --------------------------------------------------------------------------


def fleet_view(host: str, gate: int, window_s: int, token: str | None) -> dict[str, Any]:
    status, body = probe_json(
        "GET", f"{host}/api/v1/reports/metrics?window={window_s}", timeout=10, token=token
    )
    if status != 200:  # a window the reports service refuses: fall back to its default
        status, body = probe_json("GET", f"{host}/api/v1/reports/metrics", timeout=10, token=token)
    reports = body.get("metrics") if status == 200 and isinstance(body, dict) else None
    # The fleet's verdict for the gate over this run's own window (not its default minute).
    status, gates = probe_json(
        "GET", f"{host}/api/v1/system/gates?window={window_s}", timeout=10, token=token
    )
    verdict, record, found = None, None, None
    if status == 200 and isinstance(gates, dict):
        for entry in gates.get("gates") or []:
            if isinstance(entry, dict) and entry.get("number") == gate:
                verdict, record, found = entry.get("verdict"), entry.get("record"), entry
    return {
        "reports": reports,
        "fleet_verdict": verdict,
        "fleet_record": record,
        "fleet_gate": found,
        "gates_status": status,
    }


def sign_off_rows(fleet_gate: Any) -> list[dict[str, Any]]:
    """One row per criterion the fleet cannot measure (metric null), from the fleet's own
    answer: passed once someone signed it off with a value that meets it, never guessed."""
    if not isinstance(fleet_gate, dict):
        return []
    rows = []
    for c in fleet_gate.get("criteria") or []:
        if not isinstance(c, dict) or c.get("metric") is not None:
            continue
        signed = c.get("signed_off") if isinstance(c.get("signed_off"), dict) else None
        measured: Any = "not signed off"
        if signed is not None:
            measured = f"{c.get('measured')} (signed off by {signed.get('actor')})"
        rows.append(
            {
                "criterion": str(c.get("name") or c.get("id")),
                "source": "sign-off",
                "target": f"{c.get('comparator')} {c.get('target')} {c.get('unit')}".strip(),
                "measured": measured,
                "passed": c.get("status") == "pass",
            }
        )
    return rows


NOT_COVERED = "not covered: the fleet decides"


def period_rows(record: Any, window_s: int) -> list[dict[str, Any]]:
    """The gate's own period as a row when this run's window cannot cover it: not a failure of
    the run; the row says where the fleet's decision record stands."""
    if not isinstance(record, dict):
        return []
    hold_s = record.get("hold_s")
    if not isinstance(hold_s, int) or hold_s <= window_s:
        return []
    if record.get("sealed"):
        stands = f"sealed at {record.get('sealed_at')}"
    elif record.get("seals_at"):
        stands = f"passing for {record.get('passing_for_s', 0)} s, seals at {record['seals_at']}"
    else:
        stands = "not passing yet"
    return [
        {
            "criterion": f"period: hold {record.get('hold') or f'{hold_s} s'}",
            "source": "fleet record",
            "target": f">= {hold_s} s",
            "measured": f"run covered {window_s} s; record: {stands}",
            "passed": NOT_COVERED,
        }
    ]


def period_notes(record: Any, window_s: int) -> list[str]:
    """What of the gate's own period ("must hold 20 hours") this run's window could not cover:
    those requirements are the fleet's to decide, from its decision record."""
    if not isinstance(record, dict):
        return []
    hold_s = record.get("hold_s")
    if not isinstance(hold_s, int) or hold_s <= window_s:
        return []
    text = record.get("hold") or f"{hold_s} s"
    seals = record.get("seals_at")
    fleet = f"the fleet seals it at {seals} if it keeps passing" if seals else "not yet passing"
    return [
        f"period not covered: the gate must hold {text} ({hold_s} s); this run covered "
        f"{window_s} s. The fleet's own record decides ({fleet}; "
        "GET /api/v1/system/gates, `record`)"
    ]


def judge(gate: int, measured: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in GATES[gate]["criteria"]:
        value = c.get(measured)
        if isinstance(value, float) and value != value:
            value = None
        passed = value is not None and compare(value, c.comparator, c.threshold)
        rows.append(
            {
                "criterion": c.name,
                "source": c.source,
                "target": f"{c.comparator} {c.threshold} {c.unit}".strip(),
                "measured": value if value is not None else "not measured",
                "passed": passed,
            }
        )
    return rows


def parse_signoffs(items: list[str]) -> list[tuple[str, float]]:
    """`criterion=value` pairs of --signoff; a malformed one is a usage error."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SystemExit(f"--signoff {item!r}: expected CRITERION=NUMBER")
    return out


def record_signoffs(
    host: str, gate: int, signoffs: list[tuple[str, float]], actor: str, note: str | None,
    token: str | None,
) -> None:  # fmt: skip
    """Record the sign-offs in the fleet (who stated what) before the run; the fleet refuses a
    criterion it measures itself or does not have, and so does this run then."""
    status, body = probe_json("GET", f"{host}/api/v1/system/gates", timeout=10, token=token)
    entries = body.get("gates") if status == 200 and isinstance(body, dict) else None
    gate_id = next((g["id"] for g in entries or [] if g.get("number") == gate), None)
    if gate_id is None:
        raise SystemExit(f"the fleet at {host} did not list gate {gate} (HTTP {status})")
    for criterion, value in signoffs:
        payload = {"criterion": criterion, "value": value, "actor": actor, "note": note}
        status, answer = probe_json(
            "POST", f"{host}/api/v1/system/gates/{gate_id}/signoff", payload, token=token
        )
        if status != 200:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise SystemExit(f"sign-off {criterion} refused ({status}): {error.get('message')}")
        print(f"signed off {gate_id} {criterion} = {value} by {actor}", flush=True)


def run_gate(args: argparse.Namespace) -> int:
    gate = GATES[args.gate]
    seconds = max(10, round(args.minutes * 60))
    ts = stamp()
    csv_prefix = results_path(f"gate{args.gate}-{ts}", args.results_dir)
    html = results_path(f"gate{args.gate}-{ts}.html", args.results_dir)
    token = args.token or os.environ.get("TOOLOO_API_TOKEN")
    stages = args.stages or gate["stages"]
    if args.signoff:
        record_signoffs(
            args.host, args.gate, parse_signoffs(args.signoff), args.actor, args.note, token
        )
    print(f"{gate['title']}: {seconds}s against {args.host}, stages {stages}", flush=True)
    started = time.time()
    code = run_locust(
        host=args.host,
        seconds=seconds,
        stages=stages,
        csv_prefix=csv_prefix,
        html=html,
        training_host=args.training_host,
        users_per_k=args.users_per_k,
        population=args.population,
        token=token,
    )
    try:
        locust_stats = read_locust_stats(csv_prefix)
    except (OSError, RuntimeError) as exc:
        print(f"locust run failed (exit {code}): {exc}", file=sys.stderr)
        return 2
    window = min(86_400, max(60, round(time.time() - started)))
    measured = {"locust": locust_stats, **fleet_view(args.host, args.gate, window, token)}
    rows = judge(args.gate, measured)
    rows += sign_off_rows(measured.get("fleet_gate"))
    rows += period_rows(measured.get("fleet_record"), window)
    print()
    print(
        format_table(
            rows,
            [
                ("criterion", "criterion"),
                ("source", "source"),
                ("target", "target"),
                ("measured", "measured"),
                ("passed", "result"),
            ],
        )
    )
    notes = period_notes(measured.get("fleet_record"), window)
    for note in notes:
        print(note)
    failed = [r["criterion"] for r in rows if r["passed"] is False]
    summary = {
        "window_s": window,
        "period_notes": notes,
        "gate": args.gate,
        "title": gate["title"],
        "host": args.host,
        "seconds": seconds,
        "stages": stages,
        "criteria": rows,
        "passed": not failed,
        "measured": measured,
        "locust_csv": f"{csv_prefix}_stats.csv",
        "locust_html": str(html),
    }
    out = write_json(results_path(f"gate{args.gate}-{ts}.json", args.results_dir), summary)
    print(f"\nLocust CSV {csv_prefix}_stats.csv, HTML {html}, summary {out}")
    print("GATE PASSED" if not failed else f"GATE FAILED: {', '.join(failed)}")
    return 0 if not failed else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run a rollout gate as a Locust load test")
    parser.add_argument("--gate", type=int, choices=sorted(GATES), default=1)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--host", default="http://127.0.0.1:3000", help="the web gateway")
    parser.add_argument("--training-host", default=None, help="training clients go here")
    parser.add_argument("--stages", default=None, help="population stages, e.g. 500,1000")
    parser.add_argument("--users-per-k", type=float, default=1.0, help="users per 1K learners")
    parser.add_argument("--population", type=int, default=1000, help="learners trained by Locust")
    parser.add_argument("--token", default=None, help="default: $TOOLOO_API_TOKEN")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--signoff",
        action="append",
        default=[],
        metavar="CRITERION=VALUE",
        help="record a sign-off before the run, e.g. revenue_signal=6.1 (needs --actor)",
    )
    parser.add_argument("--actor", default=None, help="who states the --signoff values")
    parser.add_argument("--note", default=None, help="the sign-offs' note")
    parser.add_argument(
        "--start-fleet",
        action="store_true",
        help="start a private fleet (free ports, private redis, pre-armed) and test that",
    )
    args = parser.parse_args(argv)
    if args.signoff and not (args.actor or "").strip():
        parser.error("--signoff needs --actor (who states it)")
    if not args.start_fleet:
        raise SystemExit(run_gate(args))
    with BenchFleet(token=args.token) as fleet:
        fleet.start("training", "meta", "coach", "reports", "web")
        fleet.prearm()
        if (ROOT / "orchestrator" / "__main__.py").exists():
            # Observe mode: supervises nothing, answers /api/v1/system/status as in production.
            fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
        args.host = fleet.url("web")
        code = run_gate(args)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
