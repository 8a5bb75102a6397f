#!/usr/bin/env bash
# Peak RSS against issue 6's bound (40 MiB whatever the file size), for the
# paths that hold data in our own memory: plain http (spliced into the file),
# TLS on our own records, TLS through tokio-rustls and hyper
# (--no-own-tls), each at 16 and 64 connections, and TLS with no -x (the
# adaptive default grows towards 64).
#
#   benches/rss.sh [ROUNDS] [SIZE]     (default 3 rounds of a 1G file)
#
# Environment: HFGET_BASE=/path/to/another/hfget runs that build too, in
# the same rounds, to compare two builds. The servers are the project's own
# (`examples/serve`, plain and --tls, on loopback, sharing the cores with the
# client); files go under target/ (OUT_DIR to change) and every sha256 is
# checked. Peak RSS is /usr/bin/time's maximum resident set size. The order
# of the runs flips every round. Prints per setting and build the largest and
# the median peak, in MiB.
set -euo pipefail
ROUNDS=${1:-3} SIZE=${2:-1G}
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
root=$PWD
cargo build --release --quiet --bin hfget --example serve
unset_proxies
need_gnu_time
out=${OUT_DIR:-$root/target/bench/rss}
mkdir -p "$out"
rm -rf "${out:?}"/*

builds=(hfget)
declare -A bin=([hfget]=$root/target/release/hfget)
if [[ -n ${HFGET_BASE:-} ]]; then
    builds+=(base)
    bin[base]=$HFGET_BASE
fi

trap 'stop_own_servers; rm -rf "$out"' EXIT
start_own_server "$out/plain" --size "$SIZE"
read -r url_plain _ want <<<"$server_line"
start_own_server "$out/tls" --size "$SIZE" --tls "$out/ca.pem"
read -r url_tls _ _ <<<"$server_line"

settings=(plain-x16 plain-x64 tls-x16 tls-x64 hyper-x16 hyper-x64 tls-auto)
declare -A rss
run() { # BUILD SETTING
    local b=$1 s=$2 f="$out/f.bin" args
    rm -f "$f" "$f".*
    case $s in
    plain-x*) args=(-x "${s#plain-x}" "$url_plain") ;;
    tls-auto) args=(--ca-certificate "$out/ca.pem" "$url_tls") ;;
    tls-x*) args=(-x "${s#tls-x}" --ca-certificate "$out/ca.pem" "$url_tls") ;;
    hyper-x*) args=(-x "${s#hyper-x}" --no-own-tls --ca-certificate "$out/ca.pem" "$url_tls") ;;
    esac
    /usr/bin/time -f '%M' -o "$out/time" "${bin[$b]}" -q -d "$out" -o f.bin "${args[@]}" >/dev/null 2>"$out/err" || {
        echo "$b $s failed:" >&2
        cat "$out/err" >&2
        exit 1
    }
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "$want" ]] || { echo "$b $s: wrong sha256" >&2; exit 1; }
    rss[$b $s]+="$(awk '{ printf "%.1f", $1 / 1024 }' "$out/time") "
}
for ((r = 0; r < ROUNDS; r++)); do
    order=()
    for s in "${settings[@]}"; do
        for b in "${builds[@]}"; do order+=("$b $s"); done
    done
    ((r % 2)) && mapfile -t order < <(printf "%s\n" "${order[@]}" | tac)
    for o in "${order[@]}"; do
        # shellcheck disable=SC2086
        run $o
    done
done
echo "peak RSS, $SIZE over loopback, $ROUNDS rounds, MiB (bound: 40)"
printf '%-10s %-6s %6s %6s  %s\n' setting build max median runs
for s in "${settings[@]}"; do
    for b in "${builds[@]}"; do
        v=${rss[$b $s]}
        printf '%-10s %-6s %6s %6s  [%s]\n' "$s" "$b" \
            "$(tr ' ' '\n' <<<"$v" | sort -n | tail -1)" "$(median <<<"$v")" "${v% }"
    done
done
