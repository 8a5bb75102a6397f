#!/usr/bin/env bash
# hfd --cache-dir vs huggingface_hub's `hf download --cache-dir`, filling an
# empty Hugging Face cache from the project's mock Hub (examples/mock_hub.rs)
# on loopback, in one invocation: a many-file repo and a large repo of
# BIG_FILES files of BIG_SIZE, and with XET=1 the same two again from a mock Hub that stores the files
# in its mock Xet CAS (hfd then reads Xet natively, `hf download` through
# hf_xet, by default and with HF_XET_HIGH_PERFORMANCE=1: tool `hf-hp`; and
# hfd --no-xet, its plain path through the mock's bridge: `hfd-plain`).
#
#   benches/hfd_vs_hf_cache.sh [RUNS]
#
# The `hf` CLI comes from the test venv (`bash .ci/pyenv.sh` prints its
# python; `hf` is beside it) or $HF_CLI. Without Xet the mock Hub serves
# its files only by resolve and CDN URLs, so `hf download` takes its
# non-Xet path (HF_XET_HIGH_PERFORMANCE does not apply there and is not
# measured).
#
# TLS=1 serves every one of the mock's servers (hub API, CDN, and with Xet
# the CAS and transfer servers) over HTTPS with a certificate from a
# throwaway CA (mock_hub --tls), and the scenarios are named `-tls`. hfd
# trusts that CA by `--ca-certificate`; `hf` by SSL_CERT_FILE, which both
# of its clients honour: huggingface_hub's httpx and hf_xet (tried each
# alone). REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are honoured by neither:
# httpx fails at once, hf_xet retries the failed handshakes until the
# run's timeout. Every
# tool uses its default connections and workers. Runs alternate between the
# tools (the order rotates each round); each run starts from an empty cache
# in $OUT (tmpfs by default, so the disk is not what is measured). After
# each run the cache is checked by the other tool's rules: hfd over `hf`'s
# cache must say "Up to date", and `hf` over hfd's must download nothing
# (the mock Hub's counters say so). Wall time from `date`, CPU (user +
# system) and peak RSS from /usr/bin/time, for the client alone (the server
# runs apart). The ratio columns are hfd's over that row's tool.
#
# Environment: MANY_FILES (200) MANY_MIN (256K) MANY_MAX (2M) BIG_FILES (2)
# BIG_SIZE (512M) XET (unset) PLAIN (1; 0 skips the repos without Xet)
# TLS (unset) OUT (/dev/shm/hfd-cache-bench) TIMEOUT (900 s per run) HF_CLI.
# The mock builds its xorbs in memory: with XET=1 keep BIG_FILES × BIG_SIZE
# in RAM, besides the cache in $OUT (e.g. BIG_FILES=1 BIG_SIZE=4G: one 4 GiB
# Xet file, about 8 GiB of memory with OUT on tmpfs).
set -euo pipefail
[ -n "${TRACE:-}" ] && set -x

RUNS=${1:-3}
MANY_FILES=${MANY_FILES:-200} MANY_MIN=${MANY_MIN:-256K} MANY_MAX=${MANY_MAX:-2M}
BIG_FILES=${BIG_FILES:-2} BIG_SIZE=${BIG_SIZE:-512M} XET=${XET:-} PLAIN=${PLAIN:-1} TLS=${TLS:-}
OUT=${OUT:-/dev/shm/hfd-cache-bench} TIMEOUT=${TIMEOUT:-900}

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
# With TLS: the mock's CA, how each tool is told to trust it, the flag that
# makes the mock serve HTTPS, and the scenarios' suffix.
ca=$OUT/ca.pem hfd_tls=() hf_tls=() mock_tls=() sfx=
if [ -n "$TLS" ]; then
    hfd_tls=(--ca-certificate "$ca") hf_tls=("SSL_CERT_FILE=$ca") mock_tls=(--tls "$ca") sfx=-tls
fi
results=$(mktemp)
trap 'kill "${HUB_PID:-}" 2>/dev/null || true; rm -rf "$OUT" "$results"' EXIT

stats() { local r; echo stats >&"${HUB[1]}"; read -r -t 10 r <&"${HUB[0]}"; echo "$r"; }
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# one SCENARIO TOOL REPO: a timed run into an empty cache, then the check.
one() {
    local scen=$1 tool=$2 repo=$3 cache="$OUT/cache" t0 t1 rc=0 s check hp= noxet=
    rm -rf "$cache"
    [ "$tool" = hf-hp ] && hp=1
    [ "$tool" = hfd-plain ] && noxet=--no-xet
    t0=$(date +%s.%N)
    if [[ $tool == hfd* ]]; then
        timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S %M" -o "$OUT/time" \
            "$HFD" "$repo" --cache-dir "$cache" -q $noxet "${hfd_tls[@]}" >/dev/null || rc=$?
    else
        timeout -k 10 "$TIMEOUT" /usr/bin/time -f "%U %S %M" -o "$OUT/time" \
            env ${hp:+HF_XET_HIGH_PERFORMANCE=1} "${hf_tls[@]}" \
            "$HF_CLI" download "$repo" --cache-dir "$cache" >/dev/null 2>&1 || rc=$?
    fi
    t1=$(date +%s.%N)
    [ "$rc" = 0 ] || { echo "$tool failed on $repo (exit $rc)" >&2; exit 1; }
    s=$(stats)
    local bytes; bytes=$(du -sbL "$cache"/models--*/blobs | cut -f1)
    if [[ $tool == hfd* ]]; then
        env "${hf_tls[@]}" "$HF_CLI" download "$repo" --cache-dir "$cache" >/dev/null 2>&1
        check=$(stats)
        local cdn xorb
        cdn=$(field cdn_bytes "$check") xorb=$(field xorb_bytes "$check")
        [ "$cdn" = 0 ] && [ "${xorb:-0}" = 0 ] || { echo "hf re-downloaded hfd's cache: $check" >&2; exit 1; }
    else
        check=$("$HFD" "$repo" --cache-dir "$cache" -q "${hfd_tls[@]}")
        grep -q "Up to date" <<<"$check" || { echo "hfd does not take hf's cache: $check" >&2; exit 1; }
        stats >/dev/null
    fi
    read -r user sys rss <"$OUT/time"
    echo "$scen $tool $(echo "$t1 - $t0" | bc) $(echo "$user + $sys" | bc) $bytes $rss" >>"$results"
    echo "  $scen $tool: $(echo "$t1 - $t0" | bc) s, $s" >&2
}

# scenario NAME REPO MOCK_ARGS...: RUNS rounds on one mock Hub, the order
# of $TOOLS rotating each round.
scenario() {
    local name=$1 repo=$2 line order
    shift 2
    coproc HUB { exec "$bin/examples/mock_hub" --repo "$repo" "${mock_tls[@]}" "$@" 2>/dev/null; }
    read -r -t 600 line <&"${HUB[0]}"
    [[ $line == HF_ENDPOINT=http* ]] || { echo "mock_hub did not start: $line" >&2; exit 1; }
    export HF_ENDPOINT=${line#HF_ENDPOINT=}
    stats >/dev/null
    order=$TOOLS
    for ((i = 1; i <= RUNS; i++)); do
        for t in $order; do one "$name" "$t" "$repo"; done
        order="${order#* } ${order%% *}"
    done
    kill "${HUB_PID:-}" 2>/dev/null || true
    wait "${HUB_PID:-}" 2>/dev/null || true
}

TOOLS="hfd hf"
scenarios=""
if [ "$PLAIN" != 0 ]; then
    scenario many$sfx bench/many --files "$MANY_FILES" --min-size "$MANY_MIN" --max-size "$MANY_MAX"
    scenario big$sfx bench/big --files "$BIG_FILES" --min-size "$BIG_SIZE" --max-size "$BIG_SIZE"
    scenarios="many$sfx big$sfx"
fi
if [ -n "$XET" ]; then
    TOOLS="hfd hfd-plain hf hf-hp"
    scenario many-xet$sfx bench/many --files "$MANY_FILES" --min-size "$MANY_MIN" --max-size "$MANY_MAX" --xet
    scenario big-xet$sfx bench/big --files "$BIG_FILES" --min-size "$BIG_SIZE" --max-size "$BIG_SIZE" --xet
    scenarios="$scenarios many-xet$sfx big-xet$sfx"
fi

echo
transport="plain HTTP"
[ -n "$TLS" ] && transport="HTTPS (TLS) on every mock server, trusted by hfd --ca-certificate and by hf through SSL_CERT_FILE (-tls)"
echo "Into an empty cache on $(df --output=fstype "$OUT" | tail -1), over $transport; many: $MANY_FILES LFS files of $MANY_MIN-$MANY_MAX + 4 git files; big: $BIG_FILES LFS file(s) of $BIG_SIZE + 4 git files; -xet: the same stored in the mock's Xet CAS; $RUNS runs each; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| repo | tool | wall s median [min-max] | MB/s | CPU s (median) | CPU s per GiB | peak RSS MiB | hfd / this wall | hfd / this CPU |"
echo "|---|---|---|---|---|---|---|---|---|"
# col FILE N: column N of FILE's lines.
col() { awk -v c="$2" '{ print $c }' "$1"; }
for scen in $scenarios; do
    tools="hfd hf"
    [[ $scen == *-xet* ]] && tools="hfd hfd-plain hf hf-hp"
    for tool in $tools; do
        awk -v s="$scen" -v t="$tool" '$1 == s && $2 == t' "$results" | sort -k3,3n >"$OUT/$scen.$tool"
    done
    dw=$(col "$OUT/$scen.hfd" 3 | median) dc=$(col "$OUT/$scen.hfd" 4 | median)
    for tool in $tools; do
        f=$OUT/$scen.$tool
        w=$(col "$f" 3 | median) c=$(col "$f" 4 | median) bytes=$(col "$f" 5 | median)
        rss=$(col "$f" 6 | sort -n | tail -1)
        lo=$(col "$f" 3 | head -1) hi=$(col "$f" 3 | tail -1)
        awk -v s="$scen" -v t="$tool" -v w="$w" -v c="$c" -v b="$bytes" -v lo="$lo" -v hi="$hi" \
            -v dw="$dw" -v dc="$dc" -v rss="$rss" 'BEGIN {
                name = (t == "hfd") ? "hfd --cache-dir" : (t == "hfd-plain") ? "hfd --cache-dir --no-xet" : (t == "hf") ? "hf download" : "hf download, HF_XET_HIGH_PERFORMANCE=1"
                rw = (t == "hfd") ? "" : sprintf("%.2f", dw / w)
                rc = (t == "hfd") ? "" : sprintf("%.2f", dc / c)
                printf "| %s | %s | %.2f [%.2f-%.2f] | %.0f | %.2f | %.2f | %.0f | %s | %s |\n",
                       s, name, w, lo, hi, b / w / 1e6, c, c / (b / 2^30), rss / 1024, rw, rc
            }'
    done
done
