"""The listening sockets the orchestrator binds once and hands to replicas.

A service run as several replicas shares one listening socket: the orchestrator binds the
service's port at the first spawn and keeps it open for its whole life, and every replica
inherits it (`pass_fds`, `TOOLOO_LISTEN_FD`) and serves it (aiohttp's `SockSite`). Each replica
also gets a control socket of its own, bound the same way and kept across its restarts.

Why an inherited socket rather than SO_REUSEPORT (each replica binding the port itself): the port
is never free between two restarts, so no other process can take it meanwhile (with
SO_REUSEPORT any process of the same user could join the port's group at any time); a replica
killed with connections waiting loses none of them (they wait in the one accept queue for the
others, while SO_REUSEPORT hashes each connection to one process's own queue, dropped with it);
and a replica's control port stays the same across its restarts.
"""

from __future__ import annotations

import socket

from shared.logging import get_logger

log = get_logger(__name__)

BACKLOG = 1024


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: the OS picks one). Raises OSError when the
    port is taken, with the port in the message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As servers do, so a port left in TIME_WAIT by a previous fleet can be bound again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class Listeners:
    """Sockets by name (a service's port, a replica's control port), bound at first use and kept
    until `close_all` at the orchestrator's exit. Only used on the event loop thread."""

    def __init__(self, host: str) -> None:
        # A wildcard or named host is bound as is; the children serve whatever was bound.
        self.host = host
        self._socks: dict[str, socket.socket] = {}

    def get(self, name: str, port: int) -> socket.socket:
        sock = self._socks.get(name)
        if sock is None:
            sock = bind_listener(self.host, port)
            self._socks[name] = sock
            log.info("listener_bound", name=name, port=sock.getsockname()[1])
        return sock

    @staticmethod
    def port_of(sock: socket.socket) -> int:
        return int(sock.getsockname()[1])

    def close_all(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
