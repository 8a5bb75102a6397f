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

# Median of the numbers on stdin, one a line: the middle one, or the mean of
# the two middle ones for an even count; "n/a" when there are none.
median() {
    sort -n | awk 'NF { v[++n] = $1 }
        END { if (n == 0) print "n/a"; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
