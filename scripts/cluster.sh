#!/usr/bin/env bash
# A local rim cluster from the release binary, on loopback:
#   services: Kafka-protocol broker (Tansu) and Redis (scripts/services.sh)
#   1 logic   HTTP 3111, gRPC 3119
#   2 routers gRPC 3129 and 3139, on Redis
#   1 job     metrics 3148
#   2 comets  TCP 3101 / WS 3102 / gRPC 3109, and TCP 3201 / WS 3202 / gRPC 3209
#
#   scripts/cluster.sh up     build if needed, start, return once clients can connect
#   scripts/cluster.sh down   stop exactly what `up` started
#   scripts/cluster.sh status
#
# Stored messages and chat are on (mailboxes in the same Redis); CHAT_RATE and
# CHAT_BURST set logic's per-user send rate (default 10/s, burst 20).
# ROUTERS=direct: logic and job use the routers' Redis themselves (the
# routers still run, off the push path). RIM_BIN: run that binary, no build.
#
# Logs and configs are in .cluster/.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="$PWD/.cluster"
BIN="${RIM_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/rim}"
log() { printf 'cluster: %s\n' "$*" >&2; }

wait_port() { # name port
  for _ in $(seq 1 400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$1 did not open port $2; see $DIR/$1.log"; return 1
}

start() { # name kind
  nohup "$BIN" "$2" -c "$DIR/$1.toml" >"$DIR/$1.log" 2>&1 &
  echo $! >"$DIR/$1.pid"
}

up() {
  mkdir -p "$DIR"
  if ls "$DIR"/*.pid >/dev/null 2>&1; then
    log "already up (run '$0 down' first)"; exit 1
  fi
  # Always through cargo: a no-op when the binary is current, a rebuild when
  # the sources changed since (a stale binary would run old code).
  if [ -z "${RIM_BIN:-}" ]; then
    log "building the release binary (if out of date)"
    cargo build --release --locked
  fi
  # Stop the services on `down` only if this script started them.
  # The local cluster uses the broker and the single Redis, not the test
  # Redis Cluster.
  scripts/services.sh stopped | grep -xE 'kafka|redis' >"$DIR/services-started" || true
  scripts/services.sh up kafka redis
  eval "$(scripts/services.sh env)"
  local kafka="$RIM_TEST_KAFKA" redis="$RIM_TEST_REDIS"

  for i in 1 2; do
    port=$((3119 + 10 * i)); metrics=$((port - 1))
    cat >"$DIR/router$i.toml" <<TOML
grpc_bind = "127.0.0.1:$port"
metrics_bind = "127.0.0.1:$metrics"
store = "redis"
redis_url = "$redis"
TOML
    start "router$i" router
  done
  wait_port router1 3129; wait_port router2 3139

  if [ "${ROUTERS:-}" = direct ]; then
    # The routers' Redis, read and written by logic and job themselves.
    routers="[[routers]]
name = \"r1\"
redis_url = \"$redis\"
[[routers]]
name = \"r2\"
redis_url = \"$redis\""
  else
    routers='[[routers]]
name = "r1"
addr = "127.0.0.1:3129"
[[routers]]
name = "r2"
addr = "127.0.0.1:3139"'
  fi
  cat >"$DIR/logic.toml" <<TOML
grpc_bind = "127.0.0.1:3119"
$routers
[logic]
http_bind = "127.0.0.1:3111"
# A local dev cluster: goim's open behaviour, stated explicitly.
[logic.auth]
mode = "trust"
[logic.api]
open = true
# The per-user send rate of chat messages (default 10/s); benchmarks raise it.
[logic.chat]
rate = ${CHAT_RATE:-10}
burst = ${CHAT_BURST:-20}
[kafka]
brokers = ["$kafka"]
# Stored messages (store=1, IM sessions, chat) in the same Redis.
[mailbox]
redis_url = "$redis"
TOML
  start logic logic
  wait_port logic 3111; wait_port logic 3119

  for i in 1 2; do
    base=$((3001 + 100 * i))
    cat >"$DIR/comet$i.toml" <<TOML
grpc_bind = "127.0.0.1:$((base + 8))"
metrics_bind = "127.0.0.1:$((base + 7))"
logic_addrs = ["127.0.0.1:3119"]
[comet]
server_id = "comet$i"
tcp_bind = ["127.0.0.1:$base"]
ws_bind = ["127.0.0.1:$((base + 1))"]
TOML
    start "comet$i" comet
  done
  wait_port comet1 3101; wait_port comet1 3102; wait_port comet2 3201; wait_port comet2 3202

  cat >"$DIR/job.toml" <<TOML
metrics_bind = "127.0.0.1:3148"
$routers
[kafka]
brokers = ["$kafka"]
session_timeout = "6s"
[mailbox]
redis_url = "$redis"
TOML
  start job job
  wait_port job 3148
  # Ready when the job has discovered both comets.
  for _ in $(seq 1 600); do
    if curl -s http://127.0.0.1:3148/metrics | grep -qx 'rim_job_comets 2'; then
      log "up: HTTP 127.0.0.1:3111, comets TCP 3101/3201, WebSocket 3102/3202"
      return 0
    fi
    sleep 0.05
  done
  log "job did not discover both comets; see $DIR/job.log"; return 1
}

down() {
  for pidfile in "$DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -KILL "$pid" 2>/dev/null || true
      log "stopped $(basename "$pidfile" .pid)"
    fi
    rm -f "$pidfile"
  done
  if [ -s "$DIR/services-started" ]; then
    # shellcheck disable=SC2046 # one word per service
    scripts/services.sh down $(cat "$DIR/services-started")
  fi
  rm -f "$DIR/services-started"
}

status() {
  for pidfile in "$DIR"/*.pid; do
    [ -e "$pidfile" ] || { echo "down"; return; }
    name=$(basename "$pidfile" .pid)
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$name: running"; else echo "$name: dead"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
