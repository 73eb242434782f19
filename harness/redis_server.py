"""A redis-server of the harness's own, on a free port, with its data in a directory it is
given: the same server binary and arguments as the fleet's embedded Redis."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from harness.ports import free_port
from shared.embedded_redis import FLEET_USER, find_redis_server, fleet_url, server_args


class RedisServer:
    """A redis-server of our own on a free port (or `port`), data in `data_dir`; with a
    `password`, locked down as the embedded Redis is (default user off, the fleet's ACL user)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        fsync: str = "everysec",
        maxmemory: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.fsync = fsync
        self.maxmemory = maxmemory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.password:
            return fleet_url(self.port, self.password)
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        self.proc = subprocess.Popen(
            [
                binary,
                *server_args(
                    self.port,
                    self.data_dir,
                    appendonly=self.appendonly,
                    password=self.password,
                    fsync=self.fsync,
                    maxmemory=self.maxmemory,
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(
            port=self.port,
            username=FLEET_USER if self.password else None,
            password=self.password,
            socket_connect_timeout=0.5,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded wait for the server to answer
            try:
                client.ping()
                client.close()
                return self
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in time")

    def kill(self) -> None:
        """kill -9: no chance to write anything more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
