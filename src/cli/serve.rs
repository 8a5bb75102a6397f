//! `hfd serve`'s command line: where to listen and which cache to serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args};
use tokio_util::sync::CancellationToken;

use crate::hub::{DEFAULT_ENDPOINT, Endpoint};
use crate::net::{NetOptions, ProxyFlags, ProxySettings};
use crate::serve::{Options, UpstreamOptions};

pub const EXAMPLES: &str = "\
Examples:
  hfd serve --cache --offline                the default cache alone, on 127.0.0.1:8080
  hfd serve --listen 0.0.0.0:8080 --cache-dir /data/hf-cache -v
                                             the whole LAN, missing files fetched from
                                             $HF_ENDPOINT or the Hub; a log line per request
  hfd serve --cache-dir /data/hf-cache --upstream https://hf-mirror.com
                                             missing files fetched from a mirror
  HF_ENDPOINT=http://server:8080 hfd gpt2 -x 8       a client, with hfd
  HF_ENDPOINT=http://server:8080 hf download gpt2    a client, with huggingface_hub

The cache is the folder huggingface_hub fills (models--ORG--NAME/,
datasets--ORG--NAME/ with blobs/, refs/ and snapshots/); fill it with
huggingface_hub (snapshot_download, `hf download`) on the server. Served:
repo info (/api/models/ID[/revision/REV], ?blobs=true), tree listings with
pagination, paths-info, treesize, and files at /ID/resolve/REV/PATH and
/datasets/ID/resolve/REV/PATH with Range, ETag, X-Repo-Commit,
X-Linked-Etag and X-Linked-Size. Offline, a repo, revision or file the
cache does not hold is a 404 as the Hub words it. Nothing outside the cache
folder is ever read: a snapshot's link must lead into its own repo's blobs/.

Upstream: without --offline, what the cache lacks is fetched from
--upstream (default: $HF_ENDPOINT, else https://huggingface.co) into the
cache, once however many clients ask, and served while it arrives. Repo
info and listings come from upstream too (kept --metadata-ttl seconds), so
a branch that moved is followed; if upstream cannot be reached, the cache
answers. A gated or private repo's files go only to clients whose token
upstream accepts (checked upstream, kept in memory, never written); a
client's token is sent to upstream and nowhere else. Proxy variables
(https_proxy, all_proxy, no_proxy) apply to upstream.

--offline serves the cache alone: nothing leaves this machine, and there
is no authentication: listen on a network you trust. See docs/serve.md.";

/// Serve the repos of a Hugging Face cache folder to other machines, with
/// the Hub's API (HF_ENDPOINT=http://HOST:PORT on the clients).
#[derive(Args, Debug, Clone)]
#[command(after_help = EXAMPLES, max_term_width = 100)]
#[command(group(ArgGroup::new("which_cache").required(true).args(["cache_dir", "cache"])))]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The cache folder to serve.
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Serve the default cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
    /// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
    #[arg(long = "cache")]
    pub cache: bool,

    /// Serve only what is in the cache: no upstream request at all.
    #[arg(long = "offline", conflicts_with = "upstream")]
    pub offline: bool,

    /// Fetch what the cache lacks from this Hub or mirror [default:
    /// $HF_ENDPOINT, else https://huggingface.co].
    #[arg(long = "upstream", value_name = "URL")]
    pub upstream: Option<String>,

    /// Keep upstream's repo info, listings and access verdicts this long.
    #[arg(
        long = "metadata-ttl",
        value_name = "SECS",
        default_value = "30",
        conflicts_with = "offline"
    )]
    pub metadata_ttl: u64,

    /// Connections per file fetched from upstream.
    #[arg(
        long = "upstream-connections",
        value_name = "N",
        default_value = "8",
        value_parser = clap::value_parser!(u16).range(1..=64),
        conflicts_with = "offline"
    )]
    pub connections: u16,

    /// Print only errors.
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,

    /// One log line per request (-v); -vv for debugging.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl ServeArgs {
    pub fn verbosity(&self) -> crate::ui::Verbosity {
        crate::ui::Verbosity::from_flags(self.quiet, self.verbose)
    }

    /// The server's options; `env` reads the environment (for `--cache`).
    pub fn options(&self, env: impl Fn(&str) -> Option<String>) -> Result<Options, String> {
        let dir = match &self.cache_dir {
            Some(d) => d.clone(),
            // Found as `hfd --cache` finds it: huggingface_hub's rules.
            None => crate::hub::cache::default_cache_dir(&env)?,
        };
        let mut o = Options::new(self.listen, dir);
        o.log_requests = self.verbose > 0;
        o.upstream = self.upstream_options(&env)?;
        Ok(o)
    }

    /// The upstream: `--upstream`, else `HF_ENDPOINT`, else the Hub;
    /// `None` with `--offline`. One that is this server itself is refused
    /// (every miss would ask itself).
    fn upstream_options(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<UpstreamOptions>, String> {
        if self.offline {
            return Ok(None);
        }
        let (text, from) = match (
            &self.upstream,
            env("HF_ENDPOINT").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(u), _) => (u.clone(), "--upstream"),
            (None, Some(e)) => (e, "HF_ENDPOINT"),
            (None, None) => (DEFAULT_ENDPOINT.to_string(), "the default"),
        };
        let endpoint = Endpoint::parse(&text).map_err(|e| {
            e.replacen(
                "invalid HF_ENDPOINT",
                &format!("invalid upstream ({from})"),
                1,
            )
        })?;
        if points_at(&endpoint, self.listen) {
            return Err(format!(
                "the upstream {} ({from}) is this server's own address; name another with \
                 --upstream URL, or serve the cache alone with --offline",
                endpoint.as_str()
            ));
        }
        let proxy = ProxySettings::resolve(&ProxyFlags::default(), |k| env(k))?;
        let net = NetOptions {
            proxy,
            user_agent: concat!("hfd/", env!("CARGO_PKG_VERSION")).to_string(),
            response_timeout: std::time::Duration::from_secs(60),
            ..NetOptions::default()
        };
        let mut u = UpstreamOptions::new(endpoint, net);
        u.ttl = std::time::Duration::from_secs(self.metadata_ttl);
        u.connections = usize::from(self.connections);
        Ok(Some(u))
    }
}

/// Whether `endpoint` names the address the server listens on (the same
/// port on the same address, loopback or any-address).
fn points_at(endpoint: &Endpoint, listen: SocketAddr) -> bool {
    let url = endpoint.url();
    if url.scheme() != "http" || url.port_or_known_default() != Some(listen.port()) {
        return false;
    }
    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    host.parse::<std::net::IpAddr>().ok() == Some(listen.ip())
        || (local && (listen.ip().is_loopback() || listen.ip().is_unspecified()))
}

/// Cancels `token` on the first Ctrl-C or SIGTERM (the server stops
/// accepting and finishes the answers in progress); a second one exits.
/// `quiet`: without a word. Call it before telling anyone the address.
pub fn stop_on_signals(token: CancellationToken, quiet: bool) {
    let msg = "Stopping: finishing the answers in progress...";
    super::on_signals(token, (!quiet).then_some(msg), 130);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_the_flag_else_hf_endpoint_else_the_hub() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let opts = |args: &[&str], endpoint: Option<&str>| {
            let cli =
                Cli::try_parse_from(["serve", "--cache-dir", "/c"].iter().chain(args).copied())
                    .unwrap();
            let e = endpoint.map(str::to_string);
            cli.serve
                .options(move |k| (k == "HF_ENDPOINT").then(|| e.clone()).flatten())
        };
        let up = |a: &[&str], e: Option<&str>| {
            opts(a, e)
                .unwrap()
                .upstream
                .map(|u| u.endpoint.as_str().to_string())
        };
        assert_eq!(up(&[], None).as_deref(), Some(DEFAULT_ENDPOINT));
        assert_eq!(
            up(&[], Some("http://mirror:9")).as_deref(),
            Some("http://mirror:9")
        );
        assert_eq!(
            up(&["--upstream", "http://m2:1/"], Some("http://mirror:9")).as_deref(),
            Some("http://m2:1")
        );
        assert_eq!(up(&["--offline"], Some("http://mirror:9")), None);
        let own = opts(&["--listen", "0.0.0.0:8080"], Some("http://localhost:8080"));
        assert!(own.unwrap_err().contains("this server's own address"));
        assert!(opts(&["--upstream", "ftp://x"], None).is_err());
        assert!(
            Cli::try_parse_from(["serve", "--cache", "--offline", "--upstream", "http://a"])
                .is_err()
        );
    }
}
