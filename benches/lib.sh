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
