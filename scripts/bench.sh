#!/usr/bin/env bash
# Standard `rim bench` run against a local standalone rim (release build).
#
#   scripts/bench.sh            # all scenarios, a few minutes on 2 cores
#   scripts/bench.sh room api   # only these
#   scripts/bench.sh im         # the durable messaging runs (im-store ... im-idle)
#   scripts/bench.sh chat       # the chat runs (chat-peer, chat-peer-max, chat-room)
#
# Each scenario gets a fresh server (so RSS per connection is measured from a
# clean heap) with a fresh mailbox data directory; results go to
# target/bench/<name>.json and <name>.txt.
# Sizes and ports can be changed through the environment:
#   IDLE_CONNS ROOM_CONNS KEYED_CONNS API_CONNS IM_CONNS IM_STORM_CONNS DURATION
#   HTTP_ADDR TCP_ADDR WS_ADDR
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_CONNS=${IDLE_CONNS:-10000}
ROOM_CONNS=${ROOM_CONNS:-5000}
KEYED_CONNS=${KEYED_CONNS:-1000}
API_CONNS=${API_CONNS:-1000}
IM_CONNS=${IM_CONNS:-1000}
IM_STORM_CONNS=${IM_STORM_CONNS:-10000}
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

# Chat runs: the per-user send rate (10/s, burst 20) raised out of the way.
cat > "$OUT/chat.toml" <<'TOML'
[logic.chat]
rate = 100000
burst = 100000
TOML

server_pid=""
data_dir=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
    if [[ -n "$data_dir" ]]; then
        rm -rf "$data_dir"
        data_dir=""
    fi
}
trap stop_server EXIT

start_server() { # [extra standalone args...]
    stop_server
    # The server needs one descriptor per connection; raise the soft limit to the hard one.
    ulimit -n "$(ulimit -Hn)"
    # The mailbox store (durable messaging) starts empty for every run.
    data_dir=$(mktemp -d)
    "$RIM" standalone --data "$data_dir" --http "$HTTP_ADDR" --tcp "$TCP_ADDR" --ws "$WS_ADDR" "$@" \
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
    # Durable messaging (docs/benchmark.md, "Durable messaging").
    im)
        for im_run in im-store im-store-batched im-deliver im-sync im-storm im-idle im-idle-ws; do
            run "$im_run"
        done ;;
    im-store)
        start_server
        bench im-store im --mode store -c 0 --users 1000 --concurrency 256 --duration 10s ;;
    im-store-batched)
        start_server
        bench im-store-batched im --mode store -c 0 --users 1000 --mids-per-push 10 \
            --concurrency 256 --duration 10s ;;
    im-deliver)
        start_server
        bench im-deliver im --mode deliver -c "$IM_CONNS" --rate 1000 --duration "$DURATION" \
            --chart "$OUT/im-deliver.svg" ;;
    im-sync)
        start_server
        bench im-sync im --mode sync -c "$IM_CONNS" --messages 100 --chart "$OUT/im-sync.svg" ;;
    im-storm)
        start_server
        bench im-storm im --mode storm -c "$IM_STORM_CONNS" --rate 1000 --duration 30s \
            --hold 5s --storm 10s ;;
    im-idle)
        start_server
        bench im-idle im --mode idle -c "$IM_STORM_CONNS" --hold 5s ;;
    im-idle-ws)
        start_server
        bench im-idle-ws im --mode idle -c "$IM_STORM_CONNS" --ws-ratio 1 --hold 5s ;;
    # Chat (docs/benchmark.md, "Chat").
    chat)
        for chat_run in chat-peer chat-peer-max chat-room; do
            run "$chat_run"
        done ;;
    chat-peer)
        start_server --config "$OUT/chat.toml"
        bench chat-peer chat --chat-mode peer -c 400 --rate 1000 --duration "$DURATION" \
            --chart "$OUT/chat-peer.svg" ;;
    chat-peer-max)
        start_server --config "$OUT/chat.toml"
        bench chat-peer-max chat --chat-mode peer -c 2000 --rate 40000 --window 1 \
            --duration 15s --drain 5s ;;
    chat-room)
        start_server --config "$OUT/chat.toml"
        bench chat-room chat --chat-mode room -c 2000 --senders 20 --rate 100 \
            --duration "$DURATION" --chart "$OUT/chat-room.svg" ;;
    *)
        echo "unknown scenario $1 (idle room room-batched room-ws keyed broadcast api" \
            "im im-store im-store-batched im-deliver im-sync im-storm im-idle im-idle-ws" \
            "chat chat-peer chat-peer-max chat-room)" >&2
        exit 2 ;;
    esac
}

if [[ $# -eq 0 ]]; then
    set -- idle room room-batched room-ws keyed broadcast api im chat
fi
for s in "$@"; do
    run "$s"
done
echo "results in $OUT/"
