#!/usr/bin/env bash
# benches/crash_campaign.sh [KILLS] - the full kill campaign of docs/reliability.md.
#
# Starts hfget (release build) on 512 MiB files from the project's own local
# server (16 connections × 4 MiB/s), kills it with SIGKILL at a random moment
# (50 ms – 3 s after start), resumes, and repeats KILLS times (default 1000);
# every completed file is checked by sha256, and the bytes the server sent
# twice are reported as seconds of transfer lost per kill. Loopback only.
# Set HFD_CAMPAIGN_SEED to replay a campaign.
set -euo pipefail
cd "$(dirname "$0")/.."
export HFD_CAMPAIGN_KILLS=${1:-1000}
exec cargo test --release --locked --test it -- --ignored --nocapture --exact crash::crash_campaign_full
