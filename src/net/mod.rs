//! The network layer: one HTTP connection to one origin, over whatever route
//! the proxy settings choose for that origin.
//!
//! Layers, bottom up: TCP (or a SOCKS5 session, or an HTTP `CONNECT` tunnel,
//! possibly through TLS to the proxy) → TLS to the target (SNI and
//! certificate checks always for the *target* host) → `hyper::client::conn`
//! HTTP/1.1 or HTTP/2. Plain http straight to the server goes through our
//! own small HTTP/1.1 client so bodies can be spliced ([`plain`]); so does
//! HTTP/1.1 over TLS, with records opened by us in place ([`tls_link`]).
//! We use hyper's connection API rather than a pooled
//! client because a segmented download must choose, time and replace each
//! connection itself, and the pooled client never opens a second HTTP/2
//! connection to a host.

pub mod body;
mod connect;
pub mod h1;
pub mod http;
pub mod plain;
pub mod proxy;
pub mod tls;
mod tls_link;
mod tls_record;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use url::Url;

pub use body::{Body, BodyError};
pub use connect::Conn;
pub use proxy::{ProxyFlags, ProxySettings, Route};
pub use tls::TlsOptions;
#[doc(hidden)]
pub use tls_link::read_to_end as read_through_own_tls;

/// Whatever a route yields: a socket, a SOCKS5 session or a proxy tunnel.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
pub(crate) type BoxIo = Box<dyn Io>;

/// Everything that decides how connections are made.
#[derive(Clone, Debug)]
pub struct NetOptions {
    pub connect_timeout: Duration,
    /// How long to wait for response headers.
    pub response_timeout: Duration,
    /// Offer HTTP/2 by ALPN on TLS connections (`--http2`).
    pub http2: bool,
    pub tls: TlsOptions,
    pub proxy: ProxySettings,
    pub user_agent: String,
    /// Largest HTTP/1.1 read buffer per connection; see [`read_buffer_for`].
    pub read_buffer: usize,
    /// The socket receive buffer (`SO_RCVBUF`) of each connection, when set:
    /// under a bandwidth cap a small one keeps the kernel from taking in a
    /// burst the cap then has to wait out, so the cap holds at the server
    /// too. `None`: the kernel's autotuning.
    pub recv_buffer: Option<usize>,
    /// Plain-http connections straight to the server use our own HTTP/1.1
    /// client ([`plain`]), whose bodies can be spliced into the file
    /// (Linux). Off: hyper carries everything (`hfget --no-splice`).
    pub splice: bool,
    /// HTTP/1.1 over TLS uses the same client, with TLS records opened in
    /// place by us after rustls's handshake ([`tls_link`]): fewer copies,
    /// and pipelining. Off: tokio-rustls and hyper (`hfget --no-own-tls`).
    pub own_tls: bool,
}

/// Read-buffer size for a run with `connections` connections at once.
///
/// Every connection owns one buffer, and the slices of it still waiting for
/// the writer keep old ones alive, so memory grows with buffer × connections.
/// 128 KiB reads cost about 0.03 CPU-s/GiB less than 64 KiB ones, but at 64
/// connections they push peak RSS past 40 MiB (docs/performance.md), so
/// large runs read in 64 KiB pieces.
pub fn read_buffer_for(connections: usize) -> usize {
    if connections > 32 {
        64 << 10
    } else {
        128 << 10
    }
}

impl NetOptions {
    /// Logs what the user should know before the first request: proxy
    /// choices (and, with -v, the route per scheme) and unchecked TLS.
    pub fn announce(&self) {
        self.proxy.announce();
        if !self.tls.check_certificate {
            tracing::warn!(
                "--check-certificate=false: TLS certificates are NOT checked; anyone on the path can read and change the download"
            );
        }
    }
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            http2: false,
            tls: TlsOptions::default(),
            proxy: ProxySettings::direct(),
            user_agent: concat!("hfget/", env!("CARGO_PKG_VERSION")).to_string(),
            read_buffer: read_buffer_for(16),
            recv_buffer: None,
            splice: cfg!(target_os = "linux"),
            own_tls: true,
        }
    }
}

/// A shared, cheaply cloned connection factory.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

struct Inner {
    opts: NetOptions,
    /// Built on first use: loading the system roots costs a few milliseconds
    /// that plain-http downloads should not pay.
    tls_target: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    tls_proxy: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Net {
    pub fn new(opts: NetOptions) -> Net {
        Net {
            inner: Arc::new(Inner {
                opts,
                tls_target: OnceLock::new(),
                tls_proxy: OnceLock::new(),
            }),
        }
    }

    pub fn options(&self) -> &NetOptions {
        &self.inner.opts
    }

    /// The route a request to `url` takes.
    pub fn route_for(&self, url: &Url) -> Route {
        self.inner.opts.proxy.route_for(url)
    }

    /// Opens a new connection able to carry requests for `url`'s origin.
    pub async fn connect(&self, url: &Url) -> Result<Conn, NetError> {
        let origin = Origin::of(url)?;
        let route = self.route_for(url);
        connect::open(self, origin, route).await
    }

    fn tls_for_target(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let opts = &self.inner.opts;
        self.inner
            .tls_target
            .get_or_init(|| {
                let alpn: &[&[u8]] = if opts.http2 {
                    &[b"h2", b"http/1.1"]
                } else {
                    &[b"http/1.1"]
                };
                tls::client_config(&opts.tls, alpn).map(Arc::new)
            })
            .clone()
            .map_err(NetError::Config)
    }

    fn tls_for_proxy(&self) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let opts = &self.inner.opts;
        self.inner
            .tls_proxy
            .get_or_init(|| tls::client_config(&opts.tls, &[b"http/1.1"]).map(Arc::new))
            .clone()
            .map_err(NetError::Config)
    }
}

/// Scheme, host and port: the unit of connection reuse, and the boundary
/// credentials never cross.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    /// Host name or IP literal, without IPv6 brackets, lowercase.
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(url: &Url) -> Result<Origin, NetError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(NetError::BadUrl {
                    url: redact_url(url),
                    reason: format!("unsupported scheme {other:?} (use http or https)"),
                });
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| NetError::BadUrl {
                url: redact_url(url),
                reason: "no host".into(),
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        Ok(Origin { https, host, port })
    }

    /// `host:port` with IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `Host` header value: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority()
        )
    }
}

/// A URL for messages and logs: no user info and no query string, since
/// either may carry a secret (signed CDN URLs put their signature in the query).
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    if had_query {
        format!("{u}?…")
    } else {
        u.to_string()
    }
}

/// Errors of the network layer. Messages name the host or proxy and say what
/// the user can do; proxy credentials never appear.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("invalid URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("cannot resolve host name {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls {
        host: String,
        detail: String,
        /// The certificate was rejected (retrying cannot help).
        certificate: bool,
    },
    #[error("{detail}")]
    Proxy {
        proxy: String,
        detail: String,
        /// Credentials or policy problems: retrying cannot help.
        fatal: bool,
    },
    #[error("connection to {host} failed: {detail}")]
    Http { host: String, detail: String },
    #[error("no response from {host} within {secs} s")]
    ResponseTimeout { host: String, secs: u64 },
}

impl NetError {
    /// Whether trying again (later, on a new connection) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::BadUrl { .. } | NetError::Config(_) => false,
            NetError::Tls { certificate, .. } => !certificate,
            NetError::Proxy { fatal, .. } => !fatal,
            NetError::Dns { .. }
            | NetError::Connect { .. }
            | NetError::Http { .. }
            | NetError::ResponseTimeout { .. } => true,
        }
    }
}
