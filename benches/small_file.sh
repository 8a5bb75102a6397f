#!/usr/bin/env bash
# A small file: hfget's wall time next to curl's, alternating run by run.
#
#   benches/small_file.sh [RUNS]     (default 20)
#
# Serves FILE (many/part-011.bin, 2.04 MB, from the shared harness's data)
# with the harness's unthrottled loopback nginx and fetches it with
# `curl -o` and with `hfget` (its defaults: adaptive connection count,
# checks, control file, rename), into /dev/shm. Prints the median wall time
# of each in ms and the difference; issue 6 asks hfget ≤ curl + 20 ms.
set -euo pipefail
RUNS=${1:-20} FILE=${FILE:-many/part-011.bin}
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
root=$PWD
use_harness serve.sh
cargo build --release --quiet --bin hfget
unset_proxies
want=$(manifest "$FILE" 3)
"$harness/serve.sh" status lo | grep -q running || "$harness/serve.sh" start lo --port 28480 --rate 0 >/dev/null
base=$("$harness/serve.sh" url lo)
url="${base%/}/$FILE"
out=$(mktemp -d /dev/shm/hfd-small.XXXXXX)
trap 'rm -rf "$out"' EXIT

ms() { # COMMAND... : runs it, prints its wall time in ms
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))e-3
}
curl_t=() hfget_t=()
for ((r = 0; r < RUNS; r++)); do
    rm -f "$out"/*
    curl_t+=("$(ms curl -s -o "$out/c" "$url")")
    hfget_t+=("$(ms "$root/target/release/hfget" "$url" -o "$out/h" -q --allow-overwrite)")
    for f in c h; do
        [[ $(sha256sum "$out/$f" | cut -d' ' -f1) == "$want" ]] || { echo "wrong sha256 ($f)" >&2; exit 1; }
    done
done
c=$(printf '%s\n' "${curl_t[@]}" | awk '{ printf "%.1f\n", $1 }' | median)
h=$(printf '%s\n' "${hfget_t[@]}" | awk '{ printf "%.1f\n", $1 }' | median)
echo "$FILE, $RUNS runs each: curl $c ms, hfget $h ms (median wall time); hfget - curl = $(awk -v a="$h" -v b="$c" 'BEGIN { printf "%.1f", a - b }') ms"
