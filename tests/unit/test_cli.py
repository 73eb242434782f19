"""The `tooloo` command line without a fleet: usage errors are one line and exit 2, a fleet that
does not answer is one line and exit 1, the fleet's error envelope becomes one line; the backup
file round-trips every key type through a real redis-server and a damaged file is refused."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from harness.ports import free_port
from harness.redis_server import RedisServer
from tooloo_cli import snapshot
from tooloo_cli.errors import CliError
from tooloo_cli.http import error_message


def tooloo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "REDIS_URL"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tooloo_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["scale", "abc"],
        ["scale", "-5"],
        ["coach", "boost", "--rounds", "0"],
        ["coach", "boost", "--rounds", "30"],
        ["coach", "fast-lane", "maybe"],
        ["gates", "--window", "1"],
        ["--timeout", "x", "status"],
        ["learners", "show"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str]) -> None:
    done = tooloo(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tooloo: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_fleet_that_does_not_answer_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status"], ["coach", "start"], ["--json", "learners", "list"]):
        done = tooloo("--url", url, *args)
        assert done.returncode == 1, done
        assert done.stderr.strip() == f"tooloo: cannot reach the fleet at {url}: Connection refused"
        assert done.stdout == ""


def test_delete_without_yes_and_without_a_terminal_is_refused() -> None:
    done = tooloo("--url", f"http://127.0.0.1:{free_port()}", "learners", "delete", "x")
    assert done.returncode == 2 and "add --yes" in done.stderr


def test_the_fleets_error_envelope_is_one_line() -> None:
    body = {"ok": False, "error": {"code": "learner_not_found", "message": "No learner\n x"}}
    assert error_message(404, body) == ("404 learner_not_found: No learner x", "learner_not_found")
    assert error_message(502, "<html>bad gateway</html>")[0] == "502: <html>bad gateway</html>"
    assert error_message(500, None)[0] == "500: null"


def test_counter_patterns() -> None:
    for name in [
        "rounds:seq",
        "{s:3}:rounds:seq",
        "learners:seq",
        "{s:12}:learners:seq",
        "training:onboarding:seq",
        "{coach}:fence",
        "{s:2}:lease:fence",
        "curriculum:ver",
    ]:
        assert snapshot.is_counter(name), name
        assert not snapshot.is_ephemeral(name), name
    for name in ["{learner:a}:state", "{coach}:stats", "events:rounds", "{coach}:tput:17"]:
        assert not snapshot.is_counter(name), name
    for name in ["{coach}:lease", "training:onboarding:lease", "{learner:a}:meta:lock"]:
        assert snapshot.is_ephemeral(name), name


def test_counter_value_never_goes_back() -> None:
    assert snapshot.counter_value(100, 150, gap=1000) == 150  # Redis still knows more
    assert snapshot.counter_value(100, 100, gap=1000) == 100
    assert snapshot.counter_value(100, None, gap=1000) == 1100  # wiped: the gap covers the loss
    assert snapshot.counter_value(100, 40, gap=1000) == 1100
    assert snapshot.counter_value(7, 9, gap=1000, version=True) == 10
    assert snapshot.id_gap(0, 1000) == snapshot.MIN_ID_GAP
    assert snapshot.id_gap(0, 3_600_000) == 3600 * snapshot.ID_RATE_CEILING


def _fill(client: sync_redis.Redis, prefix: str) -> None:
    client.hset(f"{prefix}:{{learner:a}}:state", mapping={"v": 3, "s": "x" * 50})
    client.rpush(f"{prefix}:{{learner:a}}:history", "r1", "r2")
    client.zadd(f"{prefix}:learners", {"a": 1, "b": 2})
    client.sadd(f"{prefix}:{{coach}}:fastlane", "a")
    client.set(f"{prefix}:rounds:seq", 41)
    client.set(f"{prefix}:{{coach}}:fence", 5)
    client.set(f"{prefix}:training:idem:k", "h", px=600_000)
    client.set(f"{prefix}:{{coach}}:lease", "holder", px=600_000)  # not saved
    stream = f"{prefix}:events:rounds"
    for i in range(5):
        client.xadd(stream, {"i": i})
    client.xgroup_create(stream, "reports", id="0")
    client.xreadgroup("reports", "c1", {stream: ">"}, count=3)
    client.xack(stream, "reports", client.xrange(stream)[0][0])
    client.set("other:key", "not ours")


def test_backup_round_trip_keeps_every_type_ttl_and_group(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushdb()
    _fill(client, "pa")
    target = snapshot.connect(redis_server.url)
    snap = snapshot.take(target, "pa")
    path = tmp_path / "b.tlb"
    manifest = snapshot.write(snap, path, "0.1.0", "7")
    assert manifest["keys"] == 8 and manifest["counters"] == {"rounds:seq": 41, "{coach}:fence": 5}
    before = {
        k: client.dump(k) for k in client.scan_iter(match="pa:*") if not k.endswith(b":lease")
    }
    stream = "pa:events:rounds"
    groups_before = client.xinfo_groups(stream)
    pending_before = client.xpending(stream, "reports")

    # Into another, empty prefix: every key equal, the lease left out, the TTL kept.
    backup = snapshot.read(path)
    done = snapshot.restore(target, backup, "pb", gap=1000)
    assert done.keys == 8 and done.deleted == 0
    for key, payload in before.items():
        renamed = b"pb" + key[2:]
        if key.endswith((b":seq", b":fence")):
            continue
        assert client.dump(renamed) == payload, key
    assert client.get("pb:rounds:seq") == b"1041" and client.get("pb:{coach}:fence") == b"1005"
    assert client.exists("pb:{coach}:lease") == 0
    assert 0 < client.pttl("pb:training:idem:k") <= 600_000
    assert client.xinfo_groups("pb:events:rounds") == [
        dict(g, **{"name": g["name"]}) for g in groups_before
    ]
    assert client.xpending("pb:events:rounds", "reports") == pending_before
    assert client.get("other:key") == b"not ours"

    # Over the live prefix: counters that moved on keep their value, the rest is the backup's.
    client.incrby("pa:rounds:seq", 10)
    client.hset("pa:{learner:a}:state", "v", 99)
    client.set("pa:{learner:z}:state", "created after the backup")
    done = snapshot.restore(target, backup, "pa", gap=1000)
    assert client.get("pa:rounds:seq") == b"51"
    assert client.hget("pa:{learner:a}:state", "v") == b"3"
    assert client.exists("pa:{learner:z}:state") == 0
    target.close()
    client.close()


def test_damaged_backups_are_refused_before_anything_is_written(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushdb()
    _fill(client, "pa")
    target = snapshot.connect(redis_server.url)
    path = tmp_path / "b.tlb"
    snapshot.write(snapshot.take(target, "pa"), path, "0.1.0", "7")
    good = gzip.decompress(path.read_bytes())
    lines = good.splitlines(keepends=True)

    cases = {
        "truncated": path.read_bytes()[: len(path.read_bytes()) // 2],
        "no checksum": gzip.compress(b"".join(lines[:-1])),
        "changed entry": gzip.compress(b"".join([*lines[:3], lines[4], lines[3], *lines[5:]])),
        "flipped byte": gzip.compress(good.replace(b'"t":-1', b'"t":-2', 1)),
        "not a backup": b"hello",
        "lost entry": gzip.compress(b"".join([*lines[:3], *lines[4:]])),
    }
    for why, raw in cases.items():
        bad = tmp_path / "bad.tlb"
        bad.write_bytes(raw)
        with pytest.raises(CliError) as err:
            snapshot.read(bad)
        assert "nothing was restored" in err.value.message, why
    with pytest.raises(CliError, match="no such file"):
        snapshot.read(tmp_path / "missing.tlb")
    target.close()
    client.close()
