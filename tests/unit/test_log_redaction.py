"""Credentials in URLs are masked wherever the fleet writes text (shared/logging.py), tracebacks
Python prints included (shared/runner.py); tests/integration/test_secrets_in_logs.py checks a
real service's output."""

from __future__ import annotations

import sys
import threading

import pytest

from shared.logging import redact_text
from shared.runner import install_redacting_excepthook


def test_url_credentials_are_masked_in_log_text() -> None:
    cases = {
        "redis://:s3cret@127.0.0.1:6390/0": "redis://:***@127.0.0.1:6390/0",
        "Redis at redis://user:s3cret@h:1/0 did": "Redis at redis://user:***@h:1/0 did",
        "rediss://u:p@ss@x:2/0": "rediss://u:***@x:2/0",
        "redis://s3cret@h:1": "redis://***@h:1",
        '{"url":"redis://:s3cret@h"}': '{"url":"redis://:***@h"}',
    }
    for text, masked in cases.items():
        assert redact_text(text) == masked
    for untouched in ("http://127.0.0.1:3000/a@b", "https://h/?q=a@b", "mail a@b.c"):
        assert redact_text(untouched) == untouched


def test_an_uncaught_exception_is_printed_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_redacting_excepthook()
    try:
        raise RuntimeError("cannot reach redis://:s3cret@10.0.0.1:6379/0")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    err = capsys.readouterr().err
    assert "Traceback" in err and "redis://:***@10.0.0.1" in err and "s3cret" not in err
