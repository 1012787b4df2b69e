#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, service,
# end-to-end and browser tests. This is the README's test command and what CI
# runs (.ci/run).
#
# It installs and starts what the tests need (a Kafka-protocol broker, Redis
# and a Redis Cluster on loopback, see scripts/services.sh), builds
# everything once, and runs every test against those. A service test that
# finds no service fails (rim_testkit::services).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "services (Kafka-protocol broker, Redis, Redis Cluster)"
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

step "web pages: npm ci, type check, web/dist up to date (web/)"
# Node builds the pages; the built files are committed (cargo never needs
# Node), and this fails when they are not what web/src builds.
if ! command -v npm >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "npm is missing: install Node.js 20+ (or run as root)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
(cd web && npm ci --no-audit --no-fund && npm run check)

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

step "browser tests (web/test: playwright-core, Debian chromium, rim standalone)"
# Debian's chromium, driven by playwright-core: no browser download.
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "chromium is missing: apt-get install chromium (as root)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
# The tests start target/debug/rim (CARGO_TARGET_DIR respected), which cargo
# test built for the integration tests (a `cargo build` here would rebuild the
# dependency tree without the dev-dependencies' features, for minutes).
test -x "$target_dir/debug/rim" || { echo "no $target_dir/debug/rim: cargo test should have built it" >&2; exit 1; }
(cd web && npm test) 2>&1 | tee target/web-test-output.log

step "fuzz (cargo-fuzz on nightly, ${FUZZ_SECONDS:-20}s per target; docs/fuzzing.md)"
scripts/fuzz.sh

step "summary"
# cargo's "test result:" lines and node's closing "ℹ pass N" / "ℹ fail N".
cat target/test-output.log target/web-test-output.log | awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  /^ℹ pass [0-9]+$/ { p += $3 }
  /^ℹ fail [0-9]+$/ { f += $3 }
  END { printf "%d passed, %d failed\n", p, f; if (p == 0) exit 1 }'
