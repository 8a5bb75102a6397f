#!/usr/bin/env bash
# benches/fuzz.sh [SECONDS] [TARGET...] - run each fuzz target for a bounded
# time (default 300 s each; all targets by default). Needs cargo-fuzz
# (`cargo install cargo-fuzz`); works on stable Rust with -s none.
# An input that makes a target fail is copied to tests/fuzz/regressions/<target>/,
# where the normal test suite replays it (tests/it/fuzz_regressions.rs).
# Exits non-zero when cargo-fuzz is missing, a target is unknown, a build or
# run fails, or a failing input was found.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "benches/fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi
secs=${1:-300}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(control_file http_headers input_file proxy_config hub_json http_response tls_records xet)
status=0
for t in "${targets[@]}"; do
    [[ -f tests/fuzz/fuzz_targets/$t.rs ]] || { echo "no target $t" >&2; status=1; continue; }
    corpus=target/fuzz-corpus/$t
    mkdir -p "$corpus" "tests/fuzz/regressions/$t"
    seeds=()
    [[ -d tests/fuzz/seeds/$t ]] && seeds=("tests/fuzz/seeds/$t")
    echo "== $t: $secs s"
    # Only the filter may "fail" (no line matched); cargo fuzz's own exit
    # status is the pipeline's (pipefail) and is checked below.
    rc=0
    cargo fuzz run --fuzz-dir tests/fuzz -s none "$t" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        { grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|panicked|SUMMARY|^error" || true; } ||
        rc=$?
    if ((rc != 0)); then
        echo "== $t: cargo fuzz exited with $rc" >&2
        status=1
    fi
    for crash in tests/fuzz/artifacts/"$t"/*; do
        [[ -f $crash ]] || continue
        cp "$crash" "tests/fuzz/regressions/$t/"
        echo "FAILING INPUT kept: tests/fuzz/regressions/$t/$(basename "$crash")"
        rm -f "$crash"
        status=1
    done
done
exit $status
