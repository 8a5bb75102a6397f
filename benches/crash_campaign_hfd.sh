#!/usr/bin/env bash
# benches/crash_campaign_hfd.sh [KILLS] [MAX_SECONDS] - the full hfd kill
# campaign of docs/reliability.md.
#
# Starts hfd (release build) on a 24-file repo of the project's mock Hub
# (20 LFS shards of 4-24 MiB on a CDN throttled to 2 MiB/s per connection,
# plus 4 small git files; -x 8 -j 4), kills it with SIGKILL at a random
# moment (50 ms - 3 s after start), runs it again, and repeats KILLS times
# (default 500) or until MAX_SECONDS (default 1800) have passed. Each time
# the whole repo is in place, every file is checked by sha256 and a fresh
# local dir starts the next round; the bytes the servers sent twice are
# reported as seconds of transfer lost per kill. Loopback only.
# Set HFD_CAMPAIGN_SEED to replay a campaign.
set -euo pipefail
cd "$(dirname "$0")/.."
export HFD_CAMPAIGN_KILLS=${1:-500}
export HFD_CAMPAIGN_SECS=${2:-1800}
exec cargo test --release --locked --test it -- --ignored --nocapture --exact crash_hfd::hfd_crash_campaign_full
