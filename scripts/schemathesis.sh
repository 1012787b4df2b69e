#!/usr/bin/env bash
# Attacks the HTTP API of a real `rim standalone` with schemathesis: every
# operation of the OpenAPI document it serves (/openapi.json), every check
# (no 5xx; status codes, content types, headers and bodies as documented;
# bad input refused with a 4xx; auth enforced). Fails on any failure.
#
# Needs the debug binary (`cargo build --bin rim`, which `cargo test` does);
# installs schemathesis (pinned) into a venv under the cargo target dir.
# Settings (examples per operation, exceptions): scripts/schemathesis.toml.
# SCHEMATHESIS_ARGS adds options to `schemathesis run`, e.g. a longer hunt:
#   SCHEMATHESIS_ARGS="-n 300" scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
target="${CARGO_TARGET_DIR:-target}"
rim="$target/debug/rim"
venv="$target/schemathesis-venv"
[ -x "$rim" ] || { echo "schemathesis.sh: $rim not built (cargo build --bin rim)" >&2; exit 1; }

if [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d)"
rim_pid=""
cleanup() {
  if [ -n "$rim_pid" ]; then
    kill "$rim_pid" 2>/dev/null || true
    wait "$rim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export RIM_API_TOKEN="schemathesis-$RANDOM$RANDOM"
cat > "$work/rim.toml" <<TOML
[logic.api]
tokens = ["$RIM_API_TOKEN"]
TOML

# READY on stdout through a fifo: read it as soon as rim prints it.
mkfifo "$work/stdout"
"$rim" standalone --config "$work/rim.toml" --data "$work/data" \
  --http 127.0.0.1:0 --tcp 127.0.0.1:0 --ws 127.0.0.1:0 --ready \
  > "$work/stdout" 2> "$work/rim.log" &
rim_pid=$!
exec 3< "$work/stdout"
http=""
while IFS= read -r -t 60 line <&3; do
  case "$line" in
    READY\ *)
      http="$(printf '%s' "${line#READY }" | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["http"])')"
      break
      ;;
  esac
done
if [ -z "$http" ]; then
  echo "schemathesis.sh: rim standalone did not get ready; its log:" >&2
  cat "$work/rim.log" >&2
  exit 1
fi

started=$SECONDS
status=0
# shellcheck disable=SC2086 # SCHEMATHESIS_ARGS: several words
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml --no-color run \
  "http://$http/openapi.json" --checks all ${SCHEMATHESIS_ARGS:-} \
  --report junit --report-dir "$target/schemathesis-report" || status=$?
echo "schemathesis: $((SECONDS - started))s, exit $status"
if ! kill -0 "$rim_pid" 2>/dev/null; then
  echo "schemathesis.sh: rim exited during the run; its log:" >&2
  tail -50 "$work/rim.log" >&2
  status=1
elif grep -q "panicked" "$work/rim.log"; then
  echo "schemathesis.sh: rim panicked during the run:" >&2
  grep -A5 "panicked" "$work/rim.log" >&2
  status=1
fi
exit "$status"
