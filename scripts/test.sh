#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, service and
# end-to-end tests. This is the README's test command and what CI runs (.ci/run).
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

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
mkdir -p target
# cargo test exits non-zero on any failure; pipefail keeps that status.
cargo test --workspace --locked 2>&1 | tee target/test-output.log

step "fuzz (cargo-fuzz on nightly, ${FUZZ_SECONDS:-20}s per target; docs/fuzzing.md)"
scripts/fuzz.sh

step "summary"
grep -E '^test result:' target/test-output.log | awk '
  { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  END { printf "%d passed, %d failed\n", p, f; if (p == 0) exit 1 }'
