# shellcheck shell=bash
# benches/lib.sh - helpers shared by the bench scripts; sourced after they
# cd to the repository root (`. benches/lib.sh`), never run on its own.

# Unsets every exported *_proxy / *_PROXY variable (http, https, all, no,
# ftp, ... in either case), so that a user's proxy settings can neither send
# the loopback traffic a bench measures through a proxy nor, by NO_PROXY,
# exempt a route that is meant to go through one. Call it after the cargo
# builds, which may need the proxy to fetch crates.
unset_proxies() {
    local v
    for v in $(compgen -e); do
        case ${v,,} in
        *_proxy) unset "$v" ;;
        esac
    done
}

# Median of the numbers on stdin, separated by spaces or newlines (so a
# list kept in one string works: `median <<<"$list"`): the middle one, or the
# mean of the two middle ones for an even count; "n/a" when there are none.
median() {
    tr -s '[:blank:]' '\n' | sort -n | awk 'NF { v[++n] = $1 }
        END { if (n == 0) print "n/a"; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# Finds the shared benchmark harness (HFD_BENCH_HARNESS, else
# $root/../shared/bench) and points it at this repository's work folder
# (HFD_BENCH_WORK, else $root/target/bench): sets $harness and $work,
# exports BENCH_DATA and BENCH_RUN, and generates the test data once.
# $1 names the harness file the caller needs; $root must be the repository.
use_harness() {
    harness=${HFD_BENCH_HARNESS:-${root:?}/../shared/bench}
    work=${HFD_BENCH_WORK:-$root/target/bench}
    [[ -f $harness/$1 ]] || { echo "no benchmark harness at $harness (set HFD_BENCH_HARNESS)" >&2; exit 2; }
    export BENCH_DATA=${BENCH_DATA:-$work/data} BENCH_RUN=${BENCH_RUN:-$work/run}
    mkdir -p "$BENCH_RUN"
    [[ -f $BENCH_DATA/manifest.tsv ]] || "$harness/gen-data.sh"
}

# Prints column $2 (2: size, 3: sha256) of file $1's line in the harness's
# manifest; exits when the file is not there.
manifest() {
    local v
    v=$(awk -F'\t' -v f="$1" -v c="$2" '$1 == f { print $c }' "$BENCH_DATA/manifest.tsv")
    [[ -n $v ]] || { echo "$1 is not in $BENCH_DATA/manifest.tsv" >&2; exit 2; }
    echo "$v"
}

# The -x/-s to give aria2c for N connections: it refuses more than 16 to one
# server, so above that the comparison is with the most it can open.
aria2c_conns() {
    echo $(($1 < 16 ? $1 : 16))
}

# Exits unless GNU time is at /usr/bin/time: CPU seconds and peak RSS come
# from it.
need_gnu_time() {
    [[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
}

# Starts the project's own server (`examples/serve ARGS...`, built by the
# caller) with its stdin on the fifo $1.in, which this shell holds open: the
# server stops when the script closes it (stop_own_servers) or exits. Waits
# for the server's first line (URL SIZE SHA256) and leaves it in
# $server_line; $1.out keeps all the server printed.
own_servers=() own_server_fds=()
start_own_server() {
    local base=$1 fd
    shift
    mkfifo "$base.in"
    "${root:?}/target/release/examples/serve" "$@" <"$base.in" >"$base.out" 2>&1 &
    own_servers+=($!)
    exec {fd}>"$base.in"
    own_server_fds+=("$fd")
    for _ in $(seq 1 600); do
        [[ -s $base.out ]] && break
        sleep 0.1
    done
    server_line=$(head -1 "$base.out")
    [[ $server_line == http* ]] || { echo "the server did not start: $server_line" >&2; exit 1; }
}

# Closes the servers' stdin and waits for them to stop.
stop_own_servers() {
    local fd
    for fd in "${own_server_fds[@]}"; do exec {fd}>&-; done
    own_server_fds=()
    wait "${own_servers[@]}" 2>/dev/null || true
    own_servers=()
}
