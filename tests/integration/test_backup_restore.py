"""`tooloo backup` and `tooloo restore` on a real fleet: run rounds, back up, run more, wipe Redis,
restore: every learner is the backup's and no round id is handed out twice. A backup taken while
the fleet writes is one moment; a damaged file or a non-empty prefix changes nothing; every
counter a running fleet keeps is one the restore never moves back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from harness.fleet import Fleet
from harness.polling import wait_for
from shared.fleet_totals import learner_ids_sync, rounds_total_sync
from shared.keys import ROUND_ID_STRIDE, Keys
from shared.learner_state import decode
from tooloo_cli import snapshot

pytestmark = pytest.mark.integration

LEARNERS = [f"b{i}" for i in range(6)]


def tooloo(fleet: Fleet, *args: str, prefix: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "REDIS_URL"))}
    env.update(
        TOOLOO_URL=fleet.url("web"),
        REDIS_URL=fleet.redis_url,
        TOOLOO_REDIS_PREFIX=prefix or fleet.prefix,
    )
    return subprocess.run(
        [sys.executable, "-m", "tooloo_cli", "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def ok(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def rounds(fleet: Fleet, learners: list[str], n: int) -> list[int]:
    status, body = fleet["training"].post(
        "/api/v1/training/rounds", {"learners": learners, "rounds_per_learner": n}
    )
    assert status == 200 and not body["errors"], body
    return [r["round"] for r in body["rounds"]]


def learner_keys(client: sync_redis.Redis, keys: Keys) -> dict[str, Any]:
    """Every learner's stored state, history and meta, as Redis holds them."""
    found: dict[str, Any] = {}
    for learner in LEARNERS:
        found[learner] = (
            client.hgetall(keys.learner_state(learner)),
            client.get(keys.learner_history(learner)),
            client.hgetall(keys.learner_meta(learner)),
            client.lrange(keys.learner_meta_log(learner), 0, -1),
        )
    for shard in keys.all_shards():
        found[f"index {shard}"] = client.zrange(keys.learners_index(shard), 0, -1, withscores=True)
    return found


def shard_counters(client: sync_redis.Redis, keys: Keys) -> dict[int, int]:
    """Each shard's round counter: shard s hands out ids s * ROUND_ID_STRIDE + n."""
    return {s: int(client.get(keys.rounds_seq(s)) or 0) for s in keys.all_shards()}


def highest_per_shard(ids: list[int]) -> dict[int, int]:
    """The highest counter value given out in each shard, from round ids."""
    top: dict[int, int] = {}
    for round_id in ids:
        shard, n = divmod(round_id, ROUND_ID_STRIDE)
        top[shard] = max(top.get(shard, 0), n)
    return top


def manifest_rounds(manifest: dict[str, Any]) -> int:
    """The rounds total a backup recorded: the sum of its shards' round counters."""
    return sum(v for name, v in manifest["counters"].items() if name.endswith(":rounds:seq"))


def groups(client: sync_redis.Redis, keys: Keys) -> dict[str, Any]:
    out = {}
    streams = [keys.stream_system]
    for shard in keys.all_shards():
        streams += [keys.stream_rounds(shard), keys.stream_meta(shard)]
    for stream in streams:
        if client.exists(stream):
            out[stream] = [
                (g["name"], g["last-delivered-id"], g["pending"])
                for g in client.xinfo_groups(stream)
            ]
    return out


def test_backup_wipe_restore(fleet: Fleet, tmp_path: Path) -> None:
    keys = Keys(fleet.prefix)
    client = sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True)
    fleet.start("training", "meta", "reports", "web")
    for learner in LEARNERS:
        assert fleet["training"].post("/api/v1/training/start", {"learner": learner})[0] == 200
    given = rounds(fleet, LEARNERS, 20)
    status, _ = fleet["meta"].post("/api/v4/meta-learning/run-all", {"learner": LEARNERS[0]})
    assert status == 200
    # Reports caught up, so its groups' positions stay put until the backup.
    wait_for(
        lambda: fleet["reports"].get("/api/v1/reports/status")[1]["status"]["consumer_lag"] == 0,
        timeout_s=30,
    )
    at_backup = learner_keys(client, keys)
    groups_at_backup = groups(client, keys)
    file = tmp_path / "fleet.tlb"
    made = ok(tooloo(fleet, "backup", str(file)))
    assert manifest_rounds(made["manifest"]) == len(given)
    assert made["manifest"]["prefix"] == fleet.prefix and made["manifest"]["keys"] > 20

    given += rounds(fleet, LEARNERS, 5)
    assert learner_keys(client, keys) != at_backup

    # A non-empty prefix is refused without --force, and with --force while the fleet runs
    # without a complete full pause (no coach here): nothing changes either way.
    assert "is not empty" in refused(tooloo(fleet, "restore", str(file)))
    before = learner_keys(client, keys)
    assert "full pause" in refused(tooloo(fleet, "restore", str(file), "--force"))
    assert learner_keys(client, keys) == before

    # A truncated backup: refused, nothing written.
    broken = tmp_path / "broken.tlb"
    broken.write_bytes(file.read_bytes()[:-200])
    fleet.stop_all()
    client.flushall()
    assert "nothing was restored" in refused(tooloo(fleet, "restore", str(broken)))
    assert client.dbsize() == 0

    # Wiped Redis, stopped fleet: the restore puts every learner back as it was backed up.
    done = ok(tooloo(fleet, "restore", str(file)))
    assert done["keys"] == made["manifest"]["keys"]
    assert learner_keys(client, keys) == at_backup
    assert groups(client, keys) == groups_at_backup
    counters = shard_counters(client, keys)
    for shard, top in highest_per_shard(given).items():
        assert counters[shard] > top, shard  # the ids given after the backup are skipped

    for name in ("training", "meta", "reports", "web"):
        fleet.restart(name).wait_ready()
    status, view = fleet["training"].get(f"/api/v1/learners/{LEARNERS[1]}")
    assert status == 200 and view["learner"]["rounds"] == 20
    new = rounds(fleet, LEARNERS, 2)
    before_restore = highest_per_shard(given)
    for round_id in new:
        shard, n = divmod(round_id, ROUND_ID_STRIDE)
        assert n > before_restore.get(shard, 0), f"round id {round_id} was handed out twice"
    status, view = fleet["training"].get(f"/api/v1/learners/{LEARNERS[1]}")
    assert view["learner"]["rounds"] == 22

    # --force over the fleet's own prefix with the fleet stopped: counters Redis still has
    # (at or past the backup's) keep their value, no gap needed.
    seq_now = shard_counters(client, keys)
    fleet.stop_all()
    ok(tooloo(fleet, "restore", str(file), "--force"))
    assert learner_keys(client, keys) == at_backup
    assert shard_counters(client, keys) == seq_now
    client.close()


def test_backup_while_the_fleet_writes_is_one_moment(fleet: Fleet, tmp_path: Path) -> None:
    """Rounds committed from four threads during the backup: in the restored copy, the round
    counter equals the sum of the learners' round counts, which holds only for one moment."""
    keys = Keys(fleet.prefix)
    client = sync_redis.Redis.from_url(fleet.redis_url, decode_responses=True)
    fleet.start("training", "meta", "reports", "coach", "web")
    for learner in LEARNERS:
        fleet["training"].post("/api/v1/training/start", {"learner": learner})
    assert fleet["coach"].post("/api/v1/auto-coach/start")[0] == 200
    assert fleet["web"].post("/api/v1/system/scale", {"learners": 30})[0] == 200
    stop = threading.Event()
    errors: list[str] = []

    def hammer(i: int) -> None:
        while not stop.is_set():
            status, body = fleet["training"].post(
                "/api/v1/training/rounds",
                {"learners": LEARNERS[i::2], "rounds_per_learner": 3},
            )
            if status != 200:
                errors.append(f"{status} {body}")

    threads = [threading.Thread(target=hammer, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: rounds_total_sync(client, keys) > 200, timeout_s=30)
        file = tmp_path / "busy.tlb"
        made = ok(tooloo(fleet, "backup", str(file)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:3]

    copy = f"{fleet.prefix}c"
    ok(tooloo(fleet, "restore", str(file), "--id-gap", "0", prefix=copy))
    copy_keys = Keys(copy)
    total = 0
    for learner in learner_ids_sync(client, copy_keys):
        raw = client.hget(copy_keys.learner_state(learner), "s")
        total += decode(raw).rounds
    assert total == manifest_rounds(made["manifest"]) == rounds_total_sync(client, copy_keys)

    # Every counter-like key this running fleet keeps (round and learner sequences, onboarding,
    # the coach's fencing token, the curriculum version) is one the restore never moves back.
    wait_for(lambda: client.exists(keys.onboarding_seq) == 1, timeout_s=30)
    suffixes = (":seq", ":fence", ":ver")
    found = [
        k[len(fleet.prefix) + 1 :]
        for k in client.scan_iter(match=f"{fleet.prefix}:*")
        if k.endswith(suffixes)
    ]
    kinds = {name.split("}:", 1)[-1] for name in found}
    assert {"rounds:seq", "learners:seq", "training:onboarding:seq", "coach:fence"} <= kinds
    unmatched = [name for name in found if not snapshot.is_counter(name)]
    assert not unmatched, f"counters the restore would move back: {unmatched}"
    client.close()


def test_backup_and_restore_on_the_embedded_redis(tmp_path: Path) -> None:
    """The embedded Redis with its ACL (`make run`'s), found as the services find it: no
    REDIS_URL, its port and the password file in the var directory. Its fleet user may pause
    writes, DUMP through the read-only script and RESTORE."""
    import time as clock

    from harness.ports import free_port
    from harness.processes import ROOT, terminate
    from shared.embedded_redis import FLEET_USER

    port, var = free_port(), tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "REDIS_URL"))}
    env.update(TOOLOO_VAR_DIR=str(var), TOOLOO_REDIS_PORT=str(port))
    with (tmp_path / "redis.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.embedded_redis"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def connect() -> sync_redis.Redis | None:
            try:
                client = sync_redis.Redis(
                    port=port,
                    username=FLEET_USER,
                    password=(var / "redis.pass").read_text().strip(),
                )
                client.ping()
                return client
            except (OSError, sync_redis.RedisError):
                assert proc.poll() is None
                clock.sleep(0.05)
                return None

        client = wait_for(connect, "embedded redis", timeout_s=30)
        client.hset("emb:{learner:a}:state", mapping={"v": 2, "s": "x"})
        client.set("emb:rounds:seq", 17)
        client.xadd("emb:events:rounds", {"r": 1})
        client.xgroup_create("emb:events:rounds", "reports", id="0")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "tooloo_cli", "--json", *args],
                capture_output=True,
                text=True,
                timeout=120,
                env=dict(env, TOOLOO_URL=f"http://127.0.0.1:{free_port()}"),
            )

        file = tmp_path / "emb.tlb"
        made = ok(cli("backup", str(file), "--prefix", "emb"))
        assert made["manifest"]["keys"] == 3
        assert ok(cli("restore", str(file), "--prefix", "copy", "--id-gap", "0"))["keys"] == 3
        assert client.hgetall("copy:{learner:a}:state") == {b"v": b"2", b"s": b"x"}
        assert client.get("copy:rounds:seq") == b"17"
        assert client.xinfo_groups("copy:events:rounds")[0]["name"] == b"reports"
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            client.flushall()  # the rest of @dangerous stays refused
        client.close()
    finally:
        terminate(proc, 10)
