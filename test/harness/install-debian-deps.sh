#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need, when missing: real PostgreSQL 15,
# Redis 7, pgbouncer (benchmarks), openssl (test certificates), iptables and iproute2 (interception
# tests), and g++/make/python3 for node-gyp (the original-destination addon built at npm ci).
# Idempotent; needs root (apt-get). Usage: sudo test/harness/install-debian-deps.sh
set -euo pipefail

packages=(postgresql-15 postgresql-client-15 redis-server pgbouncer openssl iptables iproute2 ca-certificates unzip g++ make python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-debian-deps: all present (${packages[*]})"
  exit 0
fi
echo "install-debian-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# policy-rc.d keeps Debian's maintainer scripts from starting system-wide services we do not use:
# the tests start their own throwaway instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
