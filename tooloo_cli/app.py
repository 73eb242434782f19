"""The `tooloo` commands. Each is a thin call of the fleet's HTTP API (through the gateway), shown
as a table, or with `--json` as the fleet's own JSON; backup and restore talk to Redis
(tooloo_cli.snapshot). Every failure is a CliError: one line on stderr and exit code 1 (2 for bad
usage), never a traceback."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tooloo_cli import snapshot
from tooloo_cli.errors import EXIT_USAGE, CliError
from tooloo_cli.http import FleetClient, FleetError

DEFAULT_URL = "http://127.0.0.1:3000"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Operate a TooLoo fleet: status, coach, scale, gates, learners, backup and restore.",
)
coach_app = typer.Typer(no_args_is_help=True, help="The auto-coach: start, stop, boost, fast lane.")
onboarding_app = typer.Typer(no_args_is_help=True, help="Onboarding toward the population target.")
learners_app = typer.Typer(no_args_is_help=True, help="List, show, create and delete learners.")
app.add_typer(coach_app, name="coach")
app.add_typer(onboarding_app, name="onboarding")
app.add_typer(learners_app, name="learners")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class Options:
    url: str
    token: str | None
    json: bool
    timeout: float

    def client(self) -> FleetClient:
        return FleetClient(self.url, self.token, self.timeout)


@app.callback()
def main_options(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="The fleet's gateway [env TOOLOO_URL; default :3000]")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token for changes [env TOOLOO_API_TOKEN]")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the fleet's JSON instead of tables")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=600, help="Seconds to wait for each answer")
    ] = 10.0,
) -> None:
    ctx.obj = Options(
        url=url or os.environ.get("TOOLOO_URL") or DEFAULT_URL,
        token=token or os.environ.get("TOOLOO_API_TOKEN") or None,
        json=json_out,
        timeout=timeout,
    )


def opts(ctx: typer.Context) -> Options:
    root = ctx.find_root().obj
    assert isinstance(root, Options)
    return root


def emit_json(body: Any) -> None:
    sys.stdout.write(json.dumps(body, indent=2, sort_keys=False) + "\n")


def show(ctx: typer.Context, body: Any, human: Any = None) -> None:
    """The fleet's JSON with --json, else `human` (a renderable, a string or a callable)."""
    if opts(ctx).json:
        emit_json(body)
        return
    if callable(human):
        human = human(body)
    if human is not None:
        out.print(human)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-"


# ---- fleet status ----------------------------------------------------------------------------


@app.command()
def status(ctx: typer.Context) -> None:
    """The fleet's phase and each service's state (the orchestrator's view)."""
    body = opts(ctx).client().get("/api/v1/system/status")

    def human(b: dict[str, Any]) -> Table:
        services = b.get("services") or {}
        rows = [
            [name, s.get("state"), yes_no(s.get("healthy")), s.get("restarts")]
            for name, s in services.items()
        ]
        title = f"phase {b.get('phase')} · armed {yes_no(b.get('armed'))} · mode {b.get('mode')}"
        return table(title, ["service", "state", "healthy", "restarts"], rows)

    show(ctx, body, human)


@app.command()
def processes(ctx: typer.Context) -> None:
    """The process table: pid, state, health, restarts, uptime."""
    body = opts(ctx).client().get("/api/v1/system/processes")

    def human(b: dict[str, Any]) -> Table:
        rows = [
            [
                p.get("name"),
                p.get("port"),
                p.get("pid") or "-",
                p.get("state"),
                yes_no(p.get("healthy")),
                p.get("restarts"),
                f"{p['uptime_s']:.0f} s" if isinstance(p.get("uptime_s"), int | float) else "-",
            ]
            for p in b.get("processes") or []
        ]
        return table(None, ["name", "port", "pid", "state", "healthy", "restarts", "uptime"], rows)

    show(ctx, body, human)


# ---- coach -----------------------------------------------------------------------------------


def _shares(status: dict[str, Any]) -> str:
    """Which coach replica answered and how many shards it coaches (each replica coaches its
    own share; through the gateway any of them may answer)."""
    replica = status.get("replica") or {}
    owned = replica.get("ownedShards")
    if owned is None:
        return str(status.get("instance") or "—")
    return f"{replica.get('instance')} · {len(owned)}/{status.get('shards')} shards"


def coach_summary(body: dict[str, Any]) -> Table:
    s = body.get("status") or {}
    fast = s.get("fastLane") or {}
    tput = (s.get("throughput") or {}).get("roundsPerMin")
    rows: list[list[Any]] = [
        ["active", yes_no(s.get("active"))],
        ["answering replica", _shares(s)],
        ["rounds run", s.get("roundsRun")],
        ["rounds/min", tput],
        ["coverage", s.get("coverage")],
        ["needing coaching", s.get("learnersNeedingCoaching")],
        [
            "fast lane",
            f"{'on' if fast.get('enabled') else 'off'} · weight {fast.get('weight')} · "
            f"{fast.get('intervalMs')} ms",
        ],
        ["last action", s.get("lastAction")],
    ]
    return table("coach", ["", ""], rows)


@coach_app.command("status")
def coach_status(ctx: typer.Context) -> None:
    """The coach's status."""
    show(ctx, opts(ctx).client().get("/api/v1/auto-coach/status"), coach_summary)


@coach_app.command("start")
def coach_start(ctx: typer.Context) -> None:
    """Start the auto-coach loop."""
    show(ctx, opts(ctx).client().post("/api/v1/auto-coach/start"), coach_summary)


@coach_app.command("stop")
def coach_stop(ctx: typer.Context) -> None:
    """Stop the auto-coach loop (a tick in flight finishes)."""
    show(ctx, opts(ctx).client().post("/api/v1/auto-coach/stop"), coach_summary)


@coach_app.command("boost")
def coach_boost(
    ctx: typer.Context,
    rounds: Annotated[int, typer.Option(min=1, max=50, help="Rounds to run")] = 5,
    learner: Annotated[str | None, typer.Option(help="Learner id (default: `default`)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=20, help="Rounds per call")] = None,
    hyper: Annotated[bool, typer.Option(help="Hyper-boost (up to 50 rounds)")] = False,
) -> None:
    """Run rounds for one learner now (boost, or hyper-boost with --hyper)."""
    if not hyper and rounds > 20:
        raise typer.BadParameter("a boost runs at most 20 rounds (use --hyper for up to 50)")
    body: dict[str, Any] = {"rounds": rounds}
    if learner:
        body["learner"] = learner
    if batch_size:
        body["batchSize"] = batch_size
    path = "/api/v1/auto-coach/hyper-boost" if hyper else "/api/v1/auto-coach/boost"
    answer = opts(ctx).client().post(path, body)

    def human(b: dict[str, Any]) -> str:
        results = b.get("results") or []
        ids = [r.get("round") for r in results if isinstance(r, dict)]
        who = learner or "default"
        span = f"rounds {ids[0]}–{ids[-1]}" if ids else "no rounds"
        return f"{'hyper-boosted' if hyper else 'boosted'} {who}: {len(ids)} rounds ({span})"

    show(ctx, answer, human)


class OnOff(StrEnum):
    on = "on"
    off = "off"


@coach_app.command("fast-lane")
def coach_fast_lane(
    ctx: typer.Context,
    state: Annotated[OnOff, typer.Argument(help="on or off")],
    weight: Annotated[int | None, typer.Option(min=1, max=10, help="Rounds ratio")] = None,
    interval: Annotated[
        int | None, typer.Option(min=50, max=60000, help="Tick interval, ms")
    ] = None,
) -> None:
    """Turn the fast lane on or off; weight and interval keep their values unless given."""
    client = opts(ctx).client()
    # A partial update: the coach changes only the fields sent.
    body: dict[str, Any] = {"enable": state is OnOff.on}
    if weight is not None:
        body["weight"] = weight
    if interval is not None:
        body["intervalMs"] = interval
    answer = client.post("/api/v1/auto-coach/fast-lane", body)

    def human(b: dict[str, Any]) -> str:
        fast = b.get("fastLane") or {}
        return (
            f"fast lane {'on' if fast.get('enabled', body['enable']) else 'off'}: weight "
            f"{fast.get('weight')}, interval {fast.get('intervalMs')} ms"
        )

    show(ctx, answer, human)


def fast_lane_members_line(b: dict[str, Any]) -> str:
    members = b.get("members") or {}
    auto = [m.get("learner") for m in members.get("automatic") or []]
    return (
        f"fast lane: pinned {', '.join(members.get('pinned') or []) or '—'} · "
        f"automatic {', '.join(str(x) for x in auto) or '—'} · "
        f"pinned out {', '.join(members.get('excluded') or []) or '—'}"
    )


@coach_app.command("pin")
def coach_pin(
    ctx: typer.Context,
    learners: Annotated[list[str], typer.Argument(help="Learner ids")],
    out: Annotated[bool, typer.Option("--out", help="Pin out: never in the fast lane")] = False,
) -> None:
    """Pin learners into the fast lane (or, with --out, out of it), whatever the automatic rule."""
    change = {"exclude" if out else "add": learners}
    answer = opts(ctx).client().post("/api/v1/auto-coach/fast-lane", {"learners": change})
    show(ctx, answer, fast_lane_members_line)


@coach_app.command("unpin")
def coach_unpin(
    ctx: typer.Context, learners: Annotated[list[str], typer.Argument(help="Learner ids")]
) -> None:
    """Drop learners' pins (in or out): the automatic rule applies to them again."""
    answer = (
        opts(ctx).client().post("/api/v1/auto-coach/fast-lane", {"learners": {"remove": learners}})
    )
    show(ctx, answer, fast_lane_members_line)


# ---- scale, onboarding, full pause -----------------------------------------------------------


def scale_line(s: dict[str, Any]) -> str:
    inactive = f" ({s['inactive']} inactive)" if s.get("inactive") else ""
    return (
        f"learners {s.get('learners')}{inactive} of target {s.get('target')}"
        f" · hold {yes_no(s.get('hold'))}"
        f" · onboarding {'paused' if s.get('paused') else 'running'}"
    )


@app.command()
def scale(
    ctx: typer.Context,
    learners: Annotated[int, typer.Argument(min=0, max=10_000_000, help="Population target")],
    hold: Annotated[
        bool,
        typer.Option(
            help="Hold the active population at the target: learners beyond it are deactivated"
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait, with a progress bar, until reached")] = False,
    wait_timeout: Annotated[
        float, typer.Option(min=1, max=86_400, help="Give up waiting after this many seconds")
    ] = 600,
) -> None:
    """Set the population target; onboarding ramps toward it."""
    o = opts(ctx)
    client = o.client()
    body = client.post("/api/v1/system/scale", {"learners": learners, "hold": hold})
    if not wait:
        show(ctx, body, lambda b: scale_line(b.get("scale") or {}))
        return
    state = body.get("scale") or {}
    deadline = time.monotonic() + wait_timeout
    with Progress(
        TextColumn("onboarding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=o.json,
    ) as bar:
        task = bar.add_task(
            "learners", total=learners, completed=min(state.get("learners") or 0, learners)
        )
        while (state.get("learners") or 0) < learners:
            if time.monotonic() > deadline:
                raise CliError(
                    f"onboarding reached {state.get('learners')} of {learners} learners in "
                    f"{wait_timeout:g} s"
                    + (" (onboarding is paused)" if state.get("paused") else "")
                )
            time.sleep(0.5)
            body = client.get("/api/v1/system/scale")
            state = body.get("scale") or {}
            bar.update(task, completed=min(state.get("learners") or 0, learners))
    show(ctx, body, lambda b: scale_line(b.get("scale") or {}))


@onboarding_app.command("pause")
def onboarding_pause(ctx: typer.Context) -> None:
    """Stop onboarding new learners."""
    body = opts(ctx).client().post("/api/v1/system/pause-onboarding")
    show(ctx, body, lambda b: "onboarding paused · " + scale_line(b.get("scale") or {}))


@onboarding_app.command("resume")
def onboarding_resume(ctx: typer.Context) -> None:
    """Resume onboarding toward the target."""
    body = opts(ctx).client().post("/api/v1/system/resume-onboarding")
    show(ctx, body, lambda b: "onboarding resumed · " + scale_line(b.get("scale") or {}))


NO_FULL_PAUSE = (
    "this fleet does not have a full pause yet (POST /api/v1/system/{action} answered 404); "
    "`tooloo coach stop` and `tooloo onboarding pause` stop the fleet's own work"
)


def full_pause(client: FleetClient, action: str, actor: str, note: str | None) -> Any:
    body: dict[str, Any] = {"actor": actor}
    if note:
        body["note"] = note
    try:
        return client.post(f"/api/v1/system/{action}", body)
    except FleetError as exc:
        if exc.status == 404:  # an older fleet, without the full pause
            raise CliError(NO_FULL_PAUSE.format(action=action)) from None
        raise


def _default_actor() -> str:
    try:
        return getpass.getuser() or "operator"
    except Exception:  # no user name in this environment
        return "operator"


ActorOption = Annotated[
    str | None, typer.Option("--actor", help="who does it, recorded (default: your user name)")
]
NoteOption = Annotated[str | None, typer.Option("--note", help="why, recorded with it")]


def _parts_line(verb: str, body: Any) -> str:
    parts = body.get("parts") if isinstance(body, dict) else None
    names = ", ".join(sorted(parts)) if isinstance(parts, dict) else "onboarding, coach, meta"
    return f"fleet {verb} ({names}) · recorded"


@app.command()
def pause(ctx: typer.Context, actor: ActorOption = None, note: NoteOption = None) -> None:
    """Pause the whole fleet: no coaching, no meta, no onboarding (recorded with its actor)."""
    body = full_pause(opts(ctx).client(), "pause", actor or _default_actor(), note)
    show(ctx, body, lambda b: _parts_line("paused", b))


@app.command()
def resume(ctx: typer.Context, actor: ActorOption = None, note: NoteOption = None) -> None:
    """Resume the whole fleet after a pause."""
    body = full_pause(opts(ctx).client(), "resume", actor or _default_actor(), note)
    show(ctx, body, lambda b: _parts_line("resumed", b))


# ---- gates -----------------------------------------------------------------------------------


def gates_table(b: dict[str, Any]) -> Table:
    rows = []
    for gate in b.get("gates") or []:
        failed = ", ".join(str(x) for x in gate.get("failed") or [])
        rows.append(
            [
                gate.get("number"),
                gate.get("name"),
                gate.get("verdict"),
                failed or gate.get("reason"),
            ]
        )
    title = (
        f"phase {b.get('current_phase')} · active gate {b.get('active_gate')} · "
        f"escalation {b.get('escalation_level')}"
    )
    return table(title, ["gate", "name", "verdict", "failed / reason"], rows)


@app.command()
def gates(
    ctx: typer.Context,
    window: Annotated[int, typer.Option(min=60, max=86400, help="Metrics window, s")] = 60,
    watch: Annotated[bool, typer.Option(help="Refresh until Ctrl-C (or --count times)")] = False,
    interval: Annotated[float, typer.Option(min=0.5, max=3600, help="Refresh period, s")] = 2.0,
    count: Annotated[int, typer.Option(min=0, help="With --watch: stop after N (0: never)")] = 0,
) -> None:
    """The rollout gates' verdicts against live metrics."""
    o = opts(ctx)
    client = o.client()
    body = client.get("/api/v1/system/gates", window=window)
    if not watch:
        show(ctx, body, gates_table)
        return
    shown = 1
    if o.json:
        emit_json(body)
        while count == 0 or shown < count:
            time.sleep(interval)
            emit_json(client.get("/api/v1/system/gates", window=window))
            shown += 1
        return
    with Live(gates_table(body), console=out, auto_refresh=False) as live:
        while count == 0 or shown < count:
            time.sleep(interval)
            live.update(
                gates_table(client.get("/api/v1/system/gates", window=window)), refresh=True
            )
            shown += 1


# ---- learners --------------------------------------------------------------------------------


@learners_app.command("list")
def learners_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Learners per page")] = 50,
    cursor: Annotated[int, typer.Option(min=0, help="Page from this cursor")] = 0,
) -> None:
    """Learners in creation order, one page."""
    body = opts(ctx).client().get("/api/v1/learners", limit=limit, cursor=cursor)

    def human(b: dict[str, Any]) -> Table:
        rows = [
            [
                x.get("id"),
                x.get("region"),
                yes_no(x.get("active")),
                x.get("rounds"),
                x.get("average"),
                x.get("below"),
                yes_no(x.get("ready")),
            ]
            for x in b.get("learners") or []
        ]
        nxt = b.get("next_cursor")
        title = f"{b.get('total')} learners" + (f" · next page: --cursor {nxt}" if nxt else "")
        return table(title, ["id", "region", "active", "rounds", "average", "below", "ready"], rows)

    show(ctx, body, human)


def learner_detail(b: dict[str, Any]) -> Table:
    x = b.get("learner") or {}
    rows = [
        [key, meta.get("mastery"), meta.get("skill"), meta.get("attempts")]
        for key, meta in (x.get("domains") or {}).items()
        if isinstance(meta, dict)
    ]
    title = (
        f"{x.get('id')} · {x.get('region')} · active {yes_no(x.get('active'))} · rounds "
        f"{x.get('rounds')} · average {x.get('average')} · ready {yes_no(x.get('ready'))}"
    )
    return table(title, ["domain", "mastery", "skill", "attempts"], rows)


@learners_app.command("show")
def learners_show(ctx: typer.Context, learner: Annotated[str, typer.Argument(help="id")]) -> None:
    """One learner and its domains."""
    show(ctx, opts(ctx).client().get(f"/api/v1/learners/{_segment(learner)}"), learner_detail)


@learners_app.command("create")
def learners_create(
    ctx: typer.Context,
    learner: Annotated[str | None, typer.Argument(help="id (default: generated)")] = None,
    region: Annotated[str | None, typer.Option(help="Region")] = None,
    inactive: Annotated[bool, typer.Option(help="Create it inactive")] = False,
) -> None:
    """Create a learner."""
    body: dict[str, Any] = {"active": not inactive}
    if learner:
        body["id"] = learner
    if region:
        body["region"] = region
    show(ctx, opts(ctx).client().post("/api/v1/learners", body), learner_detail)


@learners_app.command("delete")
def learners_delete(
    ctx: typer.Context,
    learner: Annotated[str, typer.Argument(help="id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Erase a learner and every key of it."""
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"deleting {learner} erases it for good: add --yes", EXIT_USAGE)
        typer.confirm(f"Erase learner {learner} and all of its history?", abort=True)
    body = opts(ctx).client().delete(f"/api/v1/learners/{_segment(learner)}")
    show(ctx, body, lambda b: f"deleted {b.get('deleted')}")


def _segment(learner: str) -> str:
    from urllib.parse import quote

    return quote(learner, safe="")


# ---- backup and restore ----------------------------------------------------------------------


def redis_url(explicit: str | None) -> str:
    """--redis-url, else REDIS_URL, else the embedded Redis the services use by default (its port
    and the password in the var directory)."""
    if explicit or os.environ.get("REDIS_URL"):
        return str(explicit or os.environ["REDIS_URL"])
    from shared.embedded_redis import DEFAULT_PORT, PASSWORD_FILE, fleet_url, var_dir

    path = var_dir() / PASSWORD_FILE
    if not path.exists():
        raise CliError(
            f"no REDIS_URL and no embedded Redis password at {path}: set REDIS_URL (or "
            "TOOLOO_VAR_DIR), or pass --redis-url"
        )
    port = int(os.environ.get("TOOLOO_REDIS_PORT") or DEFAULT_PORT)
    return fleet_url(port, path.read_text().strip())


def key_prefix(explicit: str | None) -> str:
    import re

    prefix = explicit or os.environ.get("TOOLOO_REDIS_PREFIX") or "tooloo"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", prefix):
        raise CliError(f"bad key prefix {prefix!r}: 1-32 of A-Za-z0-9_.-", EXIT_USAGE)
    return prefix


def fleet_version() -> str:
    try:
        return metadata.version("tooloo-fleet")
    except metadata.PackageNotFoundError:
        return "unknown"


RedisUrlOpt = Annotated[
    str | None, typer.Option("--redis-url", help="Redis [env REDIS_URL; default the embedded one]")
]
PrefixOpt = Annotated[
    str | None, typer.Option(help="Key prefix [env TOOLOO_REDIS_PREFIX; default tooloo]")
]


def key_progress(label: str, total: int | None, quiet: bool) -> Progress:
    columns: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=err, disable=quiet, transient=False)


@app.command()
def backup(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file to write", dir_okay=False)],
    redis: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    pause_ms: Annotated[
        int, typer.Option(min=100, max=600_000, help="Upper bound on the writers' pause, ms")
    ] = snapshot.DEFAULT_PAUSE_MS,
) -> None:
    """Write a consistent snapshot of everything under the fleet's key prefix."""
    o = opts(ctx)
    pfx = key_prefix(prefix)
    target = snapshot.connect(redis_url(redis))
    try:
        estimate = sum(int(node.dbsize()) for node in target.nodes)
        redis_version = str(target.nodes[0].info("server").get("redis_version", "?"))
        with key_progress("backup", estimate, o.json) as bar:
            task = bar.add_task("keys", total=estimate)
            snap = snapshot.take(target, pfx, pause_ms, lambda n: bar.advance(task, n))
            bar.update(task, total=len(snap.entries), completed=len(snap.entries))
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"backup failed: {exc.__class__.__name__}: {_redact(exc)}") from None
    finally:
        target.close()
    try:
        manifest = snapshot.write(snap, file, fleet_version(), redis_version)
    except OSError as exc:
        raise CliError(f"cannot write {file}: {exc.strerror or exc}") from None
    show(
        ctx,
        {"ok": True, "file": str(file), "manifest": manifest},
        f"backed up {manifest['keys']} keys under {pfx!r} to {file} "
        f"(writes paused {manifest['writes_paused_ms']:.0f} ms)",
    )


@app.command()
def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file to read", dir_okay=False)],
    force: Annotated[
        bool, typer.Option(help="Replace the keys under the prefix (the fleet paused meanwhile)")
    ] = False,
    redis: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
    id_gap: Annotated[
        int | None,
        typer.Option(min=0, help="Ids to skip on counters Redis lost [default: from the age]"),
    ] = None,
) -> None:
    """Put a backup back: into an empty prefix, or with --force over the fleet's own."""
    o = opts(ctx)
    pfx = key_prefix(prefix)
    data = snapshot.read(file)  # checked whole before anything is written
    target = snapshot.connect(redis_url(redis))
    paused = False
    client = o.client()
    try:
        present = snapshot.existing_keys(target, pfx, limit=3)
        if present and not force:
            sample = ", ".join(k.decode(errors="replace") for k in present)
            raise CliError(
                f"the prefix {pfx!r} is not empty ({sample}, …): restore into an empty prefix, "
                "or pass --force to replace it (the fleet is paused meanwhile)"
            )
        if present:
            paused = pause_for_restore(client)
        total = len(data.entries)
        with key_progress("restore", total, o.json) as bar:
            task = bar.add_task("keys", total=total)
            done = snapshot.restore(
                target, data, pfx, gap=id_gap, progress=lambda n: bar.advance(task, n)
            )
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"restore failed: {exc.__class__.__name__}: {_redact(exc)}") from None
    finally:
        target.close()
        if paused:
            full_pause(client, "resume", _default_actor(), "after tooloo restore")
    result = {
        "ok": True,
        "file": str(file),
        "prefix": pfx,
        "keys": done.keys,
        "deleted": done.deleted,
        "counters": done.counters,
        "manifest": data.manifest,
    }
    show(
        ctx,
        result,
        f"restored {done.keys} keys under {pfx!r} from {file} (backup of "
        f"{data.manifest.get('created')}); counters: "
        + ", ".join(f"{k}={v}" for k, v in sorted(done.counters.items())),
    )


def pause_for_restore(client: FleetClient) -> bool:
    """The fleet must not write while its keys are replaced: its full pause when it has one; a
    fleet that does not answer is taken as stopped; a running fleet without a full pause is
    refused (stop it, restore, start it)."""
    try:
        client.post(
            "/api/v1/system/pause", {"actor": _default_actor(), "note": "for tooloo restore"}
        )
        return True
    except FleetError as exc:
        if exc.status == 404:
            raise CliError(
                "the fleet at "
                f"{client.base_url} is running and has no full pause yet: stop the fleet, then "
                "restore --force, then start it"
            ) from None
        if exc.error_code == "pause_incomplete":
            # Nothing was restored: undo the parts that did pause, as far as they answer.
            try:
                full_pause(client, "resume", _default_actor(), "restore refused")
            except CliError:
                pass
            raise CliError(
                f"the fleet at {client.base_url} is running and its full pause did not "
                f"complete ({exc.message}): stop the fleet, then restore --force, then start it"
            ) from None
        raise
    except CliError as exc:
        if exc.message.startswith("cannot reach the fleet"):
            return False  # stopped: nothing writes
        raise


def _redact(exc: BaseException) -> str:
    from shared.logging import redact_text

    return redact_text(str(exc))
