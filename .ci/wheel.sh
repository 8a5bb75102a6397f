#!/usr/bin/env bash
# Builds the wheel users get from `pip install hfd-rs` (manylinux, x86_64:
# the two binaries, their man pages and completions), checks its metadata
# with twine, and prints the wheel's path on stdout. tests/it/wheel.rs
# installs it into a fresh virtual environment (found through HFD_WHEEL,
# which .ci/run exports) and runs the installed binaries.
#
# Usage: bash .ci/wheel.sh [PYTHON]   (PYTHON: a venv with maturin and
# twine, default: the one .ci/pyenv.sh makes)
#
# Cost: maturin runs `cargo build --release --locked` for both binaries,
# exactly as `cargo build --release --locked` does, so a target folder that
# already holds the release build makes this take seconds; from nothing
# it is a release build of the package (minutes on 2 cores).
#
# What the wheel is: maturin tags it with the oldest manylinux its
# binaries' glibc symbols allow (manylinux_2_34 when built on a system
# with glibc >= 2.34, as here). Built in the manylinux2014 image (or with
# `maturin build --zig --compatibility manylinux2014`) the same code would
# reach older systems; we do not do that here.
#
# Other platforms, not built or claimed to work (what it would take):
# - Linux aarch64: `--target aarch64-unknown-linux-gnu` with a cross linker
#   (or --zig), or a native arm64 runner. The code is the same Linux code;
#   ring builds for aarch64. Untested: nothing here runs arm64 binaries.
# - macOS (x86_64, arm64) and Windows: a runner of that system (maturin
#   cannot link for them from Linux without their SDKs), and code work
#   first: the package has never been compiled for either. Linux-only today:
#     * splice(2) socket -> pipe -> file for plain http bodies
#       (storage::pipe, engine::receive; the batch path under
#       cfg(not(target_os = "linux")) exists but has never run);
#     * fallocate(2) for --file-allocation=falloc (storage::alloc, through
#       rustix; macOS would need F_PREALLOCATE, Windows
#       SetFileInformationByHandle);
#     * std::os::unix and rustix's openat/O_NOFOLLOW/O_DIRECTORY folders and
#       fdatasync (storage::folder, control_file, hub::state): POSIX, so
#       macOS is near; Windows needs another design for all of them;
#     * SIGTERM through tokio's unix signals (cli::cancel_on_signals);
#     * the test tools: the power-cut harness (tests/powercut, a FUSE file
#       system: Linux with /dev/fuse, root) and the kill -9 crash campaigns.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${1:-$(bash .ci/pyenv.sh)}"
bin="$(dirname "$python")"
out="${CARGO_TARGET_DIR:-target}/wheels"
mkdir -p "$out"
rm -f "$out"/hfd_rs-*.whl

# pyproject.toml sets bindings = "bin", the release profile and --locked.
"$bin/maturin" build --out "$out" >&2
shopt -s nullglob
wheels=("$out"/hfd_rs-*-py3-none-manylinux_*_x86_64.whl)
if [ "${#wheels[@]}" -ne 1 ]; then
    echo "wheel.sh: expected one manylinux x86_64 wheel in $out, found: $(ls "$out")" >&2
    exit 1
fi
wheel="$(cd "$(dirname "${wheels[0]}")" && pwd)/$(basename "${wheels[0]}")"

# The source distribution pip builds where no wheel fits: it must hold
# every tracked file cargo needs, and cargo must accept the manifest,
# workspace (maturin rewrites it) and lock file in it as they are. A full
# build of it takes as long as the release build above; it ran once for
# docs/install.md, and HFD_SDIST_BUILD=1 runs it here (with fresh file
# times: the sdist's own are fixed and old, so cargo would otherwise take
# any existing release build for fresh).
sdist_dir="$(mktemp -d)"
trap 'rm -rf "$sdist_dir"' EXIT
"$bin/maturin" sdist --out "$sdist_dir" >&2
sdist=("$sdist_dir"/hfd_rs-*.tar.gz)
tar -xzmf "${sdist[0]}" -C "$sdist_dir"
unpacked=("$sdist_dir"/hfd_rs-*/)
missing=""
while read -r f; do
    [ -e "${unpacked[0]}$f" ] || missing="$missing $f"
done < <(git ls-files src Cargo.toml Cargo.lock README.md pyproject.toml docs/wheel tests/testserver)
if [ -n "$missing" ]; then
    echo "wheel.sh: the sdist lacks:$missing" >&2
    exit 1
fi
(cd "${unpacked[0]}" && cargo metadata --locked --offline --format-version 1 >/dev/null)
if [ "${HFD_SDIST_BUILD:-0}" = 1 ]; then
    target="$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
    (cd "${unpacked[0]}" && CARGO_TARGET_DIR="$target" cargo build --release --locked --offline) >&2
fi

# The metadata PyPI renders (README as the long description) and checks.
"$bin/twine" check --strict "$wheel" "${sdist[0]}" >&2
echo "$wheel"
