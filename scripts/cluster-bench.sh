#!/usr/bin/env bash
# `rim bench` against the local cluster of scripts/cluster.sh, reporting the
# CPU time of every cluster process, the broker and Redis over the push phase
# and drain (from /proc/PID/stat), per delivered message:
#
#   scripts/cluster.sh up
#   scripts/cluster-bench.sh keyed -c 1000 --rate 1000 --duration 15s [--json FILE]
#
# Clients connect to the first comet (TCP 3101, WebSocket 3102), pushes go to
# logic's HTTP API (3111). The broker and Redis are those of
# scripts/services.sh (RIM_SERVICES_DIR, default .services).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="$PWD/.cluster"
SERVICES="${RIM_SERVICES_DIR:-$PWD/.services}"
BIN="${RIM_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/rim}"

pids=()
for pidfile in "$DIR"/*.pid; do
  [ -e "$pidfile" ] || { echo "cluster-bench: the cluster is not up (scripts/cluster.sh up)" >&2; exit 1; }
  pids+=(--cpu-pid "$(basename "$pidfile" .pid)=$(cat "$pidfile")")
done
for name in kafka redis; do
  if [ -s "$SERVICES/$name.pid" ]; then
    pids+=(--cpu-pid "$name=$(cat "$SERVICES/$name.pid")")
  else
    echo "cluster-bench: no $name pid in $SERVICES; its CPU is not reported" >&2
  fi
done
exec "$BIN" bench "$@" --tcp 127.0.0.1:3101 --ws 127.0.0.1:3102 --http 127.0.0.1:3111 "${pids[@]}"
