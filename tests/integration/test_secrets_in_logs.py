"""A password in REDIS_URL never reaches a service's output (shared/logging.py `redact_text`,
the redacting excepthook of shared/runner.py): a real service process started with one against
a dead port and against a live Redis that refuses it, each until it gives up and exits."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from harness.ports import free_port
from harness.processes import ROOT
from harness.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_a_redis_password_never_appears_in_a_services_output(redis_server: RedisServer) -> None:
    password = f"pw-{secrets.token_hex(12)}"
    live_port = redis_server.url.rsplit(":", 1)[1].split("/")[0]
    urls = [
        f"redis://:{password}@127.0.0.1:{free_port()}/0",  # nothing listens
        f"redis://fleet:{password}@127.0.0.1:{live_port}/0",  # Redis refuses the credentials
        f"rediss://:{password}@127.0.0.1:{free_port()}/0",
    ]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.reports"],
            cwd=ROOT,
            env={
                **base,
                "REDIS_URL": url,
                "REPORTS_PORT": str(free_port()),
                "TOOLOO_LOG_LEVEL": "debug",
                # It waits this long for Redis before it gives up and exits.
                "TOOLOO_REDIS_WAIT": "8",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    for url, proc in zip(urls, procs, strict=True):
        out, err = proc.communicate(timeout=60)  # it gives up after TOOLOO_REDIS_WAIT
        assert proc.returncode != 0, (url, out[-2000:], err[-2000:])
        # It did report the failure, with the URL masked...
        assert "did not answer" in err and ":***@127.0.0.1" in err, err[-2000:]
        assert "redis_unavailable" in out
        # ...and the password appears nowhere, traceback included.
        assert password not in out and password not in err, (url, out[-2000:], err[-2000:])
