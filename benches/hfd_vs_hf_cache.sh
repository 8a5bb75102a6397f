#!/usr/bin/env bash
# hfd --cache-dir vs huggingface_hub's `hf download --cache-dir`, filling an
# empty Hugging Face cache from the project's mock Hub (examples/mock_hub.rs)
# on loopback, in one invocation: a many-file repo and a 2-file large repo.
#
#   benches/hfd_vs_hf_cache.sh [RUNS]
#
# The `hf` CLI comes from the test venv (`bash .ci/pyenv.sh` prints its
# python; `hf` is beside it) or $HF_CLI. The mock Hub serves plain HTTP with
# no Xet, so `hf download` takes its plain HTTP path (HF_XET_HIGH_PERFORMANCE
# does not apply there and is not measured). Both tools use their default
# connections and workers. Runs alternate between the tools (the order flips
# each round); each run starts from an empty cache in $OUT (tmpfs by
# default, so the disk is not what is measured). After each run the cache
# is checked by the other tool's rules: hfd over `hf`'s cache must say
# "Up to date", and `hf` over hfd's must download nothing (the mock Hub's
# counters say so). Wall time from `date`, CPU (user + system) from
# /usr/bin/time, both for the client alone (the server runs apart).
#
# Environment: MANY_FILES (200) MANY_MIN (256K) MANY_MAX (2M) BIG_SIZE (512M)
# OUT (/dev/shm/hfd-cache-bench) TIMEOUT (900 s per run) HF_CLI.
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

RUNS=${1:-3}
MANY_FILES=${MANY_FILES:-200} MANY_MIN=${MANY_MIN:-256K} MANY_MAX=${MANY_MAX:-2M}
BIG_SIZE=${BIG_SIZE:-512M} OUT=${OUT:-/dev/shm/hfd-cache-bench} TIMEOUT=${TIMEOUT:-900}

cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=benches/lib.sh
. benches/lib.sh
need_gnu_time
if [ -z "${HF_CLI:-}" ]; then
    py=${HFD_TEST_PYTHON:-$(bash .ci/pyenv.sh)}
    HF_CLI=$(dirname "$py")/hf
fi
[ -x "$HF_CLI" ] || { echo "no hf CLI at $HF_CLI (set HF_CLI)" >&2; exit 2; }
cargo build --release --quiet --bin hfd --example mock_hub
unset_proxies
bin=${CARGO_TARGET_DIR:-$root/target}/release
HFD=$bin/hfd
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
mkdir -p "$OUT"
results=$(mktemp)
trap 'kill "${HUB_PID:-}" 2>/dev/null || true; rm -rf "$OUT" "$results"' EXIT

stats() { local r; echo stats >&"${HUB[1]}"; read -r -t 10 r <&"${HUB[0]}"; echo "$r"; }
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# one SCENARIO TOOL REPO: a timed run into an empty cache, then the check.
one() {
    local scen=$1 tool=$2 repo=$3 cache="$OUT/cache" t0 t1 rc=0 s check
    rm -rf "$cache"
    t0=$(date +%s.%N)
    if [ "$tool" = hfd ]; then
        timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S" -o "$OUT/time" \
            "$HFD" "$repo" --cache-dir "$cache" -q >/dev/null || rc=$?
    else
        timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S" -o "$OUT/time" \
            "$HF_CLI" download "$repo" --cache-dir "$cache" >/dev/null 2>&1 || rc=$?
    fi
    t1=$(date +%s.%N)
    [ "$rc" = 0 ] || { echo "$tool failed on $repo (exit $rc)" >&2; exit 1; }
    s=$(stats)
    local bytes; bytes=$(du -sbL "$cache"/models--*/blobs | cut -f1)
    if [ "$tool" = hfd ]; then
        "$HF_CLI" download "$repo" --cache-dir "$cache" >/dev/null 2>&1
        check=$(stats)
        [ "$(field cdn_bytes "$check")" = 0 ] || { echo "hf re-downloaded hfd's cache: $check" >&2; exit 1; }
    else
        check=$("$HFD" "$repo" --cache-dir "$cache" -q)
        grep -q "Up to date" <<<"$check" || { echo "hfd does not take hf's cache: $check" >&2; exit 1; }
        stats >/dev/null
    fi
    echo "$scen $tool $(echo "$t1 - $t0" | bc) $(awk '{print $1 + $2}' "$OUT/time") $bytes" >>"$results"
    echo "  $scen $tool: $(echo "$t1 - $t0" | bc) s, $s" >&2
}

# scenario NAME REPO MOCK_ARGS...: RUNS alternating rounds on one mock Hub.
scenario() {
    local name=$1 repo=$2 line
    shift 2
    coproc HUB { exec "$bin/examples/mock_hub" --repo "$repo" "$@" 2>/dev/null; }
    read -r -t 120 line <&"${HUB[0]}"
    export HF_ENDPOINT=${line#HF_ENDPOINT=}
    stats >/dev/null
    for ((i = 1; i <= RUNS; i++)); do
        if ((i % 2)); then order="hfd hf"; else order="hf hfd"; fi
        for t in $order; do one "$name" "$t" "$repo"; done
    done
    kill "${HUB_PID:-}" 2>/dev/null || true
    wait "${HUB_PID:-}" 2>/dev/null || true
}

scenario many bench/many --files "$MANY_FILES" --min-size "$MANY_MIN" --max-size "$MANY_MAX"
scenario big bench/big --files 2 --min-size "$BIG_SIZE" --max-size "$BIG_SIZE"

echo
echo "Into an empty cache on $(df --output=fstype "$OUT" | tail -1); many: $MANY_FILES LFS files of $MANY_MIN-$MANY_MAX + 4 git files; big: 2 LFS files of $BIG_SIZE + 4 git files; $RUNS runs each; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| repo | tool | wall s median [min-max] | MB/s | CPU s (median) | CPU s per GiB | hfd / hf wall | hfd / hf CPU |"
echo "|---|---|---|---|---|---|---|---|"
# col FILE N: column N of FILE's lines.
col() { awk -v c="$2" '{ print $c }' "$1"; }
for scen in many big; do
    for tool in hfd hf; do
        awk -v s="$scen" -v t="$tool" '$1 == s && $2 == t' "$results" | sort -k3,3n >"$OUT/$scen.$tool"
    done
    hw=$(col "$OUT/$scen.hf" 3 | median) hc=$(col "$OUT/$scen.hf" 4 | median)
    for tool in hfd hf; do
        f=$OUT/$scen.$tool
        w=$(col "$f" 3 | median) c=$(col "$f" 4 | median) bytes=$(col "$f" 5 | median)
        lo=$(col "$f" 3 | head -1) hi=$(col "$f" 3 | tail -1)
        awk -v s="$scen" -v t="$tool" -v w="$w" -v c="$c" -v b="$bytes" -v lo="$lo" -v hi="$hi" \
            -v hw="$hw" -v hc="$hc" 'BEGIN {
                rw = (t == "hfd") ? sprintf("%.2f", w / hw) : ""
                rc = (t == "hfd") ? sprintf("%.2f", c / hc) : ""
                printf "| %s | %s | %.2f [%.2f-%.2f] | %.0f | %.2f | %.2f | %s | %s |\n",
                       s, (t == "hf" ? "hf download" : "hfd --cache-dir"), w, lo, hi,
                       b / w / 1e6, c, c / (b / 2^30), rw, rc
            }'
    done
done
