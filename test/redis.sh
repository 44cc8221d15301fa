#!/usr/bin/env bash
# Installs redis-server (Debian package) when it is missing, for the tests of
# integrations/redis, which start their own redis-server processes on
# loopback ports. CI runs this before `go test`; set RUNBOOKBOT_REQUIRE_REDIS=1
# there so that a missing binary fails the tests instead of skipping them.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
	redis-server --version
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends redis-server

# The package may start a system service on port 6379; the tests do not use
# it, so stop it where a service manager exists (harmless where none does).
if command -v service >/dev/null 2>&1; then
	$SUDO service redis-server stop >/dev/null 2>&1 || true
fi

redis-server --version
