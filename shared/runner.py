"""Start one service on uvloop and stop it cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import ipaddress
import sys
import threading
import traceback
from collections.abc import Callable
from types import TracebackType

import uvloop
from aiohttp import web

from shared.app_factory import API_URL
from shared.logging import redact_text
from shared.replicas import ReplicaSettings, inherited_listener, own_api_listener
from shared.settings import FleetSettings, get_settings

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SHUTDOWN_TIMEOUT_S = 0.6


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_allowed(settings: FleetSettings) -> None:
    """Refuse to expose mutating endpoints beyond this machine without a token."""
    if not is_loopback(settings.host) and not settings.token():
        sys.stderr.write(
            f"refusing to bind to {settings.host}: set TOOLOO_API_TOKEN before exposing the fleet "
            "beyond loopback (or leave TOOLOO_HOST at 127.0.0.1)\n"
        )
        raise SystemExit(2)


def _print_redacted(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook: the traceback Python prints for an uncaught exception, scrubbed like a log
    line first (a REDIS_URL password in a connection error's message must not reach stderr)."""
    sys.stderr.write(redact_text("".join(traceback.format_exception(kind, exc, tb))))
    sys.stderr.flush()


def _print_redacted_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _print_redacted(args.exc_type, args.exc_value, args.exc_traceback)


def install_redacting_excepthook() -> None:
    sys.excepthook = _print_redacted
    threading.excepthook = _print_redacted_thread


def run_service(service: str, create_app: Callable[[FleetSettings], web.Application]) -> None:
    install_redacting_excepthook()
    settings = get_settings()
    check_bind_allowed(settings)
    # A replica serves the port's listening socket the orchestrator bound once and handed down
    # (shared/replicas.py); a service started on its own binds the port itself, as always.
    replica = ReplicaSettings()
    fd = replica.listen_fd
    listener = inherited_listener(fd, "TOOLOO_LISTEN_FD") if fd is not None else None
    app = create_app(settings)
    socks = [listener] if listener else []
    if listener:
        # The same app on a port of this replica's own, announced in its heartbeat, so that the
        # gateway can send one learner's requests to one replica (services/web/learner_routing.py).
        own, app[API_URL] = own_api_listener(settings.host, replica.api_port)
        socks.append(own)
    loop = uvloop.new_event_loop()
    web.run_app(
        app,
        host=None if listener else settings.host,
        port=None if listener else settings.port_of(service),
        sock=socks or None,
        access_log=None,
        print=None,
        # How long in-flight handlers may take after SIGTERM. aiohttp waits this long, then
        # cancels and waits as long again, so a handler that does not return by itself (a
        # stream, a call stuck on an absent Redis) holds the exit for twice this. 0.6 s keeps a
        # stop within the orchestrator's 1.5 s grace and honcho's 5 s; real handlers take ms.
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        handle_signals=True,
        loop=loop,
    )
