#!/usr/bin/env bash
# benches/serve.sh - `hfd serve` against nginx serving the same files as
# static files, 16 clients on loopback, in one invocation, rounds
# alternating server by server so a noisy moment hits both alike.
#
#   benches/serve.sh                    16 clients, 4 files of 256 MiB, 3 rounds
#   CLIENTS=32 ROUNDS=5 benches/serve.sh
#   FILE_MIB=64 FILES=8 benches/serve.sh
#   HFD_BIN=path/to/hfd benches/serve.sh   a build already made (no cargo build)
#
# The cache (huggingface_hub's layout: blobs/, refs/main, snapshots/ of
# relative links) is made under target/bench/serve; nginx serves its blobs/
# folder, hfd serve the cache, so both send the same page-cache pages. Each
# client is one curl that fetches every file once over one keep-alive
# connection (FETCHES times), to /dev/null. Reported per server: aggregate
# rate (bytes of all clients / wall time) and the server's CPU time per GiB
# sent (user + system, of nginx's master and workers or of hfd's process,
# from /proc). Medians over the rounds. Traffic stays on loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
cd "$root"

clients=${CLIENTS:-16}
rounds=${ROUNDS:-3}
files=${FILES:-4}
file_mib=${FILE_MIB:-256}
fetches=${FETCHES:-2}
hfd_port=${HFD_PORT:-28491}
nginx_port=${NGINX_PORT:-28492}
work=${HFD_BENCH_WORK:-$root/target/bench}/serve
command -v nginx >/dev/null || { echo "nginx is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

hfd=${HFD_BIN:-}
if [[ -z $hfd ]]; then
    cargo build --release --quiet --bin hfd
    hfd=${CARGO_TARGET_DIR:-$root/target}/release/hfd
fi
unset_proxies

# The cache, made once: FILES blobs named by their sha256, linked from a snapshot.
cache=$work/cache
repo=$cache/models--bench--serve
commit=0123456789abcdef0123456789abcdef01234567
if [[ ! -f $work/made-$files-$file_mib ]]; then
    rm -rf "$cache"
    mkdir -p "$repo/blobs" "$repo/refs" "$repo/snapshots/$commit"
    printf %s "$commit" >"$repo/refs/main"
    for i in $(seq 1 "$files"); do
        tmp=$repo/blobs/tmp
        head -c "$((file_mib << 20))" /dev/urandom >"$tmp"
        sha=$(sha256sum "$tmp" | cut -d' ' -f1)
        mv "$tmp" "$repo/blobs/$sha"
        ln -s "../../blobs/$sha" "$repo/snapshots/$commit/f$i.bin"
    done
    touch "$work/made-$files-$file_mib"
fi
# Read once so both servers start from a warm page cache.
cat "$repo"/blobs/* >/dev/null

# nginx: static files, sendfile, as a tuned static server is configured.
ngx=$work/nginx
mkdir -p "$ngx/logs"
user_line=
[[ $(id -u) == 0 ]] && user_line="user $(id -un) $(id -gn);"
cat >"$ngx/nginx.conf" <<EOF
$user_line
worker_processes $(nproc);
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    sendfile_max_chunk 2m;
    keepalive_requests 100000;
    client_body_temp_path $ngx/tmp-body;
    proxy_temp_path $ngx/tmp-proxy;
    fastcgi_temp_path $ngx/tmp-fcgi;
    uwsgi_temp_path $ngx/tmp-uwsgi;
    scgi_temp_path $ngx/tmp-scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $repo/blobs;
    }
}
EOF

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -s $ngx/nginx.pid ]]; then kill "$(cat "$ngx/nginx.pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

nginx -p "$ngx" -c "$ngx/nginx.conf"
"$hfd" serve --listen "127.0.0.1:$hfd_port" --cache-dir "$cache" --offline -q >/dev/null &
hfd_pid=$!
pids+=("$hfd_pid")
for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$hfd_port/api/models/bench/serve" && break
    sleep 0.1
done

# CPU ticks (user + system) of a process and its threads; nginx: master + workers.
ticks() {
    local t=0 p
    for p in "$@"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
nginx_pids() {
    local master; master=$(cat "$ngx/nginx.pid")
    echo "$master" $(pgrep -P "$master")
}

urls_hfd=() urls_nginx=()
for i in $(seq 1 "$files"); do
    urls_hfd+=("http://127.0.0.1:$hfd_port/bench/serve/resolve/main/f$i.bin")
    urls_nginx+=("http://127.0.0.1:$nginx_port/$(basename "$(readlink "$repo/snapshots/$commit/f$i.bin")")")
done

# One round: CLIENTS curls at once; prints "rate_MiB_s cpu_s_per_GiB".
round() {
    local name=$1 before after start end bytes cpu
    shift
    local -a urls=("$@") server_pids
    if [[ $name == hfd ]]; then server_pids=("$hfd_pid"); else read -ra server_pids <<<"$(nginx_pids)"; fi
    before=$(ticks "${server_pids[@]}")
    start=$(date +%s.%N)
    local -a cp=()
    for _ in $(seq 1 "$clients"); do
        local -a args=()
        for _ in $(seq 1 "$fetches"); do
            for u in "${urls[@]}"; do args+=(-o /dev/null "$u"); done
        done
        curl -sf "${args[@]}" &
        cp+=($!)
    done
    for p in "${cp[@]}"; do wait "$p" || { echo "a client failed against $name" >&2; exit 1; }; done
    end=$(date +%s.%N)
    after=$(ticks "${server_pids[@]}")
    bytes=$((clients * fetches * files * (file_mib << 20)))
    cpu=$(awk -v a="$after" -v b="$before" -v hz="$(getconf CLK_TCK)" 'BEGIN{print (a-b)/hz}')
    awk -v b="$bytes" -v s="$start" -v e="$end" -v c="$cpu" \
        'BEGIN{printf "%.0f %.3f\n", b/(e-s)/1048576, c/(b/1073741824)}'
}

declare -a hfd_rate hfd_cpu nginx_rate nginx_cpu
for r in $(seq 1 "$rounds"); do
    read -r a b <<<"$(round hfd "${urls_hfd[@]}")"; hfd_rate+=("$a"); hfd_cpu+=("$b")
    read -r a b <<<"$(round nginx "${urls_nginx[@]}")"; nginx_rate+=("$a"); nginx_cpu+=("$b")
    echo "round $r: hfd serve ${hfd_rate[-1]} MiB/s ${hfd_cpu[-1]} CPU-s/GiB; nginx ${nginx_rate[-1]} MiB/s ${nginx_cpu[-1]} CPU-s/GiB" >&2
done

hr=$(median <<<"${hfd_rate[*]}") hc=$(median <<<"${hfd_cpu[*]}")
nr=$(median <<<"${nginx_rate[*]}") nc=$(median <<<"${nginx_cpu[*]}")
echo
echo "$clients clients, $files files of $file_mib MiB fetched $fetches times each per client, median of $rounds rounds, $(nproc) cores"
echo
echo "| server | aggregate MiB/s | server CPU-s/GiB | rate vs nginx |"
echo "|---|---:|---:|---:|"
echo "| hfd serve | $hr | $hc | $(awk -v a="$hr" -v b="$nr" 'BEGIN{printf "%.0f%%", 100*a/b}') |"
echo "| nginx (static, sendfile) | $nr | $nc | 100% |"
