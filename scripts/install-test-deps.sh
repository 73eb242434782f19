#!/usr/bin/env bash
# System packages the test suite needs beyond Python: chromium for the Control Room browser test,
# prometheus (the server and promtool) for the deploy/prometheus checks and the scrape test.
# Installs the missing ones with apt when we may (root); otherwise says what is missing and the
# tests that need it skip with that reason.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" = "0" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (Debian packages) for the tests..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "not installed and cannot be installed here: ${missing[*]}; the tests that need them will be skipped" >&2
fi
