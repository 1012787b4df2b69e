#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and end-to-end tests.
# This is the README's test command and what CI runs (.ci/run).
#
# Standalone tests need nothing installed. Everything is built once (debug
# profile) and the end-to-end tests start rim in-process on 127.0.0.1:0.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test-output.log
# cargo test exits non-zero on any failure (set -o pipefail keeps that status).

step "summary"
grep -E '^test result:' target/test-output.log | awk '
  { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  END { printf "%d passed, %d failed\n", p, f; if (p == 0) exit 1 }'
