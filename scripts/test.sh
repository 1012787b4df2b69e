#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, service and
# end-to-end tests. This is the README's test command and what CI runs (.ci/run).
#
# It installs and starts what the tests need (a Kafka-protocol broker and
# Redis on loopback, see scripts/services.sh), builds everything once, and
# runs every test against those one broker and one Redis. A service test
# that finds no service fails (rim_testkit::services).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "services (Kafka-protocol broker, Redis)"
# Stop on exit what this run started; services already up are left running.
started="$(scripts/services.sh stopped | tr '\n' ' ')"
if [ -n "$started" ]; then
  # shellcheck disable=SC2086 # one word per service
  trap "scripts/services.sh down $started" EXIT
fi
scripts/services.sh up
eval "$(scripts/services.sh env)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
mkdir -p target
# cargo test exits non-zero on any failure; pipefail keeps that status.
cargo test --workspace --locked 2>&1 | tee target/test-output.log

step "JavaScript SDK (sdk/js: npm ci, tsc, node --test, against target/debug/rim)"
# Node 20 or newer with npm; Debian's own nodejs (18) is too old for the SDK.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "the SDK tests need Node.js 20+ and npm on PATH (e.g. the NodeSource nodejs package)" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "the SDK tests need Node.js 20+, found $(node --version)" >&2
  exit 1
fi
# cargo test above built the rim binary the SDK's integration tests run.
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
(
  cd sdk/js
  npm ci --no-audit --no-fund
  npm run build
  RIM_BIN="$target_dir/debug/rim" npm test
)

step "schemathesis against rim standalone's HTTP API (scripts/schemathesis.sh)"
scripts/schemathesis.sh

step "fuzz (cargo-fuzz on nightly, ${FUZZ_SECONDS:-20}s per target; docs/fuzzing.md)"
scripts/fuzz.sh

step "summary"
grep -E '^test result:' target/test-output.log | awk '
  { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  END { printf "%d passed, %d failed\n", p, f; if (p == 0) exit 1 }'
