"""The real Redis Cluster of harness/redis_cluster.py (3 masters + 3 replicas on loopback) and the
fleet's client for it (shared/redis_conn.py): detection, full slot coverage, no resend."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis, RedisCluster

from harness.ports import free_port
from harness.proxy import ReplyDroppingProxy
from harness.redis_cluster import LocalCluster, free_cluster_base, ports_from
from harness.redis_server import RedisServer
from shared.redis_conn import connect_fleet, make_cluster_client

ROOT = Path(__file__).resolve().parents[2]


def test_helper_starts_three_masters_with_a_replica_each(redis_cluster: LocalCluster):
    lines = subprocess.run(
        [
            str(ROOT / "scripts" / "redis-cluster.sh"),
            "status",
            "--base-port",
            str(redis_cluster.ports[0]),
            "--dir",
            str(redis_cluster.root),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert len(lines) == 6 and all("cluster_state:ok" in line for line in lines), lines
    assert sum(", master," in line for line in lines) == 3
    assert sum(", slave," in line for line in lines) == 3
    # Private, as the embedded Redis: the password file 0600, each node's data 0700.
    pass_file = redis_cluster.root / "redis.pass"
    assert stat.S_IMODE(pass_file.stat().st_mode) == 0o600
    for port in redis_cluster.ports:
        assert stat.S_IMODE(redis_cluster.node_dir(port).stat().st_mode) == 0o700
    # The password is never on a command line (ps would show it).
    for port in redis_cluster.ports:
        pid = redis_cluster.pid_of(port)
        assert pid is not None
        assert redis_cluster.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    # Anonymous clients are refused.
    anonymous = sync_redis.Redis(port=redis_cluster.ports[0], socket_timeout=2)
    with pytest.raises(sync_redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()


async def test_connect_detects_a_cluster_and_a_single_redis(
    redis_cluster: LocalCluster, redis_server: RedisServer
):
    cluster = await connect_fleet(redis_cluster.url)
    try:
        assert isinstance(cluster, RedisCluster)
        assert len(cluster.get_primaries()) == 3
        # Keys on every master, each read back through the node that serves it.
        keys = [f"conn-test:{i}" for i in range(30)]
        assert len({cluster.keyslot(k) for k in keys}) > 3
        for i, key in enumerate(keys):
            await cluster.set(key, i)
        assert [int(await cluster.get(k)) for k in keys] == list(range(30))
        # The fleet's user cannot run the @dangerous commands there either.
        with pytest.raises(sync_redis.exceptions.NoPermissionError):
            await cluster.config_get("maxmemory", target_nodes=RedisCluster.PRIMARIES)
    finally:
        await cluster.aclose()
    single = await connect_fleet(redis_server.url)
    try:
        assert isinstance(single, Redis) and not isinstance(single, RedisCluster)
    finally:
        await single.aclose()


async def test_a_connection_the_node_closed_is_replaced_and_nothing_runs_twice(
    redis_cluster: LocalCluster,
):
    cluster = await connect_fleet(redis_cluster.url)
    try:
        key = "conn-test:stale"
        await cluster.delete(key)
        assert await cluster.incr(key) == 1
        node = cluster.get_node_from_key(key)
        admin = redis_cluster.admin(int(node.port))
        # Every connection of the fleet's user on that node closed while idle (a restart).
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        admin.close()
        await asyncio.sleep(0.2)
        assert await cluster.incr(key) == 2  # sent once, on a new connection
        assert await cluster.get(key) == "2"
    finally:
        await cluster.aclose()


def test_a_cluster_with_slots_no_master_serves_is_refused(tmp_path: Path):
    """A cluster missing slots: a clear error naming them, a non-zero exit, nothing written."""
    lone = LocalCluster(tmp_path / "lone", ports_from(free_cluster_base())[:2], masters=1)
    try:
        lone.start(create=False)
        with lone.admin(lone.ports[0]) as node:
            node.execute_command("CLUSTER ADDSLOTSRANGE", 0, 100)
        with pytest.raises(RuntimeError, match=r"no master has slots 101-16383"):
            asyncio.run(connect_fleet(lone.url, wait_s=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOOLOO_", "PYTEST_"))}
        env.update(
            REDIS_URL=lone.url,
            TRAINING_PORT=str(free_port()),
            TOOLOO_REDIS_WAIT="2",
            TOOLOO_VAR_DIR=str(tmp_path / "var"),
        )
        done = subprocess.run(
            [sys.executable, "-m", "services.training"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "no master has slots 101-16383" in done.stdout + done.stderr
        assert lone.password not in done.stdout + done.stderr  # the URL is masked
        with lone.admin(lone.ports[0]) as node:
            assert node.dbsize() == 0  # nothing written
    finally:
        lone.stop()


@pytest.mark.parametrize("how", ["command", "pipeline", "transaction"])
async def test_a_command_whose_reply_is_lost_is_not_sent_again(
    redis_cluster: LocalCluster, how: str
):
    """A proxy in front of one master forwards an INCR (or a pipeline or MULTI/EXEC holding it)
    and drops the reply: the client gets the error, and the INCR ran once (redis-py alone would
    resend it)."""
    key = f"{{lost-{how}}}:n"
    admin_any = redis_cluster.admin(redis_cluster.ports[0])
    slot = int(admin_any.execute_command("CLUSTER KEYSLOT", key))
    admin_any.close()
    client = make_cluster_client(redis_cluster.url)
    await client.initialize()
    node = client.nodes_manager.get_node_from_slot(slot)
    master = (node.host, int(node.port))
    proxy = ReplyDroppingProxy(master[1], b"INCR")
    await proxy.start()
    await client.aclose()
    client = make_cluster_client(redis_cluster.url)
    # Every address the cluster gives for that master is reached through the proxy.
    client.nodes_manager.address_remap = lambda addr: (
        ("127.0.0.1", proxy.port) if (addr[0], int(addr[1])) == master else addr
    )
    try:
        await client.initialize()
        await client.delete(key)  # an established connection, as in a running service
        with pytest.raises(sync_redis.exceptions.ConnectionError):
            if how == "command":
                await client.incr(key)
            else:
                async with client.pipeline(transaction=how == "transaction") as pipe:
                    pipe.incr(key)
                    await pipe.execute()
        assert proxy.dropped == 1
        with redis_cluster.admin(master[1]) as direct:
            assert direct.get(key) == "1"  # ran once
        assert await client.incr(key) == 2  # usable again at once
    finally:
        await client.aclose()
        await proxy.close()


def test_a_port_in_use_is_named_and_nothing_is_started(tmp_path: Path):
    base = free_cluster_base()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", base + 3 + 10000))  # the cluster bus port of the 4th node
    squatter.listen()
    cluster = LocalCluster(tmp_path / "c", ports_from(base))
    try:
        with pytest.raises(RuntimeError, match=f"port {base + 10003} is in use"):
            cluster.start()
        assert all(cluster.pid_of(port) is None for port in cluster.ports)
    finally:
        squatter.close()
        cluster.stop()


async def test_memory_is_read_on_every_master_and_the_fullest_one_counts(
    redis_cluster: LocalCluster,
):
    """Each master refuses writes at its own maxmemory, so the figure the alerts use is the
    fullest master's, not the one node a bare INFO reaches."""
    from orchestrator.redis_watch import RedisWatch
    from shared.redis_conn import make_client
    from shared.redis_memory import fullest, masters_memory

    cluster = await connect_fleet(redis_cluster.url)
    masters = sorted(int(node.port) for node in cluster.get_primaries())
    tight = masters[-1]
    admin = redis_cluster.admin(tight)
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", str(used * 2))  # that master alone at about 50 %
    watched = make_client(redis_cluster.url)
    watch = RedisWatch(watched, 1.0, alert_pct=40.0, url=redis_cluster.url)
    try:
        nodes = await masters_memory(cluster)
        assert sorted(int(n.node.rsplit(":", 1)[1]) for n in nodes) == masters
        top = fullest(nodes)
        assert top.node.endswith(f":{tight}") and top.limit == used * 2
        # The orchestrator's watch finds the cluster behind REDIS_URL and alerts on that master.
        assert await watch.check()
        assert watch.memory["masters"] == 3 and watch.memory["memory_node"].endswith(f":{tight}")
        assert any("redis memory at" in alert for alert in watch.alerts())
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        await watch.aclose()
        await watched.aclose()
        await cluster.aclose()


def test_honcho_start_on_the_cluster_reaches_armed_and_records_its_events(
    redis_cluster: LocalCluster, honcho_fleet
):
    """`REDIS_URL=<a cluster node> honcho start`, as the README says: the orchestrator's layout
    check, its events and request counts, and every service work on the cluster (a single-node
    client there would be answered MOVED for the keys of the other masters)."""
    import uuid

    from shared.keys import Keys

    prefix = f"h{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_cluster.url, "TOOLOO_REDIS_PREFIX": prefix}
    with honcho_fleet(env) as fleet:
        status, body = fleet.post("training", "/api/v1/training/start", {"learner": "on-cluster"})
        assert status == 200, body
        status, body = fleet.post("training", "/api/v1/training/round", {"learner": "on-cluster"})
        assert status == 200 and body["result"]["success"], body
        status, body = fleet.get("web", "/api/v1/system/replicas")
        assert status == 200, body
        keys = Keys(prefix)
        admin = sync_redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
        try:
            events = [e for _, e in admin.xrange(keys.stream_system, count=1000)]
            assert any(e.get("source") == "orchestrator" for e in events), events[:5]
        finally:
            admin.close()


def test_a_scale_change_and_its_event_are_one_step_on_the_cluster(
    redis_cluster: LocalCluster, tmp_path: Path
):
    """The scale hash shares the system stream's slot: web's MULTI of both is not refused."""
    import uuid

    from harness.fleet import Fleet
    from shared.keys import Keys

    fleet = Fleet(redis_cluster.url, f"s{uuid.uuid4().hex[:8]}", tmp_path / "logs")
    try:
        fleet.start("web")
        status, body = fleet["web"].post("/api/v1/system/scale", {"learners": 25})
        assert status == 200 and body["scale"]["target"] == 25, body
        keys = Keys(fleet.prefix)
        admin = sync_redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
        try:
            assert admin.hget(keys.scale, "target") == "25"
            events = [e for _, e in admin.xrange(keys.stream_system)]
            assert any(e.get("setting") == "scale" for e in events), events[-3:]
        finally:
            admin.close()
    finally:
        fleet.stop_all()
