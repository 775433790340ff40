#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another, and exits non-zero
# if any target crashed, failed an assertion or could not be built.
#
#   bash tests/fuzz/run-all.sh 30
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` if missing). The
# machine has only a stable toolchain, so RUSTC_BOOTSTRAP=1 lets it take the nightly-only
# flags cargo-fuzz passes (-Zsanitizer=address, sanitizer coverage).
#
# Each target reads its seeds from corpus/TARGET (never written to) and the saved crash
# inputs in regressions/TARGET, and writes what it discovers to corpus-work/TARGET (ignored
# by git). A crash input lands in artifacts/TARGET/; the log of each run is in logs/TARGET.log.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$fuzz_dir/../.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it from crates.io"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# FUZZ_SEED fixes libFuzzer's random seed, so a run is a replay of the same mutations (CI
# uses one: a short run there walks the start of the path a longer run here already walked,
# and a finding reproduces). Unset, each run explores somewhere new.
seed_flag=()
if [ -n "${FUZZ_SEED:-}" ]; then
    seed_flag=(-seed="$FUZZ_SEED")
fi
targets=(handshake frames protocol token deflate)
mkdir -p "$fuzz_dir/logs"
cargo fuzz build --fuzz-dir tests/fuzz

failed=()
for t in "${targets[@]}"; do
    work="tests/fuzz/corpus-work/$t"
    mkdir -p "$work"
    corpora=("$work" "tests/fuzz/corpus/$t")
    if [ -d "tests/fuzz/regressions/$t" ]; then
        corpora+=("tests/fuzz/regressions/$t")
    fi
    log="$fuzz_dir/logs/$t.log"
    echo "== $t: ${seconds}s (log: tests/fuzz/logs/$t.log)"
    # -timeout: an input that takes over 10 s is a hang, reported like a crash.
    if cargo fuzz run --fuzz-dir tests/fuzz "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 ${seed_flag[@]+"${seed_flag[@]}"} >"$log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true
        grep -E '^stat::number_of_executed_units' "$log" || true
    else
        failed+=("$t")
        echo "!! $t FAILED; last lines of its log:"
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$log" | tail -n 40
        ls -1 "tests/fuzz/artifacts/$t" 2>/dev/null | sed 's/^/   artifact: /' || true
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz targets failed: ${failed[*]}"
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds}s each without a finding"
