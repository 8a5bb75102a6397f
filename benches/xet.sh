#!/usr/bin/env bash
# hfd's native Xet path next to its plain path and to pip's huggingface_hub +
# hf_xet (default and HF_XET_HIGH_PERFORMANCE=1), on the mock Hub with its
# mock Xet CAS (examples/mock_hub.rs --xet) on loopback.
#
#   HFD_TEST_PYTHON=/path/to/venv/python benches/xet.sh [RUNS]
#
# Environment: FILES (1) MIN/MAX (512M) X (16) OUT (/dev/shm/hfd-xet-bench).
# Prints, per tool and run: wall seconds, CPU seconds (user + sys), peak RSS
# (KiB), and the bytes the CAS/transfer/CDN servers served (the mock's stats).
# The mock builds its xorbs in memory: keep FILES × MAX within RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
RUNS=${1:-1}
FILES=${FILES:-1} MIN=${MIN:-512M} MAX=${MAX:-512M} X=${X:-16} OUT=${OUT:-/dev/shm/hfd-xet-bench}
PY=${HFD_TEST_PYTHON:?set HFD_TEST_PYTHON to a python with huggingface_hub and hf_xet}
cargo build --release --quiet --bin hfd --example mock_hub
unset_proxies
bin=${CARGO_TARGET_DIR:-target}/release
coproc HUB { "$bin/examples/mock_hub" --repo bench/xet --files "$FILES" --min-size "$MIN" --max-size "$MAX" --xet; }
read -r line <&"${HUB[0]}"
export HF_ENDPOINT=${line#HF_ENDPOINT=}
stats() { echo stats >&"${HUB[1]}"; read -r s <&"${HUB[0]}"; echo "$s"; }
stats >/dev/null
measure() { # name, command...
    local name=$1; shift
    rm -rf "$OUT"; mkdir -p "$OUT"
    /usr/bin/time -f "%e %U %S %M" -o "$OUT.time" "$@" >/dev/null 2>"$OUT.err" || { echo "$name failed:"; tail -5 "$OUT.err"; }
    read -r wall user sys rss <"$OUT.time"
    printf '%-22s wall %6.2f s  cpu %6.2f s  rss %8d KiB  %s\n' "$name" "$wall" "$(awk "BEGIN { print $user + $sys }")" "$rss" "$(stats)"
}
py='import sys; from huggingface_hub import snapshot_download; snapshot_download("bench/xet", local_dir=sys.argv[1])'
for _ in $(seq "$RUNS"); do
    measure "hfd (xet)" "$bin/hfd" bench/xet --local-dir "$OUT/m" -x "$X"
    measure "hfd --no-xet" "$bin/hfd" bench/xet --local-dir "$OUT/m" -x "$X" --no-xet
    measure "hf_xet" env HF_HOME="$OUT/home" HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" -c "$py" "$OUT/m"
    measure "hf_xet high-perf" env HF_HOME="$OUT/home" HF_HUB_DISABLE_PROGRESS_BARS=1 HF_XET_HIGH_PERFORMANCE=1 "$PY" -c "$py" "$OUT/m"
done
rm -rf "$OUT" "$OUT.time" "$OUT.err"
