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
# Environment: LOSS (0.5) RTT (100) N (16; a list such as 16,32,64 runs
# each) FILE (big-1g.bin, from the harness's data) CAP (90 s per download).
# Tools, for every N: aria2c -x min(N,16) -s N -k 1M (aria2c refuses more
# than 16 connections to one server, so at N > 16 this is the most it can
# open) and hfget -x N; once a round, hfget with no -x (adaptive); with
# HFGET_BASE=/path/to/another/hfget also that build at -x N, to compare two
# builds in one invocation.
# A run that hits CAP is marked "+" and counted as the bytes nginx's access
# log says it served, over CAP: an upper bound on what the tool had.
# The `conns` column is how many connections nginx saw for the run, and
# `steal` the share of CPU time the hypervisor took from this VM meanwhile:
# the delay line is a user-space program, and above about a third of steal
# the link itself stalls for every tool (read such rounds as the VM's).
# Before every run the server namespace forgets what its TCP learned from
# the runs before (`ip tcp_metrics flush`): otherwise the RTT cached from one
# tool's connections sets the next tool's first retransmission timeouts.
# Prints per-run lines and a table of median MB/s and the ratio to aria2c at
# the same N.
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

RUNS=${1:-3}
LOSS=${LOSS:-0.5} RTT=${RTT:-100} NS=${N:-16} FILE=${FILE:-big-1g.bin} CAP=${CAP:-90}

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
trap 'exit 130' INT TERM # so that a killed run still takes its link down
"$harness/serve.sh" stop lossy >/dev/null 2>&1 || true
"$harness/netns.sh" down >/dev/null 2>&1 || true
"$harness/netns.sh" up --rtt-ms "$RTT" --loss-pct "$LOSS"
"$harness/serve.sh" start lossy --port "$port" --rate 8000000 --netns "$ns_srv" --addr "$addr" >/dev/null
url="http://$addr:$port/$FILE"

hfget=$root/target/release/hfget
log=$("$harness/serve.sh" log lossy)
IFS=, read -r -a ns <<<"$NS"
# One row per (tool, N); the adaptive run ignores N and runs once a round.
rows=()
declare -A cmd
for n in "${ns[@]}"; do
    x=$(aria2c_conns "$n")
    cmd[aria2c@$n]="aria2c -q -x $x -s $n -k 1M --file-allocation=none --allow-overwrite=true --auto-file-renaming=false -d $out -o f $url"
    cmd[hfget@$n]="$hfget $url -x $n -o $out/f -q --allow-overwrite"
    rows+=("aria2c@$n" "hfget@$n")
    if [[ -n ${HFGET_BASE:-} ]]; then
        cmd[hfget-base@$n]="$HFGET_BASE $url -x $n -o $out/f -q --allow-overwrite"
        rows+=("hfget-base@$n")
    fi
done
cmd[hfget-auto@auto]="$hfget $url -o $out/f -q --allow-overwrite"
rows+=("hfget-auto@auto")

# Jiffies the hypervisor stole, and all jiffies, since boot.
cpu_jiffies() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }

declare -A rates conns
echo "C with loss: rtt $RTT ms, loss $LOSS %, 8 MB/s per request, $FILE, N=$NS, $RUNS rounds, cap $CAP s"
for ((r = 1; r <= RUNS; r++)); do
    order=("${rows[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#rows[@]} - 1; i >= 0; i--)); do order+=("${rows[i]}"); done
    fi
    for t in "${order[@]}"; do
        rm -f "$out"/f*
        ip netns exec "$ns_srv" ip tcp_metrics flush all 2>/dev/null || true
        mark=$(wc -l <"$log")
        read -r st0 all0 < <(cpu_jiffies)
        start=$(date +%s.%N)
        # shellcheck disable=SC2086 # the command lines are word lists
        if ip netns exec "$ns_cli" timeout -k 5 "$CAP" ${cmd[$t]} >/dev/null 2>&1; then
            status=ok
        else
            status=capped
        fi
        end=$(date +%s.%N)
        read -r st1 all1 < <(cpu_jiffies)
        steal=$(awk -v s=$((st1 - st0)) -v a=$((all1 - all0)) 'BEGIN { printf "%d%%", (a > 0 ? 100 * s / a : 0) }')
        sleep 0.5 # nginx logs a request when it ends, aborted ones too
        read -r served seen < <(tail -n +"$((mark + 1))" "$log" |
            awk -F'\t' '{ b += $5; c[$2] = 1 } END { print b + 0, length(c) }')
        if [[ $status == ok ]]; then
            sum=$(sha256sum "$out/f" | cut -d' ' -f1)
            [[ $sum == "$want" ]] || status="WRONG sha256"
            secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
            mbs=$(awk -v s="$size" -v t="$secs" 'BEGIN { printf "%.1f", s / t / 1e6 }')
        else
            secs=$CAP+
            mbs=$(awk -v s="$served" -v t="$CAP" 'BEGIN { printf "%.1f", s / t / 1e6 }')
        fi
        printf '  round %d: %-16s %7s s %7s MB/s %4s conns  steal %4s  %s\n' "$r" "$t" "$secs" "$mbs" "$seen" "$steal" "$status"
        rates[$t]+="$mbs "
        conns[$t]+="$seen "
    done
done

echo
echo "| tool | N | conns | MB/s median [runs] | vs aria2c at N |"
echo "|---|---|---|---|---|"
for t in "${rows[@]}"; do
    n=${t#*@}
    base=$(median <<<"${rates[aria2c@${n/auto/16}]:-}")
    m=$(median <<<"${rates[$t]}")
    c=$(median <<<"${conns[$t]}")
    ratio=$(awk -v a="$m" -v b="$base" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    label=$n
    [[ $n == auto ]] && label="auto (vs aria2c at 16)"
    echo "| ${t%@*} | $label | $c | $m [${rates[$t]% }] | $ratio |"
done
