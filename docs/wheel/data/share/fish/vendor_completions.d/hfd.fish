# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hfd_global_optspecs
    string join \n include= exclude= hf_username= hf_token= tool= x= j= dataset no-xet local-dir= cache-dir= cache revision= verify dry-run verify-origin= endpoint= connect-timeout= all-proxy= http-proxy= https-proxy= no-proxy= ca-certificate= check-certificate= http2 U/user-agent= no-splice no-own-tls m/max-tries= retry-wait= max-download-limit= max-overall-download-limit= bench seconds= json q/quiet v/verbose h/help V/version
end

function __fish_hfd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hfd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hfd_using_subcommand
    set -l cmd (__fish_hfd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hfd -n "__fish_hfd_needs_command" -l include -d 'Keep only paths matching one of these patterns (one or more, until the next option)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l exclude -d 'Leave out paths matching one of these patterns (one or more, until the next option)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l hf_username -l hf-username -d 'Hugging Face user name (accepted for compatibility; a token is enough)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l hf_token -l hf-token -d 'Hugging Face token [default: $HF_TOKEN]; sent only to the endpoint(s)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l tool -d 'Accepted for compatibility with hfd.sh; hfd downloads in-process whatever the value' -r -f -a "aria2c\t''
wget\t''"
complete -c hfd -n "__fish_hfd_needs_command" -s x -d 'Connections per file (per endpoint), 1 to 64 [default: 4; 16 with --bench]' -r
complete -c hfd -n "__fish_hfd_needs_command" -s j -d 'Files downloaded at once, 1 to 64 [default: adaptive: start with 5 (as hfd.sh), add more every 2 s while the total rate grows accordingly, up to 64 connections in all]' -r
complete -c hfd -n "__fish_hfd_needs_command" -l local-dir -l local_dir -d 'Where to put the files [default: the part of REPO_ID after the first \'/\']' -r -F
complete -c hfd -n "__fish_hfd_needs_command" -l cache-dir -l cache_dir -d 'Download into the Hugging Face cache in DIR (models--ORG--NAME/ with blobs, snapshots and refs, as huggingface_hub lays it out), where transformers, diffusers and `hf` find the files' -r -F
complete -c hfd -n "__fish_hfd_needs_command" -l revision -d 'Branch, tag, commit or PR ref (e.g. refs/pr/1)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l verify-origin -d 'Take the commit and every file\'s hash (sha256 of LFS files, git sha1 of the others) from ORIGIN\'s API, and only the bytes from the endpoint(s): a file that does not match the origin\'s hash is refused, and an endpoint serving another commit for the revision is named. ORIGIN is asked for the listing only, never for file bytes; it gets the token, as an endpoint you named. Give the value as --verify-origin=URL when REPO_ID follows' -r
complete -c hfd -n "__fish_hfd_needs_command" -l endpoint -d 'A Hub endpoint; repeat for several [default: $HF_ENDPOINT, else https://huggingface.co]. With several, each file is downloaded from all at once and the first lists the repo. With --bench: the endpoints to measure [default: $HF_ENDPOINT, https://huggingface.co, https://hf-mirror.com]' -r
complete -c hfd -n "__fish_hfd_needs_command" -l connect-timeout -d 'Seconds to wait for a connection (and its TLS or proxy handshake)' -r
complete -c hfd -n "__fish_hfd_needs_command" -l all-proxy -d 'Proxy for all requests: http://, https://, socks5:// or socks5h:// (with user:password@ if needed); an empty value turns proxies off' -r
complete -c hfd -n "__fish_hfd_needs_command" -l http-proxy -d 'Proxy for http:// URLs' -r
complete -c hfd -n "__fish_hfd_needs_command" -l https-proxy -d 'Proxy for https:// URLs' -r
complete -c hfd -n "__fish_hfd_needs_command" -l no-proxy -d 'Hosts that bypass the proxy: comma-separated names (with their subdomains), IPs, CIDR ranges, optional :port, or *' -r
complete -c hfd -n "__fish_hfd_needs_command" -l ca-certificate -d 'Trust the CA certificates in this PEM file too' -r -F
complete -c hfd -n "__fish_hfd_needs_command" -l check-certificate -d 'Check TLS certificates; --check-certificate=false turns checks off (unsafe)' -r -f -a "true\t''
false\t''"
complete -c hfd -n "__fish_hfd_needs_command" -s U -l user-agent -d 'The User-Agent header' -r
complete -c hfd -n "__fish_hfd_needs_command" -s m -l max-tries -d 'Failed attempts in a row, with no byte received, before a connection gives up; 0 = never' -r
complete -c hfd -n "__fish_hfd_needs_command" -l retry-wait -d 'Seconds before the first retry; later retries wait up to twice as long each time (with random jitter) [default: 0.5]. A server\'s Retry-After is always obeyed' -r
complete -c hfd -n "__fish_hfd_needs_command" -l max-download-limit -d 'Cap each download at RATE bytes/s, shared fairly by its connections, e.g. 2M (K = KiB/s, M = MiB/s); 0 = no cap. In hfd: per file' -r
complete -c hfd -n "__fish_hfd_needs_command" -l max-overall-download-limit -d 'Cap everything this run downloads together (every file of hfd, every entry of hfget -i) at RATE bytes/s, e.g. 5M; 0 = no cap' -r
complete -c hfd -n "__fish_hfd_needs_command" -l seconds -d 'Seconds of each --bench measurement' -r
complete -c hfd -n "__fish_hfd_needs_command" -l dataset -d 'The repo is a dataset'
complete -c hfd -n "__fish_hfd_needs_command" -l no-xet -d 'Never read Xet storage natively: take the plain path (the resolve URL\'s redirect) for every file, as HF_HUB_DISABLE_XET=1 does. Natively (the default where the endpoint grants a Xet token), a file\'s chunks come from the CAS the Hub names, over the same connections, proxy and resume as everything else'
complete -c hfd -n "__fish_hfd_needs_command" -l cache -d 'Download into the default Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub'
complete -c hfd -n "__fish_hfd_needs_command" -l verify -d 'Hash every local file again, even those unchanged since they were verified (catches silent disk corruption; slower)'
complete -c hfd -n "__fish_hfd_needs_command" -l dry-run -d 'Show what would be downloaded and stop: each selected file with its size and whether it is already here and current (the check a real run makes), and the total to download. No file is fetched and nothing is written, not even LOCAL_DIR or the cache dir (as `hf download --dry-run`)'
complete -c hfd -n "__fish_hfd_needs_command" -l http2 -d 'Offer HTTP/2 on TLS connections (still one TCP connection per segment)'
complete -c hfd -n "__fish_hfd_needs_command" -l no-splice -d 'Plain http straight to the server: read bodies through hyper instead of splicing them from the socket into the file (for comparisons)'
complete -c hfd -n "__fish_hfd_needs_command" -l no-own-tls -d 'HTTPS without --http2: let tokio-rustls and hyper read the TLS records instead of hfd\'s own reader (more copies, slower; a fallback)'
complete -c hfd -n "__fish_hfd_needs_command" -l bench -d 'Measure instead of downloading: each URL (hfget), or the repo\'s largest selected file on each endpoint (hfd): time to first byte, then --seconds of download into nowhere over 1 connection and over -x. Nothing is written to disk'
complete -c hfd -n "__fish_hfd_needs_command" -l json -d 'With --bench: print one JSON document instead of a table'
complete -c hfd -n "__fish_hfd_needs_command" -s q -l quiet -d 'Print only errors and the verdict (no progress)'
complete -c hfd -n "__fish_hfd_needs_command" -s v -l verbose -d 'More detail: retries, redirects, each connection\'s route, TLS version and ALPN; -vv for debugging'
complete -c hfd -n "__fish_hfd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hfd -n "__fish_hfd_needs_command" -s V -l version -d 'Print version'
complete -c hfd -n "__fish_hfd_needs_command" -a "serve" -d 'Serve the repos of a Hugging Face cache over the Hub\'s HTTP API (`hfd serve --help`)'
complete -c hfd -n "__fish_hfd_needs_command" -a "completions" -d 'Print the completion script for SHELL on stdout, to be saved where the shell looks for completions (examples in --help)'
complete -c hfd -n "__fish_hfd_needs_command" -a "man" -d 'Print the man page (roff) on stdout; `man -l -` reads it'
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l listen -d 'Address and port to listen on (port 0: any free port)' -r
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l cache-dir -d 'The cache folder to serve' -r -F
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l upstream -d 'Fetch what the cache lacks from this Hub or mirror [default: $HF_ENDPOINT, else https://huggingface.co]' -r
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l metadata-ttl -d 'Keep upstream\'s repo info, listings and access verdicts this long' -r
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l upstream-connections -d 'Connections per file fetched from upstream' -r
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l cache -d 'Serve the default cache: $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub'
complete -c hfd -n "__fish_hfd_using_subcommand serve" -l offline -d 'Serve only what is in the cache: no upstream request at all'
complete -c hfd -n "__fish_hfd_using_subcommand serve" -s q -l quiet -d 'Print only errors'
complete -c hfd -n "__fish_hfd_using_subcommand serve" -s v -l verbose -d 'One log line per request (-v); -vv for debugging'
complete -c hfd -n "__fish_hfd_using_subcommand serve" -s h -l help -d 'Print help'
complete -c hfd -n "__fish_hfd_using_subcommand completions" -s h -l help -d 'Print help'
complete -c hfd -n "__fish_hfd_using_subcommand man" -s h -l help -d 'Print help'
