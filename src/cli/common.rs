//! The options `hfget` and `hfd` share, defined once and flattened into
//! both: proxies (aria2c's names), TLS, HTTP/2, timeouts, retries,
//! `--bench` and how much to print.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::ui::Verbosity;

use crate::client::RetryPolicy;
use crate::engine::limit::RateLimit;
use crate::net::proxy::redact_text;
use crate::net::{NetOptions, ProxyFlags, ProxySettings, TlsOptions};

/// Everything both binaries accept.
#[derive(Args, Clone, Debug)]
pub struct Common {
    #[command(flatten)]
    pub net: NetArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub limit: LimitArgs,

    #[command(flatten)]
    pub bench: BenchArgs,

    /// Print only errors and the verdict (no progress).
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail: retries, redirects, each connection's route, TLS
    /// version and ALPN; -vv for debugging.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl Common {
    pub fn verbosity(&self) -> Verbosity {
        Verbosity::from_flags(self.quiet, self.verbose)
    }

    /// Network options from these flags and the environment's proxy
    /// variables; see [`NetArgs::options`].
    pub fn net_options(
        &self,
        response_timeout_secs: u64,
        default_agent: &str,
        connections: usize,
    ) -> Result<NetOptions, String> {
        let mut o = self
            .net
            .options(response_timeout_secs, default_agent, connections)?;
        o.recv_buffer = self.limit.recv_buffer();
        Ok(o)
    }
}

/// Bandwidth caps, with aria2c's names and meanings.
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// Cap each download at RATE bytes/s, shared fairly by its connections,
    /// e.g. 2M (K = KiB/s, M = MiB/s); 0 = no cap. In hfd: per file.
    #[arg(long = "max-download-limit", value_name = "RATE", default_value = "0",
          value_parser = rate_arg)]
    pub max_download_limit: u64,

    /// Cap everything this run downloads together (every file of hfd, every
    /// entry of hfget -i) at RATE bytes/s, e.g. 5M; 0 = no cap.
    #[arg(long = "max-overall-download-limit", value_name = "RATE", default_value = "0",
          value_parser = rate_arg)]
    pub max_overall_download_limit: u64,
}

fn rate_arg(s: &str) -> Result<u64, String> {
    crate::size::parse_size(s.trim_end_matches("/s"))
}

impl LimitArgs {
    /// The cap shared by everything the run downloads, if any.
    pub fn overall(&self) -> Option<Arc<RateLimit>> {
        (self.max_overall_download_limit > 0)
            .then(|| Arc::new(RateLimit::new(self.max_overall_download_limit)))
    }

    /// The socket receive buffer under a cap: small, so the kernel does not
    /// take in a burst the cap must then wait out (the cap holds at the
    /// sender too): 1/64 of a second of the larger cap (the kernel doubles
    /// it), within 16-256 KiB.
    pub fn recv_buffer(&self) -> Option<usize> {
        let cap = self.max_download_limit.max(self.max_overall_download_limit);
        (cap > 0).then(|| ((cap / 64) as usize).clamp(16 << 10, 256 << 10))
    }

    /// A new cap for one download, if any.
    pub fn per_download(&self) -> Option<Arc<RateLimit>> {
        (self.max_download_limit > 0).then(|| Arc::new(RateLimit::new(self.max_download_limit)))
    }
}

/// `--bench`: a measurement instead of a download.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Measure instead of downloading: each URL (hfget), or the repo's
    /// largest selected file on each endpoint (hfd): time to first byte,
    /// then --seconds of download into nowhere over 1 connection and over
    /// -x. Nothing is written to disk.
    #[arg(long = "bench")]
    pub on: bool,

    /// Seconds of each --bench measurement.
    #[arg(
        long = "seconds",
        value_name = "S",
        default_value_t = 10.0,
        requires = "on"
    )]
    pub seconds: f64,

    /// With --bench: print one JSON document instead of a table.
    #[arg(long = "json", requires = "on")]
    pub json: bool,
}

/// Connections, proxies and TLS.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Seconds to wait for a connection (and its TLS or proxy handshake).
    #[arg(long = "connect-timeout", value_name = "SEC", default_value_t = 10)]
    pub connect_timeout: u64,

    /// Proxy for all requests: http://, https://, socks5:// or socks5h://
    /// (with user:password@ if needed); an empty value turns proxies off.
    #[arg(long = "all-proxy", value_name = "URL")]
    pub all_proxy: Option<String>,

    /// Proxy for http:// URLs.
    #[arg(long = "http-proxy", value_name = "URL")]
    pub http_proxy: Option<String>,

    /// Proxy for https:// URLs.
    #[arg(long = "https-proxy", value_name = "URL")]
    pub https_proxy: Option<String>,

    /// Hosts that bypass the proxy: comma-separated names (with their
    /// subdomains), IPs, CIDR ranges, optional :port, or *.
    #[arg(long = "no-proxy", value_name = "LIST")]
    pub no_proxy: Option<String>,

    /// Trust the CA certificates in this PEM file too.
    #[arg(long = "ca-certificate", value_name = "FILE")]
    pub ca_certificate: Option<PathBuf>,

    /// Check TLS certificates; --check-certificate=false turns checks off (unsafe).
    #[arg(long = "check-certificate", value_name = "BOOL", default_value_t = true,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub check_certificate: bool,

    /// Offer HTTP/2 on TLS connections (still one TCP connection per segment).
    #[arg(long = "http2")]
    pub http2: bool,

    /// The User-Agent header.
    #[arg(short = 'U', long = "user-agent", value_name = "UA")]
    pub user_agent: Option<String>,

    /// Plain http straight to the server: read bodies through hyper instead
    /// of splicing them from the socket into the file (for comparisons).
    #[arg(long = "no-splice", hide = true)]
    pub no_splice: bool,

    /// HTTPS without --http2: let tokio-rustls and hyper read the TLS
    /// records instead of hfd's own reader (more copies, slower; a fallback).
    #[arg(long = "no-own-tls")]
    pub no_own_tls: bool,
}

/// Written by hand so that proxy credentials cannot reach a log through
/// `{:?}` of the parsed arguments.
impl fmt::Debug for NetArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |v: &Option<String>| v.as_deref().map(redact_text);
        f.debug_struct("NetArgs")
            .field("connect_timeout", &self.connect_timeout)
            .field("all_proxy", &r(&self.all_proxy))
            .field("http_proxy", &r(&self.http_proxy))
            .field("https_proxy", &r(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .field("ca_certificate", &self.ca_certificate)
            .field("check_certificate", &self.check_certificate)
            .field("http2", &self.http2)
            .field("user_agent", &self.user_agent)
            .field("no_splice", &self.no_splice)
            .field("no_own_tls", &self.no_own_tls)
            .finish()
    }
}

impl NetArgs {
    /// Network options from these flags and the environment's proxy variables.
    pub fn options(
        &self,
        response_timeout_secs: u64,
        default_agent: &str,
        connections: usize,
    ) -> Result<NetOptions, String> {
        let flags = ProxyFlags {
            all: self.all_proxy.clone(),
            http: self.http_proxy.clone(),
            https: self.https_proxy.clone(),
            no_proxy: self.no_proxy.clone(),
        };
        let proxy = ProxySettings::from_env(&flags)?;
        Ok(NetOptions {
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            response_timeout: Duration::from_secs(response_timeout_secs.max(1)),
            http2: self.http2,
            tls: TlsOptions {
                ca_certificate: self.ca_certificate.clone(),
                check_certificate: self.check_certificate,
            },
            proxy,
            user_agent: self
                .user_agent
                .clone()
                .unwrap_or_else(|| default_agent.to_string()),
            read_buffer: crate::net::read_buffer_for(connections),
            recv_buffer: None,
            splice: cfg!(target_os = "linux") && !self.no_splice,
            own_tls: !self.no_own_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        net: NetArgs,
    }

    #[test]
    fn debug_hides_proxy_passwords() {
        let cli = Cli::try_parse_from([
            "t",
            "--all-proxy",
            "http://u:topsecret@h:1",
            "--https-proxy=socks5h://u:topsecret@h:2",
        ])
        .unwrap();
        let d = format!("{:?}", cli.net);
        assert!(!d.contains("topsecret") && d.contains("***@h:1"), "{d}");
    }
}

/// How failures are retried, the same for both binaries.
#[derive(Args, Clone, Debug)]
pub struct RetryArgs {
    /// Failed attempts in a row, with no byte received, before a connection
    /// gives up; 0 = never.
    #[arg(short = 'm', long = "max-tries", value_name = "N", default_value_t = 5)]
    pub max_tries: u32,

    /// Seconds before the first retry; later retries wait up to twice as long
    /// each time (with random jitter) [default: 0.5]. A server's Retry-After
    /// is always obeyed.
    #[arg(long = "retry-wait", value_name = "SEC")]
    pub retry_wait: Option<f64>,
}

impl RetryArgs {
    /// The policy these flags (or an input file's `max-tries`/`retry-wait`,
    /// given as `max_tries`/`wait`) ask for.
    pub fn policy(&self) -> Result<RetryPolicy, String> {
        retry_policy(self.max_tries, self.retry_wait)
    }
}

/// The retry policy for `max_tries` and a first wait of `wait` seconds.
pub fn retry_policy(max_tries: u32, wait: Option<f64>) -> Result<RetryPolicy, String> {
    let mut p = RetryPolicy {
        max_tries,
        ..RetryPolicy::default()
    };
    if let Some(w) = wait {
        if !(0.0..=600.0).contains(&w) {
            return Err("--retry-wait must be between 0 and 600 seconds".into());
        }
        p.base = Duration::from_secs_f64(w);
    }
    Ok(p)
}
