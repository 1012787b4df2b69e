#!/usr/bin/env bash
# Fuzzes rim's hostile-input parsers with cargo-fuzz (libFuzzer, nightly). Each
# target lives in a cargo-fuzz workspace next to the crate it fuzzes:
#   frame_decode  proto/fuzz  the TCP frame codec, on arbitrarily split streams
#   ws_message    proto/fuzz  one WebSocket message = one frame, and op 9 batches
#   token         logic/fuzz  the client auth token, trust and jwt (HS256) modes
#
# Each target runs FUZZ_SECONDS (default 20) from the seed corpus in
# <crate>/fuzz/corpus/<target>/ plus what earlier runs found
# (target/fuzz-corpus/<target>, never committed). Any crash, panic, failed
# assertion, timeout or OOM fails the script; the input is saved in
# <crate>/fuzz/artifacts/<target>/ and replayed with
# `cargo +nightly fuzz run <target> <file>` in <crate>/fuzz.
#
# Short run (part of scripts/test.sh):  scripts/fuzz.sh
# Long run (see docs/fuzzing.md):       FUZZ_SECONDS=3600 scripts/fuzz.sh
# One target:                           scripts/fuzz.sh token
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-20}
all=(frame_decode ws_message token)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all[@]}")
fi

# The cargo-fuzz workspace of a target.
fuzz_dir() {
    case $1 in
        frame_decode | ws_message) echo proto/fuzz ;;
        token) echo logic/fuzz ;;
        *)
            echo "fuzz: unknown target $1 (targets: ${all[*]})" >&2
            return 1
            ;;
    esac
}
for target in "${targets[@]}"; do
    fuzz_dir "$target" >/dev/null
done

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain (libFuzzer needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "fuzz: building ${targets[*]}"
for target in "${targets[@]}"; do
    (cd "$(fuzz_dir "$target")" && cargo +nightly fuzz build "$target")
done
for target in "${targets[@]}"; do
    work="$root/target/fuzz-corpus/$target"
    mkdir -p "$work"
    echo "fuzz: $target for ${seconds}s ($(fuzz_dir "$target"))"
    # New inputs go to the first directory; the seeds are only read.
    (
        cd "$(fuzz_dir "$target")"
        cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    )
done
echo "fuzz: no crash in ${targets[*]} (${seconds}s each)"
