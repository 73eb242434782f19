"""The fleet's HTTP API, as the command line calls it: one request, a timeout, the fleet's error
envelope turned into a one-line message. The standard library's client is enough for one call at a
time and keeps the command's start-up short."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tooloo_cli.errors import CliError


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class FleetError(CliError):
    """The fleet answered with an error status; `status` and `code` say which."""

    def __init__(self, message: str, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = code


def error_message(status: int, body: Any) -> tuple[str, str | None]:
    """The fleet's envelope `{"ok": false, "error": {code, message, details}}` as one line."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or "error")
        message = str(err.get("message") or "").strip() or code
        details = err.get("details")
        extra = ""
        if code == "validation_error" and isinstance(details, dict | list):
            extra = f" ({json.dumps(details, separators=(',', ':'))[:300]})"
        return f"{status} {code}: {' '.join(message.split())}{extra}", code
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f"{status}: {body['error']}", None
    text = body if isinstance(body, str) else json.dumps(body)
    return f"{status}: {' '.join(str(text).split())[:200] or 'no body'}", None


class FleetClient:
    def __init__(self, base_url: str, token: str | None, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        *,
        ok_statuses: tuple[int, ...] = (),
    ) -> Answer:
        """One request; a 2xx (or a status in `ok_statuses`) is returned, any other status raises
        FleetError with the fleet's message, a fleet that does not answer raises CliError."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if method != "GET":
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return Answer(response.status, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
            decoded = _decode(raw)
            if status in ok_statuses:
                return Answer(status, decoded)
            message, code = error_message(status, decoded)
            if status == 401:
                message += " (set TOOLOO_API_TOKEN or pass --token)"
            raise FleetError(f"{method} {path}: {message}", status, code) from None
        except TimeoutError:
            raise CliError(
                f"{method} {path}: the fleet at {self.base_url} did not answer within "
                f"{self.timeout_s:g} s"
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
            raise CliError(f"cannot reach the fleet at {self.base_url}: {text}") from None
        except (ConnectionError, OSError) as exc:
            raise CliError(f"cannot reach the fleet at {self.base_url}: {exc}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, query=query or None).body

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body).body

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path).body


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")
