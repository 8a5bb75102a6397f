#!/usr/bin/env bash
# One connection stalling near the end of the file: how long after the
# others would have finished does each downloader finish?
#
#   benches/stall.sh [RUNS]
#
# The project's test server (examples/serve.rs) serves SIZE bytes with every
# connection throttled to THROTTLE B/s. Each round, each tool downloads the
# file twice: once from a clean server (the baseline: when it would have
# finished) and once from a server whose first response covering STALL_AT
# stops sending there for good (the connection stays open, silent). The
# overrun is stalled time minus baseline time. Tools alternate, the order
# flipping each round. Every download's sha256 is checked.
#
# Environment: SIZE (256M) THROTTLE (4M) N (16 connections)
# STALL_AT (262656000 = 250.5 MiB: inside the last of 16 equal regions, and
# off aria2c's 1 MiB piece grid, so the stalled connection really holds
# unfinished bytes) OUT (/dev/shm/hfd-stall) TIMEOUT (60 s per download; a
# tool hitting it is reported as taking TIMEOUT).
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

RUNS=${1:-3}
SIZE=${SIZE:-256M} THROTTLE=${THROTTLE:-4M} STALL_AT=${STALL_AT:-262656000} N=${N:-16}
OUT=${OUT:-/dev/shm/hfd-stall} TIMEOUT=${TIMEOUT:-60}

cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
cargo build --release --quiet --bin hfget --example serve
# Everything below talks to the test server on loopback only.
unset_proxies
HFGET=$PWD/target/release/hfget
SERVE=$PWD/target/release/examples/serve
tools="hfget"
command -v aria2c >/dev/null && tools="$tools aria2c" || echo "aria2c not found: hfget only" >&2

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$OUT"' EXIT
# start_server NAME [ARGS...]: sets URL_<NAME> and SHA_<NAME>.
start_server() {
    local name=$1 fifo="$OUT/$1.fifo" line
    shift
    mkfifo "$fifo"
    "$SERVE" --size "$SIZE" --throttle "$THROTTLE" --no-stdin "$@" >"$fifo" 2>/dev/null &
    pids+=($!)
    exec {fd}<"$fifo"
    rm -f "$fifo"
    read -r -t 120 line <&"$fd"
    exec {fd}<&-
    printf -v "URL_$name" '%s' "$(cut -d' ' -f1 <<<"$line")"
    printf -v "SHA_$name" '%s' "$(cut -d' ' -f3 <<<"$line")"
}
rm -rf "$OUT"; mkdir -p "$OUT"
start_server clean
results=$OUT/results
: >"$results"

# one TOOL KIND: appends "TOOL KIND SECONDS"
one() {
    local tool=$1 kind=$2 url sha t0 t1 dir="$OUT/dl"
    if [ "$kind" = stalled ]; then
        # A fresh server per stalled run: the stall fires once per server.
        start_server stalled --stall-at "$STALL_AT"
        url=$URL_stalled sha=$SHA_stalled
    else
        url=$URL_clean sha=$SHA_clean
    fi
    rm -rf "$dir"; mkdir -p "$dir"
    t0=$(date +%s.%N)
    case $tool in
    hfget) timeout "$TIMEOUT" "$HFGET" "$url" -x "$N" -d "$dir" -o f.bin -q || true ;;
    aria2c) timeout "$TIMEOUT" aria2c -q -x "$N" -s "$N" -k 1M --file-allocation=none \
        --allow-overwrite=true -d "$dir" -o f.bin "$url" || true ;;
    esac
    t1=$(date +%s.%N)
    if [ ! -f "$dir/f.bin" ] || [ "$(sha256sum "$dir/f.bin" | cut -d' ' -f1)" != "$sha" ]; then
        echo "  $tool $kind: did not finish within $TIMEOUT s (or wrong bytes)" >&2
        echo "$tool $kind $TIMEOUT" >>"$results"
    else
        echo "  $tool $kind: $(echo "$t1 - $t0" | bc) s" >&2
        echo "$tool $kind $(echo "$t1 - $t0" | bc)" >>"$results"
    fi
    if [ "$kind" = stalled ]; then kill "${pids[-1]}" 2>/dev/null || true; fi
}
for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then order=$tools; else order=$(tr ' ' '\n' <<<"$tools" | tac | tr '\n' ' '); fi
    echo "round $i/$RUNS" >&2
    for t in $order; do one "$t" clean; one "$t" stalled; done
done

echo
echo "$SIZE at $THROTTLE B/s per connection, $N connections, one connection stalls for good at $STALL_AT; $RUNS runs ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| tool | clean s (median) | stalled s (median) | overrun s (median of per-round differences) |"
echo "|---|---|---|---|"
for tool in $tools; do
    clean=$(awk -v t="$tool" '$1 == t && $2 == "clean" {print $3}' "$results")
    stalled=$(awk -v t="$tool" '$1 == t && $2 == "stalled" {print $3}' "$results")
    over=$(paste <(echo "$clean") <(echo "$stalled") | awk '{printf "%.2f\n", $2 - $1}')
    printf '| %s | %.2f | %.2f | %s |\n' "$tool" "$(median <<<"$clean")" "$(median <<<"$stalled")" "$(median <<<"$over")"
done
