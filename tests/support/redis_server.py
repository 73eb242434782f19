"""A real redis-server process on a free port, for one test session (or one test)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis

from shared.embedded_redis import find_redis_server, server_args
from tests.support.ports import free_port


class RedisServer:
    def __init__(
        self, data_dir: Path, *, port: int | None = None, appendonly: bool = False
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        self.proc = subprocess.Popen(
            [binary, *server_args(self.port, self.data_dir, appendonly=self.appendonly)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded wait for the server to answer
            try:
                client.ping()
                client.close()
                return
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer in time")

    def kill(self) -> None:
        """kill -9: no chance to write anything more."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
