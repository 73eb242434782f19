"""The embedded Redis as `make run` starts it (`python -m shared.embedded_redis`, a real
redis-server): private by default (security review 6.1)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from harness.ports import free_port
from harness.processes import ROOT
from shared.embedded_redis import FLEET_USER

pytestmark = pytest.mark.integration


def test_embedded_redis_is_private_and_replays_its_file(tmp_path: Path) -> None:
    port = free_port()
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "REDIS_URL"))}
    # fsync always: every acknowledged write is on disk before the kill -9 below (with everysec
    # a busy disk may postpone the write of the last second: the documented trade-off).
    env.update(TOOLOO_VAR_DIR=str(var), TOOLOO_REDIS_PORT=str(port), TOOLOO_FSYNC="always")
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.embedded_redis"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        password_file = var / "redis.pass"
        fleet: redis.Redis | None = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded wait for the server to answer
            try:
                fleet = redis.Redis(
                    port=port,
                    username=FLEET_USER,
                    password=password_file.read_text().strip(),
                    decode_responses=True,
                )
                fleet.ping()
                break
            except (OSError, redis.ConnectionError):
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
        assert fleet is not None
        assert fleet.incr("written") == 1  # the fleet's user reads and writes
        assert "appendfsync always" in log.read_text()

        anonymous = redis.Redis(port=port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            anonymous.config_set("dir", str(tmp_path))
        with pytest.raises(redis.exceptions.NoPermissionError):
            fleet.config_set("dir", str(tmp_path))
        with pytest.raises(redis.exceptions.NoPermissionError):
            fleet.execute_command("MODULE", "LIST")
        memory = fleet.info("memory")  # INFO stays allowed: the memory alert reads it
        assert int(memory["maxmemory"]) > 0 and memory["maxmemory_policy"] == "noeviction"

        # Private on disk: the directories 0700, every file (password, append-only files) 0600.
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        for path in [var, *var.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        assert (var / "redis").is_dir() and any((var / "redis").rglob("*.aof"))
        assert password_file.read_text().strip() not in log.read_text()

        # Scripts' effects and MULTI blocks are logged as MULTI/EXEC in the append-only file;
        # they must replay after a crash (with the default user off, Redis refused them all).
        fleet.eval("redis.call('SET', KEYS[1], ARGV[1])", 1, "scripted", "yes")
        pipe = fleet.pipeline(transaction=True)
        pipe.incr("in-multi").incr("in-multi")
        pipe.execute()
        server_pid = int(fleet.info("server")["process_id"])
        fleet.close()
        os.kill(server_pid, signal.SIGKILL)  # the wrapper restarts it; it replays its file
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # bounded wait for the restarted server
            try:
                if fleet.get("written") is not None:
                    break
            except (OSError, redis.ConnectionError, redis.BusyLoadingError):
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
        assert fleet.get("written") == "1"
        assert fleet.get("scripted") == "yes"
        assert fleet.get("in-multi") == "2"
        fleet.close()
        anonymous.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
