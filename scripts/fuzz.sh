#!/usr/bin/env bash
# Fuzzes rim's hostile-input parsers with cargo-fuzz (libFuzzer, nightly):
#   frame_decode  the TCP frame codec, on arbitrarily split streams
#   ws_message    one WebSocket message = one frame, and op 9 batches
#   token         the client auth token, trust and jwt (HS256) modes
#
# Each target runs FUZZ_SECONDS (default 20) from the seed corpus in
# proto/fuzz/corpus/<target>/ plus what earlier runs found (target/fuzz-corpus,
# never committed). Any crash, panic, failed assertion, timeout or OOM fails
# the script; the input is saved in proto/fuzz/artifacts/<target>/ and
# replayed with `cargo +nightly fuzz run <target> <file>` in proto/fuzz.
#
# Short run (part of scripts/test.sh):  scripts/fuzz.sh
# Long run (see docs/fuzzing.md):       FUZZ_SECONDS=3600 scripts/fuzz.sh
# One target:                           scripts/fuzz.sh token
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-20}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decode ws_message token)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain (libFuzzer needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd proto/fuzz
echo "fuzz: building ${targets[*]}"
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "$target"
done
for target in "${targets[@]}"; do
    work="$root/target/fuzz-corpus/$target"
    mkdir -p "$work"
    echo "fuzz: $target for ${seconds}s"
    # New inputs go to the first directory; the seeds are only read.
    cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
