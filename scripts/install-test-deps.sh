#!/usr/bin/env bash
# System packages the test suite needs beyond Python: chromium for the Control Room browser test.
# Installs them with apt when missing and we may (root); otherwise says what is missing and the
# browser test skips with that reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the browser test..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
else
  echo "chromium is not installed and cannot be installed here; the browser test will be skipped" >&2
fi
