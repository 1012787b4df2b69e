#!/usr/bin/env bash
# Standard `rim bench` run against a local standalone rim (release build).
#
#   scripts/bench.sh            # all scenarios, a few minutes on 2 cores
#   scripts/bench.sh room api   # only these
#
# Each scenario gets a fresh server (so RSS per connection is measured from a
# clean heap); results go to target/bench/<name>.json and <name>.txt.
# Sizes and ports can be changed through the environment:
#   IDLE_CONNS ROOM_CONNS KEYED_CONNS API_CONNS DURATION HTTP_ADDR TCP_ADDR WS_ADDR
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_CONNS=${IDLE_CONNS:-10000}
ROOM_CONNS=${ROOM_CONNS:-5000}
KEYED_CONNS=${KEYED_CONNS:-1000}
API_CONNS=${API_CONNS:-1000}
DURATION=${DURATION:-20s}
HTTP_ADDR=${HTTP_ADDR:-127.0.0.1:3111}
TCP_ADDR=${TCP_ADDR:-127.0.0.1:3101}
WS_ADDR=${WS_ADDR:-127.0.0.1:3102}
OUT=target/bench
RIM=target/release/rim

cargo build --release -p rim
mkdir -p "$OUT"
# goim's room batching (job.room window 1s, batch 20), for the CPU-per-message target.
cat > "$OUT/job-room-goim.toml" <<'TOML'
[job.room]
window = "1s"
batch = 20
TOML

server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

start_server() { # [extra standalone args...]
    stop_server
    # The server needs one descriptor per connection; raise the soft limit to the hard one.
    ulimit -n "$(ulimit -Hn)"
    "$RIM" standalone --http "$HTTP_ADDR" --tcp "$TCP_ADDR" --ws "$WS_ADDR" "$@" \
        >"$OUT/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/${HTTP_ADDR%:*}/${HTTP_ADDR##*:}") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "rim standalone did not start; see $OUT/server.log" >&2
    exit 1
}

bench() { # NAME SCENARIO [bench args...]
    local name=$1
    shift
    echo "== $name: rim bench $*"
    "$RIM" bench "$@" --http "$HTTP_ADDR" --tcp "$TCP_ADDR" --ws "$WS_ADDR" \
        --server-pid "$server_pid" --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

run() {
    case $1 in
    idle)
        start_server
        bench idle idle -c "$IDLE_CONNS" --ramp-rate 2000 --hold 5s ;;
    room)
        start_server
        bench room room -c "$ROOM_CONNS" --rate 50 --duration "$DURATION" \
            --chart "$OUT/room.svg" ;;
    room-batched)
        start_server --config "$OUT/job-room-goim.toml"
        bench room-batched room -c "$ROOM_CONNS" --rate 50 --duration "$DURATION" ;;
    room-ws)
        start_server
        bench room-ws room -c "$ROOM_CONNS" --ws-ratio 0.5 --rate 50 --duration "$DURATION" ;;
    keyed)
        start_server
        bench keyed keyed -c "$KEYED_CONNS" --rate 1000 --duration "$DURATION" \
            --chart "$OUT/keyed.svg" ;;
    broadcast)
        start_server
        bench broadcast broadcast -c "$KEYED_CONNS" --rate 20 --duration "$DURATION" ;;
    api)
        start_server
        bench api api -c "$API_CONNS" --concurrency 64 --duration 10s ;;
    *)
        echo "unknown scenario $1 (idle room room-batched room-ws keyed broadcast api)" >&2
        exit 2 ;;
    esac
}

if [[ $# -eq 0 ]]; then
    set -- idle room room-batched room-ws keyed broadcast api
fi
for s in "$@"; do
    run "$s"
done
echo "results in $OUT/"
