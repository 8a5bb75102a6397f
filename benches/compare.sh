#!/usr/bin/env bash
# benches/compare.sh - hfget side by side with aria2c, curl, axel, hf_transfer
# on the shared benchmark harness (../shared/bench), in one invocation, runs
# alternating tool by tool so a noisy moment hits every tool alike.
#
#   benches/compare.sh A                    scenario A (4 GiB, loopback), default tools
#   benches/compare.sh B -n 16,32 -t aria2c,hfget
#   benches/compare.sh A -r 5 -o disk
#   HFGET_BASE=/path/to/old/hfget benches/compare.sh A -t hfget,hfget-base
#                                           two builds side by side
#
# Everything after the scenario names goes to the harness (./run.sh --help in
# the harness folder lists the options). The harness's data, server state,
# downloads and result tables go under target/bench (HFD_BENCH_WORK), never
# into the shared folder. Traffic stays on loopback or in the harness's own
# network namespaces.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$root/benches/lib.sh"
use_harness harness.py
mkdir -p "$work/out" "$work/results"
(cd "$root" && cargo build --release --quiet --bins)

hfget="$root/target/release/hfget"
opts="{url} -x {n} -o {out} -q --allow-overwrite"
tools=(--tool "hfget=$hfget $opts")
[[ -n ${HFGET_BASE:-} ]] && tools+=(--tool "hfget-base=$HFGET_BASE $opts")
exec python3 "$harness/harness.py" \
    --disk-dir "$work/out" --results-dir "$work/results" \
    "${tools[@]}" "$@"
