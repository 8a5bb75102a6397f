#!/usr/bin/env bash
# benches/powercut.sh [CUTS] [SEED] - the power-cut simulation of
# docs/reliability.md.
#
# Builds hfget (release) and tests/powercut, a FUSE file system that keeps
# synced data apart from merely written data, then downloads 64 MiB files
# from the project's own local server (8 connections x 2 MiB/s) onto it and,
# CUTS times (default 200), kills hfget and cuts the power at a random moment
# (50 ms - 2.5 s after start): only synced data survives, plus a random part
# of the rest torn at 512-byte sectors; only a random prefix of the name
# changes since the last directory fsync survives. After each cut every byte
# the control file claims is compared with the true content, and a file
# under its final name must be whole. Needs root and /dev/fuse. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin hfget
cargo build --release --locked --manifest-path tests/powercut/Cargo.toml --target-dir target/powercut
exec target/powercut/release/hfd-powercut target/release/hfget "${1:-200}" ${2:+"$2"}
