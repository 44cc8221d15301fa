#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine
# (redis-server, Prometheus, Alertmanager), then runs gofmt, go vet,
# staticcheck and every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
pkgs=()
need redis-server || pkgs+=(redis-server)
need prometheus || pkgs+=(prometheus)
need prometheus-alertmanager || pkgs+=(prometheus-alertmanager)
if [ ${#pkgs[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "installing: ${pkgs[*]}"
  $sudo apt-get update -qq
  # The tests start their own servers, so the packages must not start
  # theirs: a policy-rc.d that says "no" (Debian's switch, honoured by
  # invoke-rc.d and deb-systemd-invoke) keeps every service from starting
  # during the install. Nothing is stopped or killed afterwards, so no
  # process this script did not start is touched. An existing policy-rc.d
  # is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# test/run.sh: no service starts while it installs packages\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT # also when the install fails
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    $sudo rm -f "$policy"
    trap - EXIT
  else
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
fi
# A real Kubernetes control plane, built once into ~/.cache (10–17 min cold).
./test/k8s/build.sh
# Tests that need these fail instead of skipping.
export RUNBOOKBOT_REQUIRE_REDIS=1 RUNBOOKBOT_REQUIRE_PROMETHEUS=1 RUNBOOKBOT_REQUIRE_ALERTMANAGER=1 RUNBOOKBOT_REQUIRE_K8S=1

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 40m ./...
# Tests that make the real discordgo client reconnect: discordgo v0.29.0
# races with itself on reconnect, so under -race they skip; here they run.
go test -count=1 -run 'TestResumeReplaysMissedEvents|TestReconnectOpcodeLeadsToResume|TestInvalidSessionReidentifies' ./bot/discord/emulator/
