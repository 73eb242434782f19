#!/usr/bin/env bash
# A real Redis Cluster on loopback for the fleet: 3 masters + 3 replicas on ports 7101-7106
# (TOOLOO_CLUSTER_BASE_PORT), data and password under var/cluster/ (TOOLOO_CLUSTER_DIR), made from
# the same redis-server the embedded Redis uses. See harness/redis_cluster.py.
#   scripts/redis-cluster.sh start    start (or restart) the nodes, create the cluster, wait for ok
#   scripts/redis-cluster.sh status   each node's pid, role and cluster_state
#   scripts/redis-cluster.sh url      the REDIS_URL to give the fleet (holds the password)
#   scripts/redis-cluster.sh stop     stop the nodes this script started (pid files)
# Extra arguments go to the helper (--base-port, --dir, --node-timeout-ms).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: $0 start|stop|status|url [--base-port N] [--dir DIR] [--node-timeout-ms MS]" >&2
  exit 2
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" -m harness.redis_cluster "$@"
