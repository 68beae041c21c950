#!/usr/bin/env bash
# CI's deployment proof: start a Docker daemon if this machine can have one, then run deploy/smoke.sh.
# Skipped (exit 0, with the reason) when no daemon can be had within a minute; a failing smoke test fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

skip() { echo "deploy smoke test skipped: $*"; exit 0; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
  timeout 300 apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null 2>&1 \
    || skip "could not install docker.io, debootstrap and docker-compose from Debian's packages"
fi
STARTED=""
if ! docker info >/dev/null 2>&1; then
  # No default bridge and no iptables: what this machine's kernel and sandbox allow (checked).
  dockerd --iptables=false --bridge=none >/tmp/bmc-hub-ci-dockerd.log 2>&1 &
  STARTED=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { kill "$STARTED" 2>/dev/null || true; skip "dockerd did not start within 60 s: $(tail -n 1 /tmp/bmc-hub-ci-dockerd.log)"; }
fi
stop_daemon() { [ -n "$STARTED" ] && kill "$STARTED" 2>/dev/null && wait "$STARTED" 2>/dev/null || true; }
trap stop_daemon EXIT
SMOKE_OUT="${SMOKE_OUT:-/tmp/bmc-hub-smoke-out}" deploy/smoke.sh
