# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hfget_global_optspecs
    string join \n x/max-connection-per-server= s/split= k/min-split-size= o/out= d/dir= c/continue i/input-file= j/max-concurrent-downloads= header= checksum= t/timeout= file-allocation= write-mode= allow-restart allow-overwrite auto-save-interval= connect-timeout= all-proxy= http-proxy= https-proxy= no-proxy= ca-certificate= check-certificate= http2 U/user-agent= no-splice no-own-tls m/max-tries= retry-wait= max-download-limit= max-overall-download-limit= bench seconds= json q/quiet v/verbose h/help V/version
end

function __fish_hfget_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hfget_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hfget_using_subcommand
    set -l cmd (__fish_hfget_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hfget -n "__fish_hfget_needs_command" -s x -l max-connection-per-server -d 'Connections per server, 1 to 64 (aria2c caps this at 16) [default: adaptive: start with 16, add half as many again every 2 s while throughput grows accordingly, up to 64; fewer after 429/503]' -r
complete -c hfget -n "__fish_hfget_needs_command" -s s -l split -d 'Connections for the whole download, 1 to 64 [default: -x times the number of URLs]' -r
complete -c hfget -n "__fish_hfget_needs_command" -s k -l min-split-size -d 'Never split a range smaller than twice this size (K = 1024, M = 1024²)' -r
complete -c hfget -n "__fish_hfget_needs_command" -s o -l out -d 'Output file name, relative to --dir unless absolute [default: the last part of the URL]' -r -F
complete -c hfget -n "__fish_hfget_needs_command" -s d -l dir -d 'Folder to save into [default: the current folder]' -r -F
complete -c hfget -n "__fish_hfget_needs_command" -s i -l input-file -d 'Download the entries of an aria2c input file (URLs, TAB-separated mirrors, indented `dir=`/`out=`/`header=`/`checksum=` lines)' -r -F
complete -c hfget -n "__fish_hfget_needs_command" -s j -l max-concurrent-downloads -d 'Files downloaded at once with --input-file' -r
complete -c hfget -n "__fish_hfget_needs_command" -l header -d 'An extra request header, e.g. \'Authorization: Bearer ...\' (repeatable). Authorization and Cookie are sent only to the URL\'s own origin' -r
complete -c hfget -n "__fish_hfget_needs_command" -l checksum -d 'Verify the finished file, e.g. sha-256=<hex> (also sha-1, sha-512). The file gets its final name only if it matches' -r
complete -c hfget -n "__fish_hfget_needs_command" -s t -l timeout -d 'Seconds without a byte from any connection before reconnecting, and the wait for response headers' -r
complete -c hfget -n "__fish_hfget_needs_command" -l file-allocation -d 'How to size the file up front: falloc reserves the space (a full disk fails at once), trunc makes a sparse file, none grows it as it goes' -r -f -a "none\t''
trunc\t''
falloc\t''
prealloc\t''"
complete -c hfget -n "__fish_hfget_needs_command" -l write-mode -d 'How bytes are written: pwrite (positional writes, the default: faster in our measurements) or mmap (memory-mapped windows)' -r -f -a "pwrite\t''
mmap\t''"
complete -c hfget -n "__fish_hfget_needs_command" -l auto-save-interval -d 'Seconds between saves of the progress (the most a crash can lose)' -r
complete -c hfget -n "__fish_hfget_needs_command" -l connect-timeout -d 'Seconds to wait for a connection (and its TLS or proxy handshake)' -r
complete -c hfget -n "__fish_hfget_needs_command" -l all-proxy -d 'Proxy for all requests: http://, https://, socks5:// or socks5h:// (with user:password@ if needed); an empty value turns proxies off' -r
complete -c hfget -n "__fish_hfget_needs_command" -l http-proxy -d 'Proxy for http:// URLs' -r
complete -c hfget -n "__fish_hfget_needs_command" -l https-proxy -d 'Proxy for https:// URLs' -r
complete -c hfget -n "__fish_hfget_needs_command" -l no-proxy -d 'Hosts that bypass the proxy: comma-separated names (with their subdomains), IPs, CIDR ranges, optional :port, or *' -r
complete -c hfget -n "__fish_hfget_needs_command" -l ca-certificate -d 'Trust the CA certificates in this PEM file too' -r -F
complete -c hfget -n "__fish_hfget_needs_command" -l check-certificate -d 'Check TLS certificates; --check-certificate=false turns checks off (unsafe)' -r -f -a "true\t''
false\t''"
complete -c hfget -n "__fish_hfget_needs_command" -s U -l user-agent -d 'The User-Agent header' -r
complete -c hfget -n "__fish_hfget_needs_command" -s m -l max-tries -d 'Failed attempts in a row, with no byte received, before a connection gives up; 0 = never' -r
complete -c hfget -n "__fish_hfget_needs_command" -l retry-wait -d 'Seconds before the first retry; later retries wait up to twice as long each time (with random jitter) [default: 0.5]. A server\'s Retry-After is always obeyed' -r
complete -c hfget -n "__fish_hfget_needs_command" -l max-download-limit -d 'Cap each download at RATE bytes/s, shared fairly by its connections, e.g. 2M (K = KiB/s, M = MiB/s); 0 = no cap. In hfd: per file' -r
complete -c hfget -n "__fish_hfget_needs_command" -l max-overall-download-limit -d 'Cap everything this run downloads together (every file of hfd, every entry of hfget -i) at RATE bytes/s, e.g. 5M; 0 = no cap' -r
complete -c hfget -n "__fish_hfget_needs_command" -l seconds -d 'Seconds of each --bench measurement' -r
complete -c hfget -n "__fish_hfget_needs_command" -s c -l continue -d 'Continue a file that exists without a control file (e.g. from another tool), treating its bytes as the start of the download'
complete -c hfget -n "__fish_hfget_needs_command" -l allow-restart -d 'If the file changed on the server since the partial download began, discard what was downloaded and start over (instead of stopping)'
complete -c hfget -n "__fish_hfget_needs_command" -l allow-overwrite -d 'Replace an existing output file'
complete -c hfget -n "__fish_hfget_needs_command" -l http2 -d 'Offer HTTP/2 on TLS connections (still one TCP connection per segment)'
complete -c hfget -n "__fish_hfget_needs_command" -l no-splice -d 'Plain http straight to the server: read bodies through hyper instead of splicing them from the socket into the file (for comparisons)'
complete -c hfget -n "__fish_hfget_needs_command" -l no-own-tls -d 'HTTPS without --http2: let tokio-rustls and hyper read the TLS records instead of hfd\'s own reader (more copies, slower; a fallback)'
complete -c hfget -n "__fish_hfget_needs_command" -l bench -d 'Measure instead of downloading: each URL (hfget), or the repo\'s largest selected file on each endpoint (hfd): time to first byte, then --seconds of download into nowhere over 1 connection and over -x. Nothing is written to disk'
complete -c hfget -n "__fish_hfget_needs_command" -l json -d 'With --bench: print one JSON document instead of a table'
complete -c hfget -n "__fish_hfget_needs_command" -s q -l quiet -d 'Print only errors and the verdict (no progress)'
complete -c hfget -n "__fish_hfget_needs_command" -s v -l verbose -d 'More detail: retries, redirects, each connection\'s route, TLS version and ALPN; -vv for debugging'
complete -c hfget -n "__fish_hfget_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hfget -n "__fish_hfget_needs_command" -s V -l version -d 'Print version'
complete -c hfget -n "__fish_hfget_needs_command" -a "completions" -d 'Print the completion script for SHELL on stdout, to be saved where the shell looks for completions (examples in --help)'
complete -c hfget -n "__fish_hfget_needs_command" -a "man" -d 'Print the man page (roff) on stdout; `man -l -` reads it'
complete -c hfget -n "__fish_hfget_using_subcommand completions" -s h -l help -d 'Print help'
complete -c hfget -n "__fish_hfget_using_subcommand man" -s h -l help -d 'Print help'
