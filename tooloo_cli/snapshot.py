"""Backup and restore of everything the fleet keeps under its key prefix.

What is saved: every key under `<prefix>:` (learners, histories, meta, settings, counters, streams
with their consumer groups, pending entries and positions, idempotency records), each as Redis's
own DUMP payload with its remaining time to live, so a RESTORE gives back the key exactly, whatever
its type. Keys are found by SCAN over every node, never by a list of names, so any key layout the
fleet writes (per-learner hash tags, per-shard hash tags) is covered. Leases and run locks are
left out: they name a process of the fleet that took the snapshot, and the running fleet takes
new ones within their time to live.

One moment for all of it: before the first key is read, every node is paused for writes
(`CLIENT PAUSE <ms> WRITE`; reads, including our SCAN and DUMPs, go on). The fleet's writes wait
in Redis, nothing fails, and keys do not expire meanwhile. The DUMPs run in pipelined batches; if
the snapshot takes longer than the pause, the pause may have ended midway and the backup is
refused, not written. Measured figures are in docs/OPERATIONS.md.

Counters never go back. A restored key that is a monotonic counter (COUNTER_PATTERNS) is set, not
to the backup's value, but to the current one when Redis still has it at or above the backup's
(it has seen every id given out), and otherwise (the Redis was wiped, or lost it) to the backup's
value plus `id_gap`: the ids the fleet may have handed out between the backup and the loss, which
Redis no longer knows. The default gap assumes at most ID_RATE_CEILING ids a second since the
backup was taken.

File format (gzip): a header line, the manifest (one JSON line), one JSON line per key
(`k` key, `t` ttl ms or -1, `v` DUMP payload; bytes in base64), and a trailer line with the
sha256 of every line before it. A restore reads the whole file and checks it before it writes
anything: a corrupt or truncated file changes nothing.
"""

from __future__ import annotations

import base64
import fnmatch
import gzip
import hashlib
import json
import math
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from redis import Redis
from redis.cluster import RedisCluster

from tooloo_cli.errors import CliError

FORMAT = "tooloo-backup"
FORMAT_VERSION = 1
HEADER = f"{FORMAT} {FORMAT_VERSION}\n".encode()

# Monotonic counters, as key names after `<prefix>:`. Each hands out ids that must never be handed
# out twice: round ids (per shard `{s:N}:rounds:seq`; `rounds:seq` in backups of the layout before
# shards), the creation sequence of learners (`{s:N}:learners:seq`) and of onboarded learner names
# (`training:onboarding:seq`), lease fencing tokens (`{s:N}:coach:fence`, `…:reports:fence`: a
# restored lower token would let a deposed holder's writes through again), and the curriculum
# version (`{curriculum}:ver`, `curriculum:ver` before it had a hash tag; running services reload
# the curriculum when it changes). A test checks that every key of a running fleet ending in
# `:seq`, `:fence` or `:ver` is matched here.
COUNTER_PATTERNS: tuple[str, ...] = (
    "rounds:seq",
    "*:rounds:seq",
    "learners:seq",
    "*:learners:seq",
    "training:onboarding:seq",
    "*:onboarding:seq",
    "*fence",
    "curriculum:ver",
    "{curriculum}:ver",
)
# Versions that running services compare with their cached copy: restored one above both the
# backup's and the current value, so every cache sees a change and reloads.
VERSION_PATTERNS: tuple[str, ...] = ("curriculum:ver", "{curriculum}:ver")

# Keys not saved: they name a process of the fleet that held them (leases, run locks) or count a
# client's recent calls (rate limits), and the running fleet re-creates them within seconds.
EPHEMERAL_PATTERNS: tuple[str, ...] = (
    "*:lease",
    "*lease:*",
    "*:meta:lock",
    "ratelimit:*",
)

# The default id gap assumes the fleet handed out at most this many ids of one counter a second
# between the backup and the loss of its Redis: well above the fastest measured (batch rounds,
# ~20,000 a second on one Redis).
ID_RATE_CEILING = 50_000
MIN_ID_GAP = 1_000_000

BATCH = 1000  # keys per SCAN page and per pipelined DUMP or RESTORE batch
DEFAULT_PAUSE_MS = 10_000

Progress = Callable[[int], None]  # called with the number of keys just done


def _one_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # One compiled alternation: tens of thousands of keys are checked inside the write pause.
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_COUNTER = _one_regex(COUNTER_PATTERNS)
_VERSION = _one_regex(VERSION_PATTERNS)
_EPHEMERAL = _one_regex(EPHEMERAL_PATTERNS)


def is_counter(name: str) -> bool:
    """`name` is a key name after the prefix and its colon."""
    return _COUNTER.match(name) is not None


def is_ephemeral(name: str) -> bool:
    if is_counter(name):
        return False  # a lease's fencing counter is kept
    return _EPHEMERAL.match(name) is not None


def id_gap(created_ms: int, now_ms: int) -> int:
    elapsed_s = max(0.0, (now_ms - created_ms) / 1000)
    return max(MIN_ID_GAP, math.ceil(elapsed_s * ID_RATE_CEILING))


def counter_value(backup: int, current: int | None, gap: int, *, version: bool = False) -> int:
    """The restored value of a counter (see the module's docstring)."""
    if version:
        return max(backup, current or 0) + 1
    if current is not None and current >= backup:
        return current
    return max(backup + gap, current or 0)


# ---- where the keys live: one Redis, or every primary of a Cluster --------------------------


@dataclass
class Target:
    """The fleet's Redis: `nodes` are the clients that SCAN, DUMP and pause (one per primary);
    `router` sends a command about a key to the node that holds it."""

    router: Redis | RedisCluster
    nodes: list[Redis]
    cluster: bool

    def close(self) -> None:
        self.router.close()
        if not self.cluster:
            return
        for node in self.nodes:
            node.close()


def connect(url: str, timeout_s: float = 30.0) -> Target:
    """A plain client first; when the server says it is a Cluster node, a RedisCluster on it and
    one client for each primary."""
    plain = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=5)
    try:
        info = plain.info("cluster")
    except Exception as exc:
        plain.close()
        raise CliError(f"cannot reach Redis: {_redacted(str(exc))}") from None
    if not int(info.get("cluster_enabled", 0) or 0):
        return Target(plain, [plain], cluster=False)
    plain.close()
    cluster = RedisCluster.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=5)
    nodes = [
        cluster.get_redis_connection(node)
        for node in cluster.get_primaries()  # type: ignore[no-untyped-call]
    ]
    return Target(cluster, nodes, cluster=True)


def _redacted(text: str) -> str:
    from shared.logging import redact_text

    return redact_text(text)


def scan_names(node: Redis, prefix: str) -> Iterator[list[bytes]]:
    """Pages of the keys under `<prefix>:` on one node (SCAN: never blocks Redis for long)."""
    cursor = 0
    pattern = f"{prefix}:*"
    while True:
        cursor, page = node.scan(cursor=cursor, match=pattern, count=BATCH)
        if page:
            yield [k if isinstance(k, bytes) else k.encode() for k in page]
        if cursor == 0:
            return


# ---- backup ----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    prefix: str
    created_ms: int
    entries: list[tuple[bytes, int, bytes]] = field(default_factory=list)  # key, ttl ms, payload
    counters: dict[str, int] = field(default_factory=dict)  # key name after the prefix: value
    paused_ms: float = 0.0
    shards: int | None = None


def take(
    target: Target,
    prefix: str,
    pause_ms: int = DEFAULT_PAUSE_MS,
    progress: Progress | None = None,
) -> Snapshot:
    """Every key under the prefix at one moment: writes paused on every node meanwhile."""
    snap = Snapshot(prefix=prefix, created_ms=int(time.time() * 1000))
    start = len(prefix) + 1
    started = time.monotonic()
    paused: list[Redis] = []
    try:
        for node in target.nodes:
            node.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")  # type: ignore[no-untyped-call]
            paused.append(node)
        for node in target.nodes:
            for page in scan_names(node, prefix):
                names = [k for k in page if not is_ephemeral(k[start:].decode(errors="replace"))]
                replies = _dump_batch(node, names, target.cluster)
                for i, key in enumerate(names):
                    ttl, payload = replies[2 * i], replies[2 * i + 1]
                    if payload is None:  # expired before the pause
                        continue
                    snap.entries.append((key, int(ttl), payload))
                    name = key[start:].decode(errors="replace")
                    if is_counter(name):
                        value = node.get(key)
                        if value is not None:
                            snap.counters[name] = int(value)
                if progress:
                    progress(len(names))
            shards = node.get(f"{prefix}:meta:shards")
            if shards is not None and snap.shards is None:
                snap.shards = int(shards)
    finally:
        elapsed_ms = (time.monotonic() - started) * 1000
        for node in paused:
            try:
                node.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
            except Exception:
                pass  # the pause ends by itself at pause_ms
    snap.paused_ms = elapsed_ms
    # Pause started on the first node before `started` was taken on none: the whole snapshot
    # must fit in the pause for every node, with a margin for the round trips around it.
    if elapsed_ms > pause_ms * 0.9:
        raise CliError(
            f"the snapshot took {elapsed_ms:.0f} ms, longer than the write pause of {pause_ms} ms: "
            "it may not be one moment, so nothing was written (run again with a longer --pause-ms)"
        )
    return snap


# PTTL and DUMP of every key of a batch in one call. `no-writes`: a read-only script, which Redis
# runs while writes are paused (an unflagged script would wait for the pause like a write).
DUMP_LUA = """#!lua flags=no-writes
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('PTTL', key)
  out[2 * i] = redis.call('DUMP', key) or false
end
return out
"""


def _dump_batch(node: Redis, names: list[bytes], cluster: bool) -> list[Any]:
    """[ttl, payload, ttl, payload, ...]: one script call on a single Redis (measured ~10 times
    faster than a pipeline of 2 commands a key); on a Cluster node, whose keys span slots a
    script may not mix, a pipeline."""
    if not names:
        return []
    if not cluster:
        replies = node.eval(DUMP_LUA, len(names), *names)
        return [None if r is False else r for r in cast(list[Any], replies)]
    pipe = node.pipeline(transaction=False)
    for key in names:
        pipe.pttl(key)
        pipe.dump(key)
    return list(pipe.execute())


def write(snap: Snapshot, path: Path, fleet_version: str, redis_version: str) -> dict[str, Any]:
    """Write to a temporary file beside `path`, then rename: a failed write leaves no backup."""
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "prefix": snap.prefix,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.created_ms / 1000)),
        "created_ms": snap.created_ms,
        "keys": len(snap.entries),
        "counters": snap.counters,
        "shards": snap.shards,
        "fleet_version": fleet_version,
        "redis_version": redis_version,
        "writes_paused_ms": round(snap.paused_ms, 1),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    with gzip.open(tmp, "wb", compresslevel=1) as out:

        def line(raw: bytes) -> None:
            digest.update(raw)
            out.write(raw)

        line(HEADER)
        line(json.dumps(manifest, separators=(",", ":")).encode() + b"\n")
        for key, ttl, payload in snap.entries:
            entry = {"k": _b64(key), "t": ttl, "v": _b64(payload)}
            line(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        out.write(json.dumps({"sha256": digest.hexdigest()}).encode() + b"\n")
    tmp.replace(path)
    return manifest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ---- reading a backup --------------------------------------------------------------------------


@dataclass
class Backup:
    manifest: dict[str, Any]
    entries: list[tuple[bytes, int, bytes]]


def read(path: Path) -> Backup:
    """The whole backup, checked: header, manifest, every entry, count and checksum."""
    try:
        with gzip.open(path, "rb") as src:
            return _parse(cast(IO[bytes], src), path)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CliError(
            f"{path}: not a readable backup ({exc.__class__.__name__}: {exc}); "
            "it is corrupt or truncated, nothing was restored"
        ) from None


def _parse(src: IO[bytes], path: Path) -> Backup:
    def bad(why: str) -> CliError:
        return CliError(f"{path}: {why}; nothing was restored")

    digest = hashlib.sha256()
    header = src.readline()
    if header != HEADER:
        raise bad("not a tooloo backup (unknown header)")
    digest.update(header)
    raw_manifest = src.readline()
    digest.update(raw_manifest)
    try:
        manifest = json.loads(raw_manifest)
        prefix = str(manifest["prefix"])
        count = int(manifest["keys"])
        int(manifest["created_ms"])
        counters = {str(k): int(v) for k, v in dict(manifest["counters"]).items()}
    except (ValueError, KeyError, TypeError):
        raise bad("its manifest is damaged") from None
    manifest["counters"] = counters
    entries: list[tuple[bytes, int, bytes]] = []
    trailer: dict[str, Any] | None = None
    for raw in src:
        try:
            record = json.loads(raw)
        except ValueError:
            raise bad(f"line {len(entries) + 3} is damaged") from None
        if isinstance(record, dict) and "sha256" in record:
            trailer = record
            break
        try:
            key = base64.b64decode(record["k"], validate=True)
            entries.append((key, int(record["t"]), base64.b64decode(record["v"], validate=True)))
        except (ValueError, KeyError, TypeError):
            raise bad(f"entry {len(entries) + 1} is damaged") from None
        if not key.startswith(prefix.encode() + b":"):
            raise bad(f"entry {len(entries)} is outside the prefix {prefix!r}")
        digest.update(raw)
    if trailer is None:
        raise bad("it is truncated (no checksum at its end)")
    if src.read(1):
        raise bad("it has data after its checksum")
    if trailer["sha256"] != digest.hexdigest():
        raise bad("its checksum does not match its contents")
    if len(entries) != count:
        raise bad(f"it holds {len(entries)} keys, its manifest says {count}")
    return Backup(manifest, entries)


# ---- restore ---------------------------------------------------------------------------------


def existing_keys(target: Target, prefix: str, limit: int | None = None) -> list[bytes]:
    """Keys under the prefix now, leases and rate limits aside (up to `limit`)."""
    start = len(prefix) + 1
    found: list[bytes] = []
    for node in target.nodes:
        for page in scan_names(node, prefix):
            found.extend(k for k in page if not is_ephemeral(k[start:].decode(errors="replace")))
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found


@dataclass
class Restored:
    keys: int
    deleted: int
    counters: dict[str, int]


def restore(
    target: Target,
    backup: Backup,
    prefix: str,
    *,
    gap: int | None = None,
    progress: Progress | None = None,
) -> Restored:
    """Put the backup under `prefix` (which may differ from the backup's): the keys there now are
    deleted first, except the counters, which take the larger value (counter_value). The caller
    has made sure the fleet does not write meanwhile (a stopped or paused fleet)."""
    old = backup.manifest["prefix"].encode() + b":"
    new = prefix.encode() + b":"
    start = len(new)
    now_ms = int(time.time() * 1000)
    if gap is None:
        gap = id_gap(int(backup.manifest["created_ms"]), now_ms)

    # The counters' current values, read before anything is deleted.
    current: dict[str, int | None] = {}
    for name in backup.manifest["counters"]:
        raw = target.router.get(new + name.encode())
        current[name] = int(raw) if raw is not None else None

    deleted = 0
    for node in target.nodes:
        for page in scan_names(node, prefix):
            doomed = [k for k in page if not is_counter(k[start:].decode(errors="replace"))]
            if doomed:
                deleted += _unlink(target, doomed)

    pipe = target.router.pipeline(transaction=False)
    queued = 0
    for key, ttl, payload in backup.entries:
        renamed = new + key[len(old) :]
        name = renamed[start:].decode(errors="replace")
        if name in backup.manifest["counters"]:
            continue  # set below, to the larger value
        pipe.restore(renamed, max(ttl, 0), payload, replace=True)
        queued += 1
        if queued == BATCH:
            pipe.execute()
            if progress:
                progress(queued)
            pipe = target.router.pipeline(transaction=False)
            queued = 0
    if queued:
        pipe.execute()
        if progress:
            progress(queued)

    values: dict[str, int] = {}
    for name, backup_value in backup.manifest["counters"].items():
        version = _VERSION.match(name) is not None
        value = counter_value(backup_value, current[name], gap, version=version)
        # Only ever raised: a value another writer put there meanwhile is kept if larger
        # (a counter that is not there yet is created at `value`).
        _raise_counter(target, new + name.encode(), value)
        values[name] = value
    if progress:
        progress(len(values))
    return Restored(keys=len(backup.entries), deleted=deleted, counters=values)


# Sets a counter to ARGV[1] unless it already holds more: one atomic step, so a concurrent INCR
# is never undone.
RAISE_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if cur < want then redis.call('SET', KEYS[1], ARGV[1]) return want end
return cur
"""


def _raise_counter(target: Target, key: bytes, value: int) -> None:
    target.router.eval(RAISE_LUA, 1, key, str(value))


def _unlink(target: Target, keys: list[bytes]) -> int:
    if not target.cluster:
        return int(target.router.unlink(*keys))
    pipe = target.router.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(int(n) for n in pipe.execute())
