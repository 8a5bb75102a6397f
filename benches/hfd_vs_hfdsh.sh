#!/usr/bin/env bash
# hfd vs hfd.sh (+ aria2c) on the same many-file repo, served by the
# project's mock Hub (examples/mock_hub.rs) on loopback.
#
#   benches/hfd_vs_hfdsh.sh /path/to/hfd.sh [RUNS]
#
# hfd.sh is not part of this repository (fetch it yourself; it needs curl,
# aria2c and, for its fast listing path, jq). Defaults imitate scenario D of
# ../shared/bench: 200 LFS files of 1-20 MiB, every connection throttled to
# 8 MB/s, hfd.sh's defaults -x 4 -j 5; hfd gets the same -x and its own
# default for -j (adaptive from 5) unless HFD_J is set. Runs alternate between
# the tools (the order flips each round) so a noisy moment hits both alike.
# Each run starts from an empty folder; hfd.sh's result is then checked by
# `hfd --local-dir` on the same folder (it must say "Up to date": every file
# hashed and matching), outside the timing.
#
# Environment: FILES (200) MIN (1M) MAX (20M) THROTTLE (8000000) X (4) J (5)
# OUT (/dev/shm/hfd-bench) HFD_J (-j for hfd; empty = hfd's default)
# EXTRA_HFD (extra hfd arguments, e.g. "-x 16") TIMEOUT (600 s per tool run;
# a run that hits it is killed, reported as timed out and left out of the
# table).
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

HFD_SH=${1:?usage: $0 /path/to/hfd.sh [RUNS]}
RUNS=${2:-3}
FILES=${FILES:-200} MIN=${MIN:-1M} MAX=${MAX:-20M} THROTTLE=${THROTTLE:-8000000}
X=${X:-4} J=${J:-5} HFD_J=${HFD_J:-} OUT=${OUT:-/dev/shm/hfd-bench} EXTRA_HFD=${EXTRA_HFD:-}
TIMEOUT=${TIMEOUT:-600}
REPO=bench/many

for tool in curl aria2c; do
    command -v "$tool" >/dev/null || { echo "$tool is needed by hfd.sh" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
cargo build --release --quiet --bin hfd --example mock_hub
# Everything below talks to the mock Hub on loopback only.
unset_proxies
HFD=$PWD/target/release/hfd

coproc HUB { exec target/release/examples/mock_hub --repo "$REPO" --files "$FILES" \
    --min-size "$MIN" --max-size "$MAX" --throttle "$THROTTLE" 2>/dev/null; }
# bash unsets HUB_PID once the coprocess has exited: ${HUB_PID:-} keeps set -u
# from aborting the trap before it removes $OUT.
trap 'kill "${HUB_PID:-}" 2>/dev/null || true; rm -rf "$OUT"' EXIT
read -r -t 120 line <&"${HUB[0]}"
export HF_ENDPOINT=${line#HF_ENDPOINT=}
stats() { local r; echo stats >&"${HUB[1]}"; read -r -t 10 r <&"${HUB[0]}"; echo "$r"; }
stats >/dev/null

mkdir -p "$OUT"
results=$(mktemp)
# one TOOL: appends "tool seconds cpu_seconds mb resolves api cdn_requests",
# or "tool timeout" when the run hit TIMEOUT. `timeout` signals the whole
# process group, so hfd.sh's aria2c goes too.
one() {
    local tool=$1 dir="$OUT/$1" t0 t1 cpu rc=0 check
    rm -rf "$dir"; mkdir -p "$dir"
    t0=$(date +%s.%N)
    if [ "$tool" = hfd ]; then
        # shellcheck disable=SC2086 # EXTRA_HFD is split into arguments on purpose
        timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S" -o "$OUT/time" \
            "$HFD" "$REPO" -x "$X" ${HFD_J:+-j "$HFD_J"} $EXTRA_HFD \
            --local-dir "$dir/many" -q >/dev/null || rc=$?
    else
        (cd "$dir" && timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S" -o "$OUT/time" \
            bash "$HFD_SH" "$REPO" -x "$X" -j "$J" >/dev/null 2>&1) || rc=$?
    fi
    t1=$(date +%s.%N)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "  $tool: TIMED OUT after $TIMEOUT s (killed; left out of the table)" >&2
        echo "$tool timeout" >>"$results"
        stats >/dev/null
        return
    elif [ "$rc" != 0 ]; then
        echo "$tool failed (exit $rc)" >&2
        exit 1
    fi
    cpu=$(awk '{print $1 + $2}' "$OUT/time")
    local s; s=$(stats)
    local bytes; bytes=$(du -sb --exclude=.hfd "$dir/many" | cut -f1)
    if [ "$tool" != hfd ]; then
        if ! check=$(timeout -k 10 "$TIMEOUT" "$HFD" "$REPO" --local-dir "$dir/many" -q) ||
            ! grep -q "Up to date" <<<"$check"; then
            echo "hfd.sh's download does not verify (or the check failed or timed out)" >&2
            exit 1
        fi
        stats >/dev/null
    fi
    echo "$tool $(echo "$t1 - $t0" | bc) $cpu $bytes $s" >>"$results"
    echo "  $tool: $(echo "$t1 - $t0" | bc) s, $s" >&2
}
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then order="hfd hfd.sh"; else order="hfd.sh hfd"; fi
    echo "round $i/$RUNS" >&2
    for t in $order; do one "$t"; done
done

echo
if [ "$THROTTLE" = 0 ]; then rate="not throttled"; else rate="throttled to $THROTTLE B/s per connection"; fi
echo "$FILES LFS files of $MIN-$MAX + 4 git files, CDN $rate, -x $X, hfd.sh -j $J, hfd -j ${HFD_J:-adaptive} $EXTRA_HFD, $RUNS runs each ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| tool | wall s median [min-max] | MB/s (median) | client CPU s (median) | resolve requests | API requests | CDN requests |"
echo "|---|---|---|---|---|---|---|"
timed_out=""
for tool in hfd hfd.sh; do
    n_out=$(awk -v t="$tool" '$1 == t && $2 == "timeout"' "$results" | wc -l)
    [ "$n_out" = 0 ] || timed_out="$timed_out $tool: $n_out;"
    rows=$(awk -v t="$tool" '$1 == t && $2 != "timeout"' "$results" | sort -k2,2n)
    if [ -z "$rows" ]; then
        echo "| $tool | every run timed out ($TIMEOUT s) | | | | | |"
        continue
    fi
    n=$(echo "$rows" | wc -l)
    mid=$(((n + 1) / 2))
    med=$(echo "$rows" | sed -n "${mid}p")
    cpu=$(echo "$rows" | awk '{print $3}' | sort -n | sed -n "${mid}p")
    echo "$rows" | awk -v t="$tool" -v med="$med" -v cpu="$cpu" -v n="$n" '
        NR == 1 { lo = $2 } NR == n { hi = $2 }
        END { split(med, m, " "); split(m[5], r, "="); split(m[6], a, "="); split(m[7], q, "=");
              printf "| %s%s | %.2f [%.2f-%.2f] | %.1f | %.2f | %s | %s | %s |\n",
                     t, (t == "hfd.sh" ? " + aria2c" : ""), m[2], lo, hi, m[4] / m[2] / 1e6, cpu,
                     r[2], a[2], q[2] }'
done
if [ -n "$timed_out" ]; then
    echo
    echo "Runs that hit the $TIMEOUT s time limit, left out above:${timed_out%;}"
fi
rm -f "$results"
