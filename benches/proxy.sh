#!/usr/bin/env bash
# Throughput of hfget through loopback proxies, as a share of direct.
#
# Starts `examples/serve` (one plain-HTTP origin and two HTTPS origins, one
# of them throttled per connection like a real mirror), microsocks and
# tinyproxy when installed, and our in-process proxies (serve --proxies);
# then downloads the same file direct and through each proxy, alternating
# the routes within every round so that a busy machine hurts all of them
# alike, and prints the median MB/s of each route and its share of direct.
#
# Everything listens on and talks to 127.0.0.1 only. Every download has a
# time limit, the number of runs is fixed, and all processes started here
# are stopped on exit.
#
#   benches/proxy.sh                 # 3 rounds
#   ROUNDS=5 CONNS=8 benches/proxy.sh
#
# Knobs: ROUNDS (3), CONNS (16, hfget -x/-s), SIZE (1G, unthrottled file),
# TSIZE (512M, throttled file), THROTTLE (8M per connection), OUT (where
# files land; tmpfs by default so the disk is not measured), LIMIT (120 s
# per download).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
SIZE=${SIZE:-1G}
TSIZE=${TSIZE:-512M}
THROTTLE=${THROTTLE:-8M}
LIMIT=${LIMIT:-120}
OUT=${OUT:-/dev/shm/hfd-proxy-bench.$$}

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work" "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"

echo "building release hfget and examples/serve ..." >&2
cargo build --release --quiet --bin hfget --example serve
# Every route names its proxy (or none) explicitly; a NO_PROXY of the user's
# covering 127.0.0.1 would otherwise send the proxied routes direct.
unset_proxies
HFGET=target/release/hfget
SERVE=target/release/examples/serve

# A loopback port that nothing listens on (bash's /dev/tcp probes it),
# below the kernel's ephemeral range so no outgoing connection holds it.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((10000 + RANDOM % 20000))
        if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# Waits until $1 has at least $2 lines (a server printed its URLs).
wait_lines() {
    for _ in $(seq 1 600); do
        [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

wait_port() {
    for _ in $(seq 1 60); do
        (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

"$SERVE" --size "$SIZE" --no-sha256 --seed 1 --no-stdin >"$work/plain.out" &
pids+=($!)
"$SERVE" --size "$SIZE" --no-sha256 --seed 2 --no-stdin --tls "$work/ca1.pem" --proxies >"$work/tls.out" &
pids+=($!)
"$SERVE" --size "$TSIZE" --no-sha256 --seed 3 --no-stdin --tls "$work/ca2.pem" --throttle "$THROTTLE" >"$work/slow.out" &
pids+=($!)
wait_lines "$work/plain.out" 1
wait_lines "$work/tls.out" 3
wait_lines "$work/slow.out" 1
cat "$work/ca1.pem" "$work/ca2.pem" >"$work/ca.pem"
url_plain=$(awk 'NR==1{print $1}' "$work/plain.out")
url_tls=$(awk 'NR==1{print $1}' "$work/tls.out")
url_slow=$(awk 'NR==1{print $1}' "$work/slow.out")
ours_socks=$(awk '$1=="proxy" && $2 ~ /^socks/ {print $2}' "$work/tls.out")
ours_http=$(awk '$1=="proxy" && $2 ~ /^http/ {print $2}' "$work/tls.out")

routes=(direct)
declare -A proxy_of=([direct]="")
# Runs `$1 PORT` in the background on a free port, a few times if the
# port turns out to be taken; sets $port. `$1` must exec the server.
start_on_free_port() {
    local try pid
    for try in 1 2 3 4 5; do
        port=$(free_port)
        "$1" "$port" >/dev/null 2>&1 &
        pid=$!
        if wait_port "$port" 2>/dev/null; then
            pids+=("$pid")
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "could not start $1" >&2
    return 1
}

run_microsocks() { exec microsocks -i 127.0.0.1 -p "$1"; }
run_tinyproxy() {
    cat >"$work/tinyproxy.conf" <<EOF
Port $1
Listen 127.0.0.1
Timeout 60
Allow 127.0.0.1
MaxClients $((CONNS * 4))
LogLevel Error
LogFile "$work/tinyproxy.log"
PidFile "$work/tinyproxy.pid"
DisableViaHeader Yes
EOF
    exec "$tinyproxy_bin" -d -c "$work/tinyproxy.conf"
}

if command -v microsocks >/dev/null; then
    start_on_free_port run_microsocks
    routes+=(microsocks)
    proxy_of[microsocks]="socks5h://127.0.0.1:$port"
else
    echo "microsocks not installed: skipped" >&2
fi
tinyproxy_bin=$(command -v tinyproxy || ls /usr/sbin/tinyproxy /usr/bin/tinyproxy 2>/dev/null | head -1 || true)
if [ -n "$tinyproxy_bin" ]; then
    start_on_free_port run_tinyproxy
    routes+=(tinyproxy)
    proxy_of[tinyproxy]="http://127.0.0.1:$port"
else
    echo "tinyproxy not installed: skipped" >&2
fi
routes+=(ours-socks ours-http)
proxy_of[ours-socks]=$ours_socks
proxy_of[ours-http]=$ours_http

# One download; prints "MB/s client-CPU-seconds-per-GB" (MB = 10^6 bytes,
# per second of wall time; CPU = user + system time of hfget).
run_one() { # url proxy expected_bytes
    local url=$1 proxy=$2 want=$3 t0 t1 got cpu TIMEFORMAT='%3U %3S'
    rm -f "$OUT"/f.bin "$OUT"/f.bin.*
    t0=$(date +%s%N)
    if ! { time timeout "$LIMIT" "$HFGET" -q -x "$CONNS" -s "$CONNS" -k 1M \
        --all-proxy="$proxy" --ca-certificate "$work/ca.pem" -d "$OUT" -o f.bin "$url" \
        2>"$work/hfget.err"; } 2>"$work/time"; then
        echo "FAILED FAILED"
        return
    fi
    t1=$(date +%s%N)
    got=$(stat -c %s "$OUT/f.bin")
    if [ "$got" != "$want" ]; then
        echo "FAILED FAILED"
        return
    fi
    cpu=$(awk 'NF == 2 { c = $1 + $2 } END { print c + 0 }' "$work/time")
    awk -v b="$got" -v ns=$((t1 - t0)) -v cpu="$cpu" \
        'BEGIN { printf "%.1f %.2f\n", b / (ns / 1e9) / 1e6, cpu / (b / 1e9) }'
}

size_plain=$(awk 'NR==1{print $2}' "$work/plain.out")
size_tls=$(awk 'NR==1{print $2}' "$work/tls.out")
size_slow=$(awk 'NR==1{print $2}' "$work/slow.out")

declare -A rate cpu
for origin in plain tls slow; do
    case $origin in
        plain) url=$url_plain size=$size_plain ;;
        tls) url=$url_tls size=$size_tls ;;
        slow) url=$url_slow size=$size_slow ;;
    esac
    for round in $(seq 1 "$ROUNDS"); do
        # Rotate the starting route each round.
        n=${#routes[@]}
        for i in $(seq 0 $((n - 1))); do
            r=${routes[$(((i + round) % n))]}
            read -r v c < <(run_one "$url" "${proxy_of[$r]}" "$size")
            rate[$origin,$r]+="$v "
            cpu[$origin,$r]+="$c "
            printf '%-6s round %d %-11s %8s MB/s  %6s CPU s/GB\n' "$origin" "$round" "$r" "$v" "$c" >&2
        done
    done
done

label_of() {
    case $1 in
        plain) echo "http, unthrottled ($SIZE)" ;;
        tls) echo "https, unthrottled ($SIZE)" ;;
        slow) echo "https, $CONNS x $THROTTLE/s ($TSIZE)" ;;
    esac
}
med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | grep -v FAILED | median; }
header() {
    printf '%-34s' "$1"
    for r in "${routes[@]}"; do printf ' %16s' "$r"; done
    echo
}

echo
echo "hfget -x $CONNS -s $CONNS, median of $ROUNDS alternating runs; cores: $(nproc); load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
header "MB/s (share of direct)"
for origin in plain tls slow; do
    printf '%-34s' "$(label_of $origin)"
    direct=$(med "${rate[$origin,direct]}")
    for r in "${routes[@]}"; do
        m=$(med "${rate[$origin,$r]}")
        if [ "$r" = direct ] || [ "$m" = n/a ] || [ "$direct" = n/a ]; then
            printf ' %16s' "$m"
        else
            printf ' %16s' "$m ($(awk -v a="$m" -v b="$direct" 'BEGIN { printf "%.0f%%", 100 * a / b }'))"
        fi
    done
    echo
done
echo
header "hfget CPU seconds per GB"
for origin in plain tls slow; do
    printf '%-34s' "$(label_of $origin)"
    for r in "${routes[@]}"; do printf ' %16s' "$(med "${cpu[$origin,$r]}")"; done
    echo
done
echo
echo "(http origin through an HTTP proxy: absolute-form GETs; https: CONNECT tunnels; SOCKS: socks5h)"
