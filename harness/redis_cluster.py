"""A real Redis Cluster on loopback: 3 masters and 3 replicas of the fleet's own redis-server.

    python -m harness.redis_cluster start [--base-port 7101] [--dir var/cluster]
    python -m harness.redis_cluster status | stop | url

(`scripts/redis-cluster.sh` wraps it.) Each node is the binary the embedded Redis uses
(shared.embedded_redis.find_redis_server), with `cluster-enabled yes`, a short
`cluster-node-timeout` (TOOLOO_CLUSTER_NODE_TIMEOUT_MS, 1500 ms: a failover then takes a few
seconds; Redis's default 15 s would make every failover that slow, which is what a real, less
local cluster may prefer), an append-only file, bound to 127.0.0.1, its data under
`<dir>/<port>/` (0700, files 0600).

Password, as the embedded Redis: generated on first start into `<dir>/redis.pass` (0600), never on
a command line (redis-server gets its SHA-256). The fleet connects as the ACL user `tooloo`, which
cannot run the @dangerous commands; the default user holds the same password with every right,
because replication (`masterauth`), cluster administration (ADDSLOTSRANGE, MEET, REPLICATE,
SETSLOT, MIGRATE) and the tests' DEBUG need them, and redis-server replays its append-only file as
the default user.

The cluster is made with CLUSTER commands from Python (no redis-cli needed): ADDSLOTSRANGE on the
masters, MEET, REPLICATE; then the helper waits for `cluster_state:ok` on every node and for every
replica's link to its master. A cluster already created (its nodes.conf files exist) is just
started again. `stop` stops only the processes this helper started: their pids are in pid files,
checked against the process's command line before a signal is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from shared.embedded_redis import (
    FLEET_ACL,
    FLEET_USER,
    PASSWORD_FILE,
    find_redis_server,
    fleet_password,
    fleet_url,
    private_dir,
    server_args,
    var_dir,
)

DEFAULT_BASE_PORT = 7101
MASTERS = 3
REPLICAS_PER_MASTER = 1
SLOTS = 16384
DEFAULT_NODE_TIMEOUT_MS = 1500
PID_FILE = "redis.pid"
BUS_PORT_OFFSET = 10000  # Redis's cluster bus listens on port + 10000


def cluster_acl_args(password: str) -> list[str]:
    """The default user: every right (replication, cluster administration, AOF replay); the
    fleet's user: the fleet's rules. Both with the password, passed as its SHA-256 only."""
    digest = f"#{hashlib.sha256(password.encode()).hexdigest()}"
    return [
        "--user", "default", "reset", "on", digest, "~*", "&*", "+@all",
        "--user", FLEET_USER, "reset", "on", digest, *FLEET_ACL,
    ]  # fmt: skip


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """16384 slots cut into `masters` contiguous ranges, as redis-cli --cluster create does."""
    per = SLOTS / masters
    return [(round(i * per), round((i + 1) * per) - 1) for i in range(masters)]


@dataclass
class LocalCluster:
    """`masters` masters and as many replicas each, on `ports` (masters first), data in `root`."""

    root: Path
    ports: list[int]
    masters: int = MASTERS
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    password: str = ""
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ports) < self.masters * (1 + REPLICAS_PER_MASTER):
            raise ValueError(f"{self.masters} masters with replicas need {2 * self.masters} ports")
        private_dir(self.root)
        if not self.password:
            self.password = fleet_password(self.root)

    # ---- addresses -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The fleet's REDIS_URL: any node will do, the client discovers the others."""
        return fleet_url(self.ports[0], self.password)

    def node_dir(self, port: int) -> Path:
        return self.root / str(port)

    def admin(self, port: int, timeout_s: float = 5.0) -> redis.Redis:
        """A synchronous client of one node as the default (administrative) user."""
        return redis.Redis(
            port=port,
            password=self.password,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=1.0,
        )

    # ---- start -----------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0, *, create: bool = True) -> LocalCluster:
        """Start every node not yet running, create the cluster if it was never created, and
        wait (bounded) until it serves every slot with every replica attached. With `create`
        False the nodes are only started, knowing no slots and no other node (for tests)."""
        fresh = not any((self.node_dir(p) / "nodes.conf").exists() for p in self.ports)
        missing = [port for port in self.ports if self.pid_of(port) is None]
        for port in missing:
            for taken in (port, port + BUS_PORT_OFFSET):
                if not port_free(taken):
                    raise RuntimeError(
                        f"port {taken} is in use by another process (node {port} needs it and "
                        f"its cluster bus port {port + BUS_PORT_OFFSET}); choose --base-port"
                    )
        spawned = []
        try:
            for port in missing:
                old = self.procs.pop(port, None)
                if old is not None:
                    old.poll()  # reap a node of ours that died (kill -9 in a test)
                self._spawn(port)
                spawned.append(port)
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                self._wait_ping(port, deadline)
            if not create:
                return self
            if fresh:
                self._create(deadline)
            self.wait_ok(deadline)
        except BaseException:
            self.stop(only=spawned)  # what this call started, nothing else
            raise
        return self

    def _spawn(self, port: int) -> None:
        data = private_dir(self.node_dir(port))
        args = [
            *server_args(port, data, appendonly=True),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica takes over whatever its link's age: with 1.5 s node timeouts on a busy
            # machine, the default validity factor can leave a master's slots with no one.
            "--cluster-replica-validity-factor", "0",
            "--masterauth", self.password,
            *cluster_acl_args(self.password),
        ]  # fmt: skip
        # masterauth is the one setting that needs the password in clear: passed in a config
        # file of the node's own (0600), not on the command line `ps` shows.
        masterauth = args.index("--masterauth")
        conf = data / "auth.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'masterauth "{self.password}"\n')
        del args[masterauth : masterauth + 2]
        log = os.open(data / "redis.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        old_umask = os.umask(0o077)
        try:
            proc = subprocess.Popen(
                [find_redis_server(), str(conf), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the helper's exit (`start` returns)
            )
        finally:
            os.umask(old_umask)
            os.close(log)
        self.procs[port] = proc
        fd = os.open(data / PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{proc.pid}\n")

    def _wait_ping(self, port: int, deadline: float) -> None:
        client = self.admin(port, timeout_s=1.0)
        try:
            while True:  # bounded by the deadline
                try:
                    client.ping()
                    return
                except redis.exceptions.RedisError as exc:
                    proc = self.procs.get(port)
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(
                            f"redis-server on {port} exited ({proc.returncode}); see "
                            f"{self.node_dir(port) / 'redis.log'}"
                        ) from exc
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {port} did not answer") from exc
                    time.sleep(0.05)
        finally:
            client.close()

    def _create(self, deadline: float) -> None:
        masters = self.ports[: self.masters]
        replicas = self.ports[self.masters : 2 * self.masters]
        for port, (first, last) in zip(masters, slot_ranges(self.masters), strict=True):
            with contextlib.closing(self.admin(port)) as node:
                node.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        with contextlib.closing(self.admin(self.ports[0])) as first_node:
            for port in self.ports[1:]:
                first_node.execute_command("CLUSTER MEET", "127.0.0.1", port)
        ids = {port: self.node_id(port) for port in self.ports}
        for master, replica in zip(masters, replicas, strict=True):
            with contextlib.closing(self.admin(replica)) as node:
                while True:  # bounded by the deadline: the replica must know its master first
                    try:
                        node.execute_command("CLUSTER REPLICATE", ids[master])
                        break
                    except redis.exceptions.ResponseError as exc:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{replica} cannot replicate {master}") from exc
                        time.sleep(0.1)

    def node_id(self, port: int) -> str:
        with contextlib.closing(self.admin(port)) as node:
            return str(node.execute_command("CLUSTER MYID"))

    def wait_ok(self, deadline: float) -> None:
        """Until every node says cluster_state:ok and knows every node, and every replica's
        link to its master is up."""
        pending = list(self.ports)
        while pending:  # bounded by the deadline
            port = pending[0]
            try:
                if self._node_ok(port):
                    pending.pop(0)
                    continue
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {port} not ready (cluster_state, replication)")
            time.sleep(0.1)

    def _node_ok(self, port: int) -> bool:
        with contextlib.closing(self.admin(port)) as node:
            info = cluster_info(node)
            if info.get("cluster_state") != "ok":
                return False
            known = int(info.get("cluster_known_nodes") or 0)
            if known < len(self.ports):
                return False
            # Every node must also know every replica as one (clients read the map from any).
            nodes = dict(node.execute_command("CLUSTER NODES")).values()
            replicas = sum(1 for n in nodes if "slave" in n["flags"] and n["master_id"] != "-")
            if replicas < len(self.ports) - self.masters:
                return False
            repl = node.info("replication")
            if repl.get("role") == "slave":
                return bool(repl.get("master_link_status") == "up")
            return int(repl.get("connected_slaves", 0)) >= REPLICAS_PER_MASTER

    # ---- processes -------------------------------------------------------------------------------
    def pid_of(self, port: int) -> int | None:
        """The pid in the node's pid file, if that process runs and is its redis-server."""
        path = self.node_dir(port) / PID_FILE
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            # redis-server retitles itself "redis-server 127.0.0.1:<port> [cluster]".
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        if b"redis-server" not in cmdline or f":{port} ".encode() not in cmdline:
            return None
        return pid

    def signal_node(self, port: int, sig: signal.Signals) -> None:
        """A signal to one node we started (SIGSTOP/SIGCONT/SIGKILL in the tests)."""
        pid = self.pid_of(port)
        if pid is None:
            raise RuntimeError(f"no redis-server of this cluster runs on {port}")
        os.kill(pid, sig)

    def stop(self, timeout_s: float = 10.0, *, only: list[int] | None = None) -> list[int]:
        """SIGTERM each node this helper started (writes its append-only file), then SIGKILL
        what is left after `timeout_s`; returns the ports stopped."""
        stopped: dict[int, int] = {}
        for port in self.ports if only is None else only:
            pid = self.pid_of(port)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # a paused node cannot act on SIGTERM
                    os.kill(pid, signal.SIGTERM)
                stopped[port] = pid
        deadline = time.monotonic() + timeout_s
        for port, pid in stopped.items():
            proc = self.procs.get(port)
            while _alive(pid, proc) and time.monotonic() < deadline:  # bounded
                time.sleep(0.05)
            if _alive(pid, proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            (self.node_dir(port) / PID_FILE).unlink(missing_ok=True)
        return list(stopped)

    def status(self) -> list[str]:
        lines = []
        for port in self.ports:
            pid = self.pid_of(port)
            if pid is None:
                lines.append(f"{port}: not running")
                continue
            try:
                with contextlib.closing(self.admin(port, timeout_s=1.0)) as node:
                    state = cluster_info(node).get("cluster_state")
                    role = node.info("replication").get("role")
                lines.append(f"{port}: pid {pid}, {role}, cluster_state:{state}")
            except redis.exceptions.RedisError as exc:
                lines.append(f"{port}: pid {pid}, not answering ({exc})")
        return lines


def cluster_info(node: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO as a dict (redis-py parses it into one)."""
    reply = node.execute_command("CLUSTER INFO")
    return {str(k): str(v) for k, v in dict(reply).items()}


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of a process we did not start is reaped by its parent; /proc says it is gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port`: a bind succeeds with SO_REUSEADDR, as redis-server
    binds (so connections of an earlier run in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_base(count: int = MASTERS * (1 + REPLICAS_PER_MASTER)) -> int:
    """A first port of `count` consecutive free ports whose cluster bus ports (+10000) are free
    too, below the usual ephemeral range (so +10000 stays a valid port); for tests."""
    for _ in range(200):  # bounded: a busy machine still has many such ranges
        base = random.randrange(20000, 30000 - count)
        if all(port_free(p) and port_free(p + BUS_PORT_OFFSET) for p in range(base, base + count)):
            return base
    raise RuntimeError("no free range of ports for a test cluster")


def ports_from(base: int) -> list[int]:
    return list(range(base, base + MASTERS * (1 + REPLICAS_PER_MASTER)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.redis_cluster", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "url"])
    parser.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("TOOLOO_CLUSTER_BASE_PORT") or DEFAULT_BASE_PORT),
        help="first of the six ports, masters first (env TOOLOO_CLUSTER_BASE_PORT; 7101)",
    )
    parser.add_argument(
        "--dir",
        default=os.environ.get("TOOLOO_CLUSTER_DIR") or "",
        help="data directory (env TOOLOO_CLUSTER_DIR; default <var>/cluster)",
    )
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=int(os.environ.get("TOOLOO_CLUSTER_NODE_TIMEOUT_MS") or DEFAULT_NODE_TIMEOUT_MS),
    )
    args = parser.parse_args(argv)
    root = Path(args.dir).resolve() if args.dir else var_dir() / "cluster"
    cluster = LocalCluster(root, ports_from(args.base_port), node_timeout_ms=args.node_timeout_ms)
    if args.command == "start":
        cluster.start()
        print(f"redis cluster up: {MASTERS} masters + {MASTERS} replicas on ports "
              f"{cluster.ports[0]}-{cluster.ports[-1]}, data in {root}")  # fmt: skip
        # The password stays in its file: the line below reads it, so it is not printed.
        print(
            f'export REDIS_URL="redis://{FLEET_USER}:$(cat {root / PASSWORD_FILE})'
            f'@127.0.0.1:{cluster.ports[0]}/0"'
        )
    elif args.command == "stop":
        stopped = cluster.stop()
        print(f"stopped {len(stopped)} redis-server(s): {stopped}")
    elif args.command == "status":
        print("\n".join(cluster.status()))
    else:
        print(cluster.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
