//! Network options shared by `hfget` and `hfd`: proxies (aria2c's names),
//! TLS, HTTP/2, timeouts.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::net::proxy::redact_text;
use crate::net::{NetOptions, ProxyFlags, ProxySettings, TlsOptions};

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
