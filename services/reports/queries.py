"""Read side of the reports service: current metrics over a window, per-minute series, stream
status and exports, all computed from the aggregates the consumer applied (plus the fleet's
own live keys for gauges: learners, regions, coach queue and throughput).

Every figure is a sum over the shards' aggregates (and the `{system}` ones), read in one
pipelined round trip per query: S is small and every call reads one slot, so the same reads run
on a Redis Cluster (where no MULTI may span shards). A shard's minutes and totals are read by one
`reports_read` script call (beside this module), atomic on its slot, and the apply script
changes both in one step, so within a shard a series never shows a total that disagrees with its
minutes; between shards, the reads are a few microseconds apart.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from redis.commands.core import AsyncScript

from services.reports.aggregates import (
    last_minutes,
    merge_hist,
    parse_member,
    percentile,
    uptime_fraction,
    window_minutes,
)
from services.reports.apply import GROUP
from services.reports.dashboard import build_dashboard
from services.reports.readings import (
    demand_minutes,
    meta_trigger_misses,
    regions_with_learners,
    throughput_reading,
    worst_uptime,
)
from shared.clock import iso_ms
from shared.events import STREAM_KINDS, fleet_streams
from shared.fleet_totals import read_totals
from shared.keys import Keys
from shared.redis_memory import fullest, masters_memory
from shared.redis_types import FleetRedis, text_map, texts
from shared.request_stats import ROUND_LATENCY_PREFIX, ROUND_LATENCY_SUM
from shared.scripts import ScriptCall, evalsha_each, lua_source
from shared.settings import FleetSettings
from shared.stream_trim import GroupLag, group_lags_many

COVERAGE_SAMPLE = 5000  # bound on the coached learners compared with the queue per query
COVERAGE_SAMPLE_MIN = 100  # ... and per shard at least this many

COUNTERS = (
    "rounds",
    "rounds_per_min",
    "requests",
    "errors",
    "meta_ready",
    "meta_completed",
    "meta_failed",
    "restarts",
)
DERIVED = (
    "error_rate_pct",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "meta_delay_p50_ms",
    "meta_delay_p99_ms",
)
GAUGES = ("learners", "regions", "coach_throughput")
SERIES_METRICS = (*COUNTERS, *DERIVED, *GAUGES)
EXPORT_COLUMNS = ("minute", "ts", *SERIES_METRICS)
# Fields of the totals hashes that are a latest value, not a count: merged by max, not summed.
LATEST_FIELDS = frozenset({"last_event_ms"})


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def error_rate_pct(requests: int, errors: int) -> float:
    return round(100.0 * errors / requests, 4) if requests > 0 else 0.0


def http_totals(fields: dict[str, str]) -> tuple[int, int]:
    """Sum of `<service>:requests` and `<service>:errors` over every service of one minute."""
    requests = errors = 0
    for name, value in fields.items():
        if name.endswith(":requests"):
            requests += _int(value)
        elif name.endswith(":errors"):
            errors += _int(value)
    return requests, errors


def merge_hashes(hashes: Iterable[dict[str, str]]) -> dict[str, str]:
    """The field-wise sum of counter hashes (the shards' and the system's parts of one minute or
    of the totals): integers stay integers, a float sum (`lat_sum`) is a float; the
    LATEST_FIELDS take the largest value; a field that is not a number keeps its first value."""
    ints: dict[str, int] = {}
    floats: dict[str, float] = {}
    other: dict[str, str] = {}
    for fields in hashes:
        for name, raw in fields.items():
            try:
                value: int | float = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    other.setdefault(name, raw)
                    continue
            if name in LATEST_FIELDS:
                ints[name] = max(ints.get(name, 0), int(value))
            elif isinstance(value, float) or name in floats:
                floats[name] = floats.get(name, 0.0) + ints.pop(name, 0) + value
            else:
                ints[name] = ints.get(name, 0) + value
    out = dict(other)
    out.update({name: str(v) for name, v in ints.items()})
    out.update({name: repr(round(v, 6)) for name, v in floats.items()})
    return out


def id_key(entry_id: str | None) -> tuple[int, int]:
    """A stream id as a comparable pair ((-1, -1) for none or garbage)."""
    try:
        ms, _, seq = (entry_id or "").partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        return -1, -1


def newest_id(ids: Iterable[str | None]) -> str | None:
    present = [i for i in ids if i]
    return max(present, key=id_key) if present else None


# ---- coach gauges ----------------------------------------------------------------------------


async def coach_throughput(redis: FleetRedis, keys: Keys, at_ms: int) -> int:
    """Rounds the coach ran in the last 60 seconds (its per-second counters)."""
    second = at_ms // 1000
    values = await redis.mget([keys.coach_throughput(s) for s in range(second - 59, second + 1)])
    return sum(_int(v) for v in values if v is not None)


async def coach_coverage(redis: FleetRedis, keys: Keys, at_ms: int) -> tuple[float | None, int]:
    """(share of the learners needing coaching that were coached in the last minute, how many
    need coaching), over every shard's queue; None when nobody needs coaching (0 of 0 is not a
    share). Right at any population: each shard's queue is sampled (whole when small, else a
    uniform ZRANDMEMBER sample), ZMSCORE against its coached set tells which were coached in the
    last minute, and each shard's hit ratio weighs by its queue's size. Sampling the coached
    side instead caps the share at sample ÷ needing, and is biased (its oldest members are the
    ones most likely to have become ready and left the queue)."""
    shards = list(keys.all_shards())
    per_shard = max(COVERAGE_SAMPLE_MIN, COVERAGE_SAMPLE // len(shards))
    since = at_ms - 60_000
    async with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.zcard(keys.coach_queue(shard))
        sizes = [_int(n) for n in await pipe.execute()]
    needing = sum(sizes)
    if needing == 0:
        return None, 0
    queued = [(shard, n) for shard, n in zip(shards, sizes, strict=True) if n]
    async with redis.pipeline(transaction=False) as pipe:
        for shard, n in queued:
            if n > per_shard:
                pipe.zrandmember(keys.coach_queue(shard), per_shard)
            else:
                pipe.zrange(keys.coach_queue(shard), 0, per_shard - 1)
        samples = [texts(x) for x in await pipe.execute()]
    async with redis.pipeline(transaction=False) as pipe:
        for (shard, _), sample in zip(queued, samples, strict=True):
            pipe.zmscore(keys.coach_coached(shard), sample or ["-"])
        scores = await pipe.execute()
    weighted = 0.0
    total = 0
    for (_, n), sample, found in zip(queued, samples, scores, strict=True):
        if not sample:
            continue  # emptied since the count
        hits = sum(1 for score in found if score is not None and float(score) >= since)
        weighted += n * hits / len(sample)
        total += n
    if total == 0:
        return None, 0
    return round(min(1.0, weighted / total), 4), needing


async def needing_coaching(redis: FleetRedis, keys: Keys) -> int:
    """Learners that need coaching now: the sum of every shard's coach queue."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.zcard(keys.coach_queue(shard))
        return sum(_int(n) for n in await pipe.execute())


# ---- minute rows -----------------------------------------------------------------------------


async def read_minutes(
    redis: FleetRedis, keys: Keys, minutes: Sequence[int]
) -> tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
    """(totals, [minute hash], [http stats hash]): the fleet's totals and each minute's
    aggregates, each summed over the shards and the system stream's part. One `reports_read`
    call per part (its minutes and its totals in one atomic read of its slot), and the request
    statistics, in one pipeline."""
    n = len(minutes)
    parts: list[ScriptCall] = [
        ([*(keys.reports_minute(s, m) for m in minutes), keys.reports_totals(s)], [])
        for s in keys.all_shards()
    ]
    parts.append(
        ([*(keys.reports_system_minute(m) for m in minutes), keys.reports_system_totals], [])
    )
    stats = [keys.http_stats(m) for m in minutes]
    http: list[dict[str, str]] = []

    async def send(sha: str, calls: list[ScriptCall]) -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for call_keys, _ in calls:
                pipe.execute_command("EVALSHA", sha, len(call_keys), *call_keys)
            # The request statistics ride along (plain reads of other slots); a NOSCRIPT retry
            # reads them again, harmlessly.
            for key in stats:
                pipe.hgetall(key)
            replies = list(await pipe.execute(raise_on_error=False))
        for reply in replies[len(calls) :]:
            if isinstance(reply, Exception):
                raise reply
        http[:] = [text_map(h) for h in replies[len(calls) :]]
        return replies[: len(calls)]

    per_part = [
        [_pairs(h) for h in reply]
        for reply in await evalsha_each(redis, _read_script(redis), parts, send)
    ]
    totals = merge_hashes(part[n] for part in per_part)
    minute_hashes = [merge_hashes(part[j] for part in per_part) for j in range(n)]
    return totals, minute_hashes, http


def _pairs(flat: Any) -> dict[str, str]:
    """A hash as a script returns it: a flat field, value, … array."""
    items = list(flat or [])
    return dict(zip(items[0::2], items[1::2], strict=True))


_READ_SOURCE = lua_source(__package__, "reports_read")


def _read_script(redis: FleetRedis) -> AsyncScript:
    return redis.register_script(_READ_SOURCE)


def minute_row(minute: int, fields: dict[str, str], http: dict[str, str]) -> dict[str, Any]:
    """One minute's values. Counters are zero-filled; percentiles are null without samples and
    gauges null where the consumer took no sample (a 0 there would be a false reading)."""
    # Round latency: what callers of the round endpoints waited (request latency).
    lat: dict[int, int] = {}
    merge_hist(lat, ROUND_LATENCY_PREFIX, http)
    delays: dict[int, int] = {}
    merge_hist(delays, "md:", fields)
    requests, errors = http_totals(http)
    lat_n = sum(lat.values())
    rounds = _int(fields.get("rounds"))
    return {
        "minute": iso_ms(minute * 60_000),
        "ts": minute * 60,
        "rounds": None,  # cumulative, filled in by the caller (needs the total)
        "rounds_per_min": rounds,
        "requests": requests,
        "errors": errors,
        "meta_ready": _int(fields.get("meta:ready")),
        "meta_completed": _int(fields.get("meta:completed")),
        "meta_failed": _int(fields.get("meta:failed")),
        "restarts": sum(_int(v) for k, v in fields.items() if k.startswith("restart:")),
        "error_rate_pct": error_rate_pct(requests, errors),
        "latency_avg_ms": round(float(http[ROUND_LATENCY_SUM]) / lat_n, 3)
        if lat_n and ROUND_LATENCY_SUM in http
        else None,
        "latency_p50_ms": percentile(lat, 0.50),
        "latency_p95_ms": percentile(lat, 0.95),
        "latency_p99_ms": percentile(lat, 0.99),
        "meta_delay_p50_ms": percentile(delays, 0.50),
        "meta_delay_p99_ms": percentile(delays, 0.99),
        "learners": _int(fields["learners"]) if "learners" in fields else None,
        "regions": _int(fields["regions"]) if "regions" in fields else None,
        "coach_throughput": _int(fields["coach_tput"]) if "coach_tput" in fields else None,
    }


async def series_rows(
    redis: FleetRedis, keys: Keys, minutes: int, at_ms: int
) -> list[dict[str, Any]]:
    """One row per minute for the last `minutes` minutes (oldest first, current minute last)."""
    span = last_minutes(at_ms, minutes)
    totals, minute_hashes, http_hashes = await read_minutes(redis, keys, span)
    rows = [minute_row(m, f, h) for m, f, h in zip(span, minute_hashes, http_hashes, strict=True)]
    # Cumulative rounds at the end of each minute: the total minus what came after it.
    running = _int(totals.get("rounds"))
    for row in reversed(rows):
        row["rounds"] = running
        running -= row["rounds_per_min"]
    return rows


async def timeseries(
    redis: FleetRedis, keys: Keys, metric: str, minutes: int, at_ms: int
) -> list[dict[str, Any]]:
    rows = await series_rows(redis, keys, minutes, at_ms)
    return [{"minute": r["minute"], "ts": r["ts"], "value": r[metric]} for r in rows]


def export_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
    return buffer.getvalue()


# ---- services: uptime and restarts -----------------------------------------------------------


async def service_table(
    redis: FleetRedis, keys: Keys, start_ms: int, end_ms: int, restarts: dict[str, int]
) -> dict[str, dict[str, Any]]:
    last = text_map(await redis.hgetall(keys.reports_service_last))
    seen = texts(await redis.hkeys(keys.reports_services_seen))
    names = sorted(set(last) | set(seen) | set(restarts))[:200]
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            key = keys.reports_service(name)
            pipe.zrevrangebyscore(key, start_ms, "-inf", start=0, num=1)
            pipe.zrangebyscore(key, f"({start_ms}", end_ms, start=0, num=10_000, withscores=True)
        replies = await pipe.execute()
    table: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        before_members, inside = replies[2 * i], replies[2 * i + 1]
        before = parse_member(before_members[0]) if before_members else None
        transitions = [(int(score), parse_member(member)) for member, score in inside]
        last_state = last[name].split(":", 1)[0] if name in last else None
        fraction = uptime_fraction(start_ms, end_ms, before, transitions, last_state)
        table[name] = {
            "uptime_pct": round(100.0 * fraction, 3) if fraction is not None else None,
            "restarts": restarts.get(name, 0),
            "up": last_state == "up" if last_state is not None else None,
        }
    return table


# ---- metrics ---------------------------------------------------------------------------------


async def metrics(
    redis: FleetRedis,
    keys: Keys,
    window_s: int,
    at_ms: int,
    regions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The contract of GET /api/v1/reports/metrics (docs/ARCHITECTURE.md §3). `regions`: the
    configured regions (TOOLOO_REGIONS); `regions` counts those that have learners."""
    span = window_minutes(at_ms, window_s)
    totals, minute_hashes, http_hashes = await read_minutes(redis, keys, span)
    compute: dict[int, int] = {}
    request_lat: dict[int, int] = {}
    delays: dict[int, int] = {}
    rounds = requests = errors = meta_failed = 0
    restarts: dict[str, int] = {}
    for fields, http in zip(minute_hashes, http_hashes, strict=True):
        rounds += _int(fields.get("rounds"))
        meta_failed += _int(fields.get("meta:failed"))
        merge_hist(compute, "lat:", fields)
        merge_hist(request_lat, ROUND_LATENCY_PREFIX, http)
        merge_hist(delays, "md:", fields)
        for name, value in fields.items():
            if name.startswith("restart:"):
                service = name[len("restart:") :]
                restarts[service] = restarts.get(service, 0) + _int(value)
        req, err = http_totals(http)
        requests += req
        errors += err
    # The rate is over the minutes actually covered (the window rounded out to whole minutes,
    # the current one counted up to now), so a partial current minute does not dilute it.
    covered_min = max(1e-3, (at_ms - span[0] * 60_000) / 60_000)
    pop = await read_totals(redis, keys, rounds=False)
    coverage, needing = await coach_coverage(redis, keys, at_ms)
    services = await service_table(redis, keys, at_ms - window_s * 1000, at_ms, restarts)
    worst, worst_name = worst_uptime(services)
    # The minute before the window too: demand throughout a minute needs the sample before it.
    before = await read_minutes(redis, keys, [span[0] - 1])
    demand = throughput_reading(demand_minutes([before[1][0], *minute_hashes]))
    configured = list(regions) if regions is not None else sorted(pop.regions)
    return {
        "rounds_total": _int(totals.get("rounds")),
        "rounds_per_min": round(rounds / covered_min, 3),
        "rounds_in_window": rounds,
        "requests": requests,
        "errors": errors,
        "error_rate_pct": error_rate_pct(requests, errors),
        # What a caller of the round endpoints waited (their request latency, probes apart).
        "round_latency_ms": _hist_reading(request_lat),
        # A round's own compute time before its commit (the round events' `ms`).
        "round_compute_ms": _hist_reading(compute),
        "meta_trigger_delay_ms": _hist_reading(delays),
        "meta_trigger_misses": meta_trigger_misses(delays, meta_failed),
        "learners": pop.learners,
        "regions": len(regions_with_learners(configured, pop.regions)),
        "regions_configured": configured,
        "region_counts": pop.regions,
        "coach": {
            "throughput_rounds_per_min": await coach_throughput(redis, keys, at_ms),
            "demand_throughput": demand,
            "coverage": coverage,
            "needing_coaching": needing,
        },
        "uptime_pct": worst,
        "uptime_worst_service": worst_name,
        "restarts": sum(restarts.values()),
        "services": services,
    }


def _hist_reading(hist: dict[int, int]) -> dict[str, Any]:
    return {
        "p50": percentile(hist, 0.50),
        "p95": percentile(hist, 0.95),
        "p99": percentile(hist, 0.99),
        "count": sum(hist.values()),
    }


# ---- status ----------------------------------------------------------------------------------


def _merge_group(group: str, lags: list[GroupLag]) -> dict[str, Any]:
    """One group's lag over every stream of a kind it reads (summed; the newest delivered id)."""
    return {
        "group": group,
        "pending": sum(g.pending for g in lags),
        "undelivered": sum(g.undelivered for g in lags),
        "lag": sum(g.lag for g in lags),
        "exact": all(g.exact for g in lags),
        "last_delivered_id": newest_id(g.last_delivered_id for g in lags),
        "streams": len(lags),
    }


async def stream_status(
    redis: FleetRedis, keys: Keys, lag_alert: int | None = None
) -> dict[str, dict[str, Any]]:
    """Per kind of stream (rounds and meta: summed over the shards' streams; system): length,
    the reports group's pending count, entries not yet delivered, lag (both together), the
    newest applied id and how many entries were applied; every group of those streams (the
    coach's too, on the meta streams) with its own lag and whether it is above `lag_alert`
    (shared.stream_trim.group_lags: no reliance on XINFO's `lag`, absent < Redis 7); and the
    shards whose reports lag is not zero (`shard_lags`), to tell a stuck shard from a slow
    fleet."""
    refs = fleet_streams(keys)
    async with redis.pipeline(transaction=False) as pipe:
        for ref in refs:
            pipe.xlen(ref.key)
        for shard in keys.all_shards():
            pipe.hgetall(keys.reports_cursor(shard))
            pipe.hgetall(keys.reports_totals(shard))
        pipe.hgetall(keys.reports_system_cursor)
        pipe.hgetall(keys.reports_system_totals)
        replies = await pipe.execute()
    lengths = dict(zip((ref.key for ref in refs), replies[: len(refs)], strict=True))
    hashes = [text_map(r) for r in replies[len(refs) :]]
    cursors, totals = hashes[0::2], merge_hashes(hashes[1::2])
    lags = await group_lags_many(redis, [ref.key for ref in refs])
    out: dict[str, dict[str, Any]] = {}
    for kind in STREAM_KINDS:
        mine = [ref for ref in refs if ref.kind == kind]
        by_group: dict[str, list[GroupLag]] = {}
        for ref in mine:
            for g in lags[ref.key]:
                by_group.setdefault(g.group, []).append(g)
        ours = _merge_group(GROUP, by_group[GROUP]) if GROUP in by_group else None
        shard_lags = {
            str(ref.shard): g.lag
            for ref in mine
            if ref.shard is not None
            for g in lags[ref.key]
            if g.group == GROUP and g.lag > 0
        }
        groups = [_merge_group(name, found) for name, found in sorted(by_group.items())]
        out[kind] = {
            "length": sum(_int(lengths[ref.key]) for ref in mine),
            "streams": len(mine),
            "group": ours is not None and ours["streams"] == len(mine),
            "pending": ours["pending"] if ours else 0,
            "undelivered": ours["undelivered"] if ours else 0,
            "lag": ours["lag"] if ours else 0,
            "last_delivered_id": ours["last_delivered_id"] if ours else None,
            "last_applied_id": newest_id(c.get(kind) for c in cursors),
            "applied": _int(totals.get(f"events:{kind}")),
            "shard_lags": shard_lags,
            "groups": [
                {**g, "alert": lag_alert is not None and g["lag"] > lag_alert} for g in groups
            ],
        }
    return out


def lag_alerts(streams: dict[str, dict[str, Any]], lag_alert: int) -> list[str]:
    """One alert per group whose lag is above the threshold: its entries are neither delivered
    nor acknowledged, so the stream cannot be trimmed below them and grows in memory."""
    return [
        f"stream_lag {kind}/{g['group']} {g['lag']} > {lag_alert}"
        for kind, s in streams.items()
        for g in s["groups"]
        if g["lag"] > lag_alert
    ]


async def redis_memory(redis: FleetRedis) -> dict[str, Any]:
    """The fullest master's used memory against its `maxmemory` (0: no limit): at or above the
    limit with `noeviction`, that master refuses every write to its slots (the fleet answers 503
    redis_out_of_memory). On a single Redis, that Redis; `masters` says how many were read."""
    nodes = await masters_memory(redis)
    top = fullest(nodes)
    return {
        "used_bytes": top.used,
        "maxmemory_bytes": top.limit,
        "used_pct": top.pct,
        "policy": top.policy,
        "node": top.node,
        "masters": len(nodes),
    }


def memory_alerts(memory: dict[str, Any]) -> list[str]:
    """`redis_out_of_memory` once used memory reaches maxmemory: writes are being refused."""
    pct = memory["used_pct"]
    return (
        [f"redis_out_of_memory used {pct} % of maxmemory"] if pct is not None and pct >= 100 else []
    )


def memory_high_alerts(memory: dict[str, Any], alert_pct: float) -> list[str]:
    """`redis_memory_high` from `alert_pct` of maxmemory until it is reached: time to act
    (throttle the population, add memory) before writes are refused."""
    pct = memory["used_pct"]
    if pct is None or not alert_pct <= pct < 100:
        return []
    return [f"redis_memory_high used {pct} % of maxmemory >= {alert_pct:g} %"]


async def status(
    redis: FleetRedis, keys: Keys, lag_alert: int | None = None, memory_alert_pct: float = 80.0
) -> dict[str, Any]:
    streams = await stream_status(redis, keys, lag_alert)
    totals = await fleet_totals(redis, keys)
    last_ms = _int(totals.get("last_event_ms")) or None
    memory = await redis_memory(redis)
    alerts = (lag_alerts(streams, lag_alert) if lag_alert is not None else []) + memory_alerts(
        memory
    )
    alerts += memory_high_alerts(memory, memory_alert_pct)
    return {
        "consumer_lag": sum(s["lag"] for s in streams.values()),
        "events_applied": _int(totals.get("events")),
        "rounds_total": _int(totals.get("rounds")),
        "last_event_time": iso_ms(last_ms) if last_ms else None,
        "last_event_ms": last_ms,
        "streams": streams,
        "lag_alert_threshold": lag_alert,
        "redis_memory": memory,
        "alerts": alerts,
    }


async def fleet_totals(redis: FleetRedis, keys: Keys) -> dict[str, str]:
    """The all-time counters of every shard and of the system stream, summed."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.hgetall(keys.reports_totals(shard))
        pipe.hgetall(keys.reports_system_totals)
        return merge_hashes(text_map(r) for r in await pipe.execute())


# ---- dashboard inputs ------------------------------------------------------------------------


async def fast_lane_enabled(redis: FleetRedis, keys: Keys) -> bool | None:
    """The coach's persisted fast-lane switch (None until the coach has stored its settings)."""
    raw = await redis.hget(keys.coach_settings, "fastLane.enabled")
    if raw is None:
        return None
    return raw in ("1", "true", "True")


async def dashboard(
    redis: FleetRedis, keys: Keys, settings: FleetSettings, window_s: int, at: int
) -> dict[str, Any]:
    """The monitoring JSON (GET /api/v1/reports/dashboard): what the alert webhooks deliver."""
    m = await metrics(redis, keys, window_s, at, settings.region_list())
    fast_lane = await fast_lane_enabled(redis, keys)
    streams = await stream_status(redis, keys)
    memory = await redis_memory(redis)
    return build_dashboard(
        m,
        window_s,
        at,
        fast_lane,
        lag_alerts=lag_alerts(streams, settings.stream_lag_alert),
        memory_alerts=memory_alerts(memory),
        memory_high_alerts=memory_high_alerts(memory, settings.redis_memory_alert_pct),
    )
