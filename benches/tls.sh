#!/usr/bin/env bash
# TLS 1.3 on loopback: hfget's CPU per GiB next to aria2c's, alternating
# run by run (issue 6 asks ≤ 1.1 CPU-s/GiB).
#
#   benches/tls.sh [ROUNDS] [SIZE]     (default 3 rounds of a 2G file)
#   X=64 benches/tls.sh 3 1G           (64 connections; aria2c stays at 16,
#                                       the most it opens to one server)
#   HFGET_BASE=/path/to/hfget benches/tls.sh   (also that build, as "base")
#
# The shared harness serves plain http only, so the server is the project's
# own (`examples/serve --tls`, rustls on a throwaway CA, sharing the cores
# with the client). Each round runs, in an order that flips every round:
# hfget (own TLS records), hfget --no-own-tls (tokio-rustls and hyper) and,
# when installed, aria2c; 16 connections each (X), into an ext4 file under
# target/ (OUT_DIR to change), every sha256 checked. Prints per tool the
# median wall time, CPU-s/GiB (user + system, from /usr/bin/time) and peak
# RSS, and the ratios that matter.
set -euo pipefail
ROUNDS=${1:-3} SIZE=${2:-2G} X=${X:-16}
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
root=$PWD
cargo build --release --quiet --bin hfget --example serve
unset_proxies
need_gnu_time
ax=$(aria2c_conns "$X")
out=${OUT_DIR:-$root/target/bench/tls}
mkdir -p "$out"
rm -f "$out"/*
ca=$out/ca.pem
trap 'stop_own_servers; rm -rf "$out"' EXIT
start_own_server "$out/serve" --size "$SIZE" --tls "$ca"
read -r url bytes want <<<"$server_line"
gib=$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')

tools=(hfget hfget-hyper)
[[ -n ${HFGET_BASE:-} ]] && tools+=(base)
command -v aria2c >/dev/null && tools+=(aria2c)
declare -A wall cpu rss
run() { # TOOL: one download, appends its figures
    local t=$1 f="$out/f.bin"
    rm -f "$f" "$f".*
    local cmd
    case $t in
    hfget) cmd=("$root/target/release/hfget" -x "$X" --ca-certificate "$ca" -q -d "$out" -o f.bin "$url") ;;
    hfget-hyper) cmd=("$root/target/release/hfget" -x "$X" --no-own-tls --ca-certificate "$ca" -q -d "$out" -o f.bin "$url") ;;
    base) cmd=("$HFGET_BASE" -x "$X" --ca-certificate "$ca" -q -d "$out" -o f.bin "$url") ;;
    aria2c) cmd=(aria2c -x "$ax" -s "$ax" -k 1M --ca-certificate="$ca" --file-allocation=none -q -d "$out" -o f.bin "$url") ;;
    esac
    /usr/bin/time -f '%e %U %S %M' -o "$out/time" "${cmd[@]}" >/dev/null 2>"$out/err" || {
        echo "$t failed:" >&2
        cat "$out/err" >&2
        exit 1
    }
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "$want" ]] || { echo "$t: wrong sha256" >&2; exit 1; }
    read -r e u s m <"$out/time"
    wall[$t]+="$e "
    cpu[$t]+="$(awk -v u="$u" -v s="$s" -v g="$gib" 'BEGIN { printf "%.3f", (u + s) / g }') "
    rss[$t]+="$((m / 1024)) "
}
for ((r = 0; r < ROUNDS; r++)); do
    order=("${tools[@]}")
    ((r % 2)) && mapfile -t order < <(printf "%s\n" "${tools[@]}" | tac)
    for t in "${order[@]}"; do run "$t"; done
done
echo "TLS 1.3, $SIZE over loopback, hfget x$X, aria2c x$ax, $ROUNDS rounds; median [runs]"
printf '%-12s %-28s %-28s %s\n' tool "wall s" "CPU s/GiB" "RSS MiB"
for t in "${tools[@]}"; do
    printf '%-12s %-28s %-28s %s\n' "$t" "$(median <<<"${wall[$t]}") [${wall[$t]% }]" \
        "$(median <<<"${cpu[$t]}") [${cpu[$t]% }]" "${rss[$t]% }"
done
h=$(median <<<"${cpu[hfget]}") hh=$(median <<<"${cpu[hfget-hyper]}")
echo "hfget CPU vs --no-own-tls: $(awk -v a="$h" -v b="$hh" 'BEGIN { printf "%.2f", a / b }')x"
if [[ -n ${cpu[aria2c]:-} ]]; then
    a=$(median <<<"${cpu[aria2c]}")
    echo "hfget CPU vs aria2c: $(awk -v x="$h" -v y="$a" 'BEGIN { printf "%.2f", x / y }')x"
fi
