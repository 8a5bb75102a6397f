#!/usr/bin/env bash
# Scenario C with loss: a distant mirror (two network namespaces, RTT ms
# round trip, LOSS % of packets dropped) that throttles each request to
# 8 MB/s, served by the shared harness's nginx. The harness's own scenario C
# has no loss setting on its command line, so this script builds the link
# with the harness's netns.sh and runs the tools itself, alternating tool by
# tool each round (the order flipping every round).
#
#   benches/lossy.sh [RUNS]        (needs root: it creates namespaces)
#
# Environment: LOSS (0.5) RTT (100) N (16) FILE (big-1g.bin, from the
# harness's data) CAP (90 s per download: a run that hits it is reported
# with the bytes it had, as MB/s over CAP).
# Tools: aria2c -x N -s N -k 1M, hfget -x N, and hfget with no -x (adaptive);
# with HFGET_BASE=/path/to/another/hfget also that build at -x N, to compare
# two builds in one invocation.
# Before every run the server namespace forgets what its TCP learned from
# the runs before (`ip tcp_metrics flush`): otherwise the RTT cached from one
# tool's connections sets the next tool's first retransmission timeouts.
# Prints per-run lines and a table of median MB/s and the ratio to aria2c.
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

RUNS=${1:-3}
LOSS=${LOSS:-0.5} RTT=${RTT:-100} N=${N:-16} FILE=${FILE:-big-1g.bin} CAP=${CAP:-90}

cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
root=$PWD
[[ $(id -u) == 0 ]] || { echo "lossy.sh needs root (ip netns)" >&2; exit 2; }
command -v aria2c >/dev/null || { echo "aria2c not found" >&2; exit 2; }
use_harness netns.sh
cargo build --release --quiet --bin hfget
unset_proxies
size=$(manifest "$FILE" 2)
want=$(manifest "$FILE" 3)

ns_srv=hfb-srv ns_cli=hfb-cli addr=10.213.0.1 port=28489
out=$(ip netns exec "$ns_cli" mktemp -d /dev/shm/hfd-lossy.XXXXXX 2>/dev/null || mktemp -d /dev/shm/hfd-lossy.XXXXXX)
cleanup() {
    "$harness/serve.sh" stop lossy >/dev/null 2>&1 || true
    "$harness/netns.sh" down >/dev/null 2>&1 || true
    rm -rf "$out"
}
trap cleanup EXIT
"$harness/serve.sh" stop lossy >/dev/null 2>&1 || true
"$harness/netns.sh" down >/dev/null 2>&1 || true
"$harness/netns.sh" up --rtt-ms "$RTT" --loss-pct "$LOSS"
"$harness/serve.sh" start lossy --port "$port" --rate 8000000 --netns "$ns_srv" --addr "$addr" >/dev/null
url="http://$addr:$port/$FILE"

hfget=$root/target/release/hfget
declare -A cmd=(
    [aria2c]="aria2c -q -x $N -s $N -k 1M --file-allocation=none --allow-overwrite=true --auto-file-renaming=false -d $out -o f $url"
    [hfget]="$hfget $url -x $N -o $out/f -q --allow-overwrite"
    [hfget-auto]="$hfget $url -o $out/f -q --allow-overwrite"
)
tools=(aria2c hfget hfget-auto)
if [[ -n ${HFGET_BASE:-} ]]; then
    cmd[hfget-base]="$HFGET_BASE $url -x $N -o $out/f -q --allow-overwrite"
    tools+=(hfget-base)
fi

declare -A rates
echo "C with loss: rtt $RTT ms, loss $LOSS %, 8 MB/s per request, $FILE, N=$N, $RUNS rounds, cap $CAP s"
for ((r = 1; r <= RUNS; r++)); do
    order=("${tools[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#tools[@]} - 1; i >= 0; i--)); do order+=("${tools[i]}"); done
    fi
    for t in "${order[@]}"; do
        rm -f "$out"/f*
        ip netns exec "$ns_srv" ip tcp_metrics flush all 2>/dev/null || true
        start=$(date +%s.%N)
        # shellcheck disable=SC2086 # the command lines are word lists
        if ip netns exec "$ns_cli" timeout -k 5 "$CAP" ${cmd[$t]} >/dev/null 2>&1; then
            status=ok
        else
            status=capped
        fi
        end=$(date +%s.%N)
        got=$(stat -c %s "$out/f" 2>/dev/null || echo 0)
        if [[ $status == ok ]]; then
            sum=$(sha256sum "$out/f" | cut -d' ' -f1)
            [[ $sum == "$want" ]] || status="WRONG sha256"
            secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
            mbs=$(awk -v s="$size" -v t="$secs" 'BEGIN { printf "%.1f", s / t / 1e6 }')
        else
            # A capped run: its file may be sparse; count what the tool had
            # written at most (the file size is an upper bound).
            secs=$CAP
            mbs=$(awk -v s="$got" -v t="$CAP" 'BEGIN { printf "%.1f", s / t / 1e6 }')
        fi
        printf '  round %d: %-10s %7s s %7s MB/s  %s\n' "$r" "$t" "$secs" "$mbs" "$status"
        rates[$t]+="$mbs "
    done
done

base=$(tr ' ' '\n' <<<"${rates[aria2c]}" | median)
echo
echo "| tool | N | MB/s median [runs] | vs aria2c |"
echo "|---|---|---|---|"
for t in "${tools[@]}"; do
    m=$(tr ' ' '\n' <<<"${rates[$t]}" | median)
    ratio=$(awk -v a="$m" -v b="$base" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    n=$N; [[ $t == hfget-auto ]] && n=auto
    echo "| $t | $n | $m [${rates[$t]% }] | $ratio |"
done
