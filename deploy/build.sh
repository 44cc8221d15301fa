#!/bin/sh
# Builds runbookbot as releases and the container image do: a static binary
# (CGO_ENABLED=0), reproducible paths (-trimpath), stripped (-s -w), with the
# module version and VCS revision stamped from the checkout (-buildvcs=auto,
# which wins over a GOFLAGS=-buildvcs=false in the environment), so that
# `runbookbot version` names the commit it was built from.
#
#   deploy/build.sh [OUTPUT]    (default ./runbookbot)
set -eu
out=${1:-runbookbot}
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/.."
CGO_ENABLED=0 exec go build -trimpath -buildvcs=auto -ldflags "-s -w" -o "$out" ./cmd/runbookbot
