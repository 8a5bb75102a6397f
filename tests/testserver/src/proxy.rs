//! In-process proxies for tests and benchmarks: a SOCKS5 server (RFC 1928,
//! CONNECT only, with RFC 1929 user/password) and an HTTP proxy (`CONNECT`
//! tunnels and absolute-form `GET` forwarding, Basic auth, optionally
//! reached over TLS like an `https://` proxy).
//!
//! Why our own next to the real ones (tinyproxy, microsocks): a test must
//! see what the client *sent*. The SOCKS5 server records the address type
//! of every request, which is the only way to prove `socks5://` (the client
//! resolves, ATYP IPv4/IPv6) versus `socks5h://` (the proxy resolves, ATYP
//! DOMAINNAME); the HTTP proxy records each request line and whether its
//! credentials were right. Both can resolve names from a test-supplied map
//! (`hub.test` → `127.0.0.1:PORT`), so no test needs DNS, and both can bind
//! their outgoing sockets to another loopback address (`127.0.0.2`), so an
//! origin that only accepts that peer proves no byte went direct.
//!
//! Safety rails: targets must be loopback addresses (anything else is
//! refused, never connected), names are resolved only from the map plus
//! `localhost`, every handshake has a deadline, input is length-checked
//! (bad input closes the session, it never panics), the logs are bounded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::server::ServerThread;
use crate::sync::lock;

/// Deadline for a client's handshake (SOCKS negotiation, TLS to the proxy).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for connecting to a target.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Relay buffer per direction: large enough that a loopback benchmark
/// measures the proxy's copying, not its syscall count.
const RELAY_BUFFER: usize = 256 * 1024;
/// Most client connections served at once; more are closed on accept.
const MAX_SESSIONS: usize = 1024;

/// Where a proxy sends its connections.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    /// Names the proxy resolves itself, case-insensitively. A port of 0 in
    /// the address keeps the requested port; any other port replaces it
    /// (so `https://hub.test/` can reach a test server on a random port).
    /// Besides these, only IP literals and `localhost` resolve.
    pub hosts: Vec<(String, SocketAddr)>,
    /// Source address for connections to targets (e.g. `127.0.0.2`), so the
    /// origin can tell proxied connections from direct ones.
    pub outgoing: Option<IpAddr>,
}

/// Why a target could not be reached.
#[derive(Debug)]
enum UpstreamError {
    /// The name is neither in the map nor `localhost` nor an IP literal.
    UnknownHost,
    /// Not a loopback address: refused by policy, never contacted.
    NotAllowed,
    Refused,
    Other(io::Error),
    Timeout,
}

impl Upstream {
    fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, UpstreamError> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        let addr = if let Some((_, a)) = self
            .hosts
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
        {
            if a.port() == 0 {
                SocketAddr::new(a.ip(), port)
            } else {
                *a
            }
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            SocketAddr::new(ip, port)
        } else if host.eq_ignore_ascii_case("localhost") {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        } else {
            return Err(UpstreamError::UnknownHost);
        };
        if !addr.ip().is_loopback() {
            return Err(UpstreamError::NotAllowed);
        }
        Ok(addr)
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, UpstreamError> {
        let addr = self.resolve(host, port)?;
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(UpstreamError::Other)?;
        if let Some(src) = self.outgoing
            && src.is_ipv4() == addr.is_ipv4()
        {
            socket
                .bind(SocketAddr::new(src, 0))
                .map_err(UpstreamError::Other)?;
        }
        match tokio::time::timeout(UPSTREAM_TIMEOUT, socket.connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(UpstreamError::Refused)
            }
            Ok(Err(e)) => Err(UpstreamError::Other(e)),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }
}

/// Copies both ways until both sides are done, and counts the bytes moved.
async fn relay<A, B>(mut a: A, mut b: B, counter: &AtomicU64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if let Ok((x, y)) =
        tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, RELAY_BUFFER, RELAY_BUFFER).await
    {
        counter.fetch_add(x + y, Ordering::Relaxed);
    }
}

/// A bounded, shared log.
struct Log<T> {
    entries: Mutex<VecDeque<T>>,
    limit: usize,
}

impl<T: Clone> Log<T> {
    fn new(limit: usize) -> Log<T> {
        Log {
            entries: Mutex::new(VecDeque::new()),
            limit: limit.max(1),
        }
    }

    fn push(&self, entry: T) {
        let mut e = lock(&self.entries);
        if e.len() >= self.limit {
            e.pop_front();
        }
        e.push_back(entry);
    }

    fn snapshot(&self) -> Vec<T> {
        lock(&self.entries).iter().cloned().collect()
    }

    fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// A proxy's listener on its own [`ServerThread`], at most `MAX_SESSIONS`
/// sessions at once. Dropping it stops the thread and every session.
struct Background(ServerThread);

impl Background {
    fn start<F, Fut>(name: &str, bind: SocketAddr, serve: F) -> io::Result<Background>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ServerThread::spawn(name, bind, move |listener, mut shutdown_rx| async move {
            let active = Arc::new(AtomicUsize::new(0));
            loop {
                let accepted = tokio::select! {
                    _ = &mut shutdown_rx => return,
                    r = listener.accept() => r,
                };
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if active.load(Ordering::Acquire) >= MAX_SESSIONS {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                active.fetch_add(1, Ordering::AcqRel);
                let active = active.clone();
                let session = serve(stream, peer);
                tokio::spawn(async move {
                    session.await;
                    active.fetch_sub(1, Ordering::AcqRel);
                });
            }
        })
        .map(Background)
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr
    }
}

// ---------------------------------------------------------------------------
// SOCKS5

/// How a SOCKS5 server is set up.
#[derive(Clone, Debug)]
pub struct SocksOptions {
    pub bind: SocketAddr,
    /// Require this user name and password (RFC 1929).
    pub auth: Option<(String, String)>,
    pub upstream: Upstream,
    /// Most sessions kept for `sessions()`.
    pub log_limit: usize,
}

impl Default for SocksOptions {
    fn default() -> SocksOptions {
        SocksOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            auth: None,
            upstream: Upstream::default(),
            log_limit: 10_000,
        }
    }
}

/// The address type (ATYP) of a SOCKS5 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrType {
    Ipv4,
    /// A host name, for the proxy to resolve (what `socks5h://` sends).
    Domain,
    Ipv6,
}

/// How a SOCKS5 session ended its negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocksOutcome {
    /// The target was connected and data relayed.
    Connected,
    /// The client offered no method the server accepts.
    NoAcceptableMethod,
    /// The user name or password was wrong.
    AuthRejected,
    /// The request was answered with this non-zero reply code (RFC 1928 §6).
    Failed(u8),
    /// The client sent something that is not SOCKS5, or stopped early.
    Malformed(String),
}

/// What one client connection to the SOCKS5 server did.
#[derive(Clone, Debug)]
pub struct SocksSession {
    pub peer: SocketAddr,
    /// The authentication methods the client offered.
    pub methods: Vec<u8>,
    /// Whether user/password authentication took place (and its user name).
    pub user: Option<String>,
    pub atyp: Option<AddrType>,
    /// The requested target as received: `name:port` or `ip:port`.
    pub target: Option<String>,
    pub outcome: SocksOutcome,
}

/// A SOCKS5 server on loopback. See the module documentation.
pub struct SocksProxy {
    bg: Background,
    log: Arc<Log<SocksSession>>,
    bytes: Arc<AtomicU64>,
}

impl SocksProxy {
    /// Starts a server with the given options.
    pub fn start(opts: SocksOptions) -> io::Result<SocksProxy> {
        let log = Arc::new(Log::new(opts.log_limit));
        let bytes = Arc::new(AtomicU64::new(0));
        let ctx = Arc::new(SocksCtx {
            auth: opts.auth,
            upstream: opts.upstream,
            log: log.clone(),
            bytes: bytes.clone(),
        });
        let bg = Background::start("socks5-proxy", opts.bind, move |stream, peer| {
            socks_session(ctx.clone(), stream, peer)
        })?;
        Ok(SocksProxy { bg, log, bytes })
    }

    pub fn addr(&self) -> SocketAddr {
        self.bg.addr()
    }

    /// `scheme://127.0.0.1:PORT` for `scheme` = `socks5` or `socks5h`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.bg.addr())
    }

    /// The sessions so far, oldest first.
    pub fn sessions(&self) -> Vec<SocksSession> {
        self.log.snapshot()
    }

    pub fn clear_sessions(&self) {
        self.log.clear();
    }

    /// Payload bytes relayed in both directions by finished sessions.
    pub fn bytes_relayed(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

struct SocksCtx {
    auth: Option<(String, String)>,
    upstream: Upstream,
    log: Arc<Log<SocksSession>>,
    bytes: Arc<AtomicU64>,
}

async fn socks_session(ctx: Arc<SocksCtx>, mut client: TcpStream, peer: SocketAddr) {
    let mut s = SocksSession {
        peer,
        methods: Vec::new(),
        user: None,
        atyp: None,
        target: None,
        outcome: SocksOutcome::Malformed("no data".into()),
    };
    let negotiated = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        socks_negotiate(&ctx, &mut client, &mut s),
    )
    .await;
    let upstream = match negotiated {
        Ok(Ok(up)) => up,
        Ok(Err(outcome)) => {
            s.outcome = outcome;
            ctx.log.push(s);
            return;
        }
        Err(_) => {
            s.outcome = SocksOutcome::Malformed("handshake timed out".into());
            ctx.log.push(s);
            return;
        }
    };
    s.outcome = SocksOutcome::Connected;
    ctx.log.push(s);
    relay(client, upstream, &ctx.bytes).await;
}

fn malformed(e: io::Error) -> SocksOutcome {
    SocksOutcome::Malformed(e.to_string())
}

/// Runs the RFC 1928/1929 negotiation; on success the target is connected.
async fn socks_negotiate(
    ctx: &SocksCtx,
    c: &mut TcpStream,
    s: &mut SocksSession,
) -> Result<TcpStream, SocksOutcome> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).await.map_err(malformed)?;
    if head[0] != 5 {
        return Err(SocksOutcome::Malformed(format!("version {}", head[0])));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods).await.map_err(malformed)?;
    s.methods = methods.clone();
    // With credentials configured only user/password will do; without,
    // "no authentication" is preferred, but a client that only offers
    // user/password is served too (and any credentials pass).
    let method = if ctx.auth.is_some() {
        methods.contains(&2).then_some(2u8)
    } else if methods.contains(&0) {
        Some(0)
    } else {
        methods.contains(&2).then_some(2)
    };
    let Some(method) = method else {
        let _ = c.write_all(&[5, 0xff]).await;
        return Err(SocksOutcome::NoAcceptableMethod);
    };
    c.write_all(&[5, method]).await.map_err(malformed)?;
    if method == 2 {
        let mut ver_len = [0u8; 2];
        c.read_exact(&mut ver_len).await.map_err(malformed)?;
        if ver_len[0] != 1 {
            return Err(SocksOutcome::Malformed(format!(
                "auth version {}",
                ver_len[0]
            )));
        }
        let mut user = vec![0u8; usize::from(ver_len[1])];
        c.read_exact(&mut user).await.map_err(malformed)?;
        let mut plen = [0u8; 1];
        c.read_exact(&mut plen).await.map_err(malformed)?;
        let mut pass = vec![0u8; usize::from(plen[0])];
        c.read_exact(&mut pass).await.map_err(malformed)?;
        let user = String::from_utf8_lossy(&user).into_owned();
        let ok = ctx
            .auth
            .as_ref()
            .is_none_or(|(u, p)| u.as_bytes() == user.as_bytes() && p.as_bytes() == pass);
        s.user = Some(user);
        if !ok {
            let _ = c.write_all(&[1, 1]).await;
            return Err(SocksOutcome::AuthRejected);
        }
        c.write_all(&[1, 0]).await.map_err(malformed)?;
    }
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await.map_err(malformed)?;
    if req[0] != 5 {
        return Err(SocksOutcome::Malformed(format!(
            "request version {}",
            req[0]
        )));
    }
    let (host, atyp) = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await.map_err(malformed)?;
            (Ipv4Addr::from(a).to_string(), AddrType::Ipv4)
        }
        3 => {
            let mut len = [0u8; 1];
            c.read_exact(&mut len).await.map_err(malformed)?;
            let mut name = vec![0u8; usize::from(len[0])];
            c.read_exact(&mut name).await.map_err(malformed)?;
            (
                String::from_utf8_lossy(&name).into_owned(),
                AddrType::Domain,
            )
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).await.map_err(malformed)?;
            (std::net::Ipv6Addr::from(a).to_string(), AddrType::Ipv6)
        }
        other => {
            let _ = c.write_all(&socks_reply(8, None)).await;
            return Err(SocksOutcome::Malformed(format!("address type {other}")));
        }
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port).await.map_err(malformed)?;
    let port = u16::from_be_bytes(port);
    s.atyp = Some(atyp);
    s.target = Some(if atyp == AddrType::Ipv6 {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    });
    if req[1] != 1 {
        let _ = c.write_all(&socks_reply(7, None)).await;
        return Err(SocksOutcome::Failed(7));
    }
    match ctx.upstream.connect(&host, port).await {
        Ok(up) => {
            c.write_all(&socks_reply(0, up.local_addr().ok()))
                .await
                .map_err(malformed)?;
            Ok(up)
        }
        Err(e) => {
            let code = match e {
                UpstreamError::UnknownHost => 4,
                UpstreamError::NotAllowed => 2,
                UpstreamError::Refused => 5,
                UpstreamError::Timeout => 6,
                UpstreamError::Other(_) => 1,
            };
            let _ = c.write_all(&socks_reply(code, None)).await;
            Err(SocksOutcome::Failed(code))
        }
    }
}

fn socks_reply(code: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut r = vec![5, code, 0];
    match bound {
        Some(SocketAddr::V6(a)) => {
            r.push(4);
            r.extend_from_slice(&a.ip().octets());
            r.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V4(a)) => {
            r.push(1);
            r.extend_from_slice(&a.ip().octets());
            r.extend_from_slice(&a.port().to_be_bytes());
        }
        None => r.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]),
    }
    r
}

// ---------------------------------------------------------------------------
// HTTP proxy

/// How an HTTP proxy is set up.
#[derive(Clone, Debug)]
pub struct HttpProxyOptions {
    pub bind: SocketAddr,
    /// Require `Proxy-Authorization: Basic` with this user and password;
    /// requests without it, or with other credentials, get 407.
    pub auth: Option<(String, String)>,
    pub upstream: Upstream,
    /// Speak TLS to clients first (an `https://` proxy).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most requests kept for `requests()`.
    pub log_limit: usize,
}

impl Default for HttpProxyOptions {
    fn default() -> HttpProxyOptions {
        HttpProxyOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            auth: None,
            upstream: Upstream::default(),
            tls: None,
            log_limit: 10_000,
        }
    }
}

/// The credentials a request carried, as the proxy judged them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyAuth {
    /// No `Proxy-Authorization` header.
    Missing,
    /// Present and right (or present and none required).
    Valid,
    /// Present and wrong, or not Basic.
    Invalid,
}

/// One request the HTTP proxy received.
#[derive(Clone, Debug)]
pub struct ProxyRequest {
    pub peer: SocketAddr,
    pub method: String,
    /// The request target as received: `host:port` for `CONNECT`, the
    /// absolute URL for forwarded requests.
    pub target: String,
    pub auth: ProxyAuth,
    /// The status the proxy answered (for forwarded requests, the origin's).
    pub status: u16,
}

/// An HTTP proxy on loopback. See the module documentation.
pub struct HttpProxy {
    bg: Background,
    tls: bool,
    log: Arc<Log<ProxyRequest>>,
    bytes: Arc<AtomicU64>,
}

impl HttpProxy {
    /// Starts a proxy with the given options.
    pub fn start(opts: HttpProxyOptions) -> io::Result<HttpProxy> {
        let log = Arc::new(Log::new(opts.log_limit));
        let bytes = Arc::new(AtomicU64::new(0));
        let tls = opts.tls.is_some();
        let ctx = Arc::new(HttpCtx {
            auth: opts.auth,
            upstream: opts.upstream,
            log: log.clone(),
            bytes: bytes.clone(),
        });
        let acceptor = opts.tls.map(|mut cfg| {
            if cfg.alpn_protocols.is_empty() {
                Arc::make_mut(&mut cfg).alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            TlsAcceptor::from(cfg)
        });
        let bg = Background::start("http-proxy", opts.bind, move |stream, peer| {
            http_session(ctx.clone(), acceptor.clone(), stream, peer)
        })?;
        Ok(HttpProxy {
            bg,
            tls,
            log,
            bytes,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.bg.addr()
    }

    /// `http://127.0.0.1:PORT` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.bg.addr())
    }

    /// The same with `user:pass@` (percent-encoded) in front of the address.
    pub fn url_with_auth(&self, user: &str, pass: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://{}:{}@{}",
            userinfo_encode(user),
            userinfo_encode(pass),
            self.bg.addr()
        )
    }

    /// The requests so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.log.clear();
    }

    /// Tunnel payload bytes relayed (both directions) by finished tunnels.
    pub fn bytes_relayed(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Percent-encodes a user name or password for a proxy URL.
pub fn userinfo_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

struct HttpCtx {
    auth: Option<(String, String)>,
    upstream: Upstream,
    log: Arc<Log<ProxyRequest>>,
    bytes: Arc<AtomicU64>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn empty_body() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|n| match n {}).boxed()
}

fn text_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|n| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn http_session(
    ctx: Arc<HttpCtx>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    match tls {
        None => serve_http_proxy(ctx, TokioIo::new(stream), peer).await,
        Some(acceptor) => {
            if let Ok(Ok(s)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                serve_http_proxy(ctx, TokioIo::new(s), peer).await;
            }
        }
    }
}

/// The origin connection a client's forwarded requests reuse (HTTP/1.1
/// serves one request at a time per client connection, so one suffices).
type Forward =
    Arc<tokio::sync::Mutex<Option<(String, hyper::client::conn::http1::SendRequest<Incoming>)>>>;

async fn serve_http_proxy<I>(ctx: Arc<HttpCtx>, io: TokioIo<I>, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let forward: Forward = Arc::new(tokio::sync::Mutex::new(None));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let forward = forward.clone();
        async move { Ok::<_, Infallible>(proxy_request(ctx, forward, req, peer).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

fn check_auth(want: &Option<(String, String)>, req: &Request<Incoming>) -> ProxyAuth {
    let Some(v) = req.headers().get(header::PROXY_AUTHORIZATION) else {
        return if want.is_none() {
            ProxyAuth::Valid
        } else {
            ProxyAuth::Missing
        };
    };
    let Some((u, p)) = want else {
        return ProxyAuth::Valid;
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
    let got = v.to_str().unwrap_or("");
    match got.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("basic") && token.trim() == expected =>
        {
            ProxyAuth::Valid
        }
        _ => ProxyAuth::Invalid,
    }
}

async fn proxy_request(
    ctx: Arc<HttpCtx>,
    forward: Forward,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let auth = check_auth(&ctx.auth, &req);
    let mut entry = ProxyRequest {
        peer,
        method: req.method().as_str().to_string(),
        target: req.uri().to_string(),
        auth,
        status: 0,
    };
    let resp = if auth != ProxyAuth::Valid {
        let mut r = text_response(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "proxy authentication required\n",
        );
        r.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hfd test proxy\""),
        );
        r
    } else if req.method() == Method::CONNECT {
        connect_tunnel(&ctx, &mut req).await
    } else {
        forward_request(&ctx, &forward, req).await
    };
    entry.status = resp.status().as_u16();
    ctx.log.push(entry);
    resp
}

fn upstream_failure(e: &UpstreamError, target: &str) -> Response<ProxyBody> {
    let (status, why) = match e {
        UpstreamError::UnknownHost => (StatusCode::BAD_GATEWAY, "unknown host".to_string()),
        UpstreamError::NotAllowed => (
            StatusCode::FORBIDDEN,
            "only loopback targets are allowed".to_string(),
        ),
        UpstreamError::Refused => (StatusCode::BAD_GATEWAY, "connection refused".to_string()),
        UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timed out".to_string()),
        UpstreamError::Other(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    };
    text_response(status, &format!("cannot connect to {target}: {why}\n"))
}

async fn connect_tunnel(ctx: &Arc<HttpCtx>, req: &mut Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let Some(port) = authority.port_u16() else {
        return text_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
    };
    let upstream = match ctx.upstream.connect(authority.host(), port).await {
        Ok(s) => s,
        Err(e) => return upstream_failure(&e, authority.as_str()),
    };
    let on_upgrade = hyper::upgrade::on(req);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            relay(TokioIo::new(upgraded), upstream, &ctx.bytes).await;
        }
    });
    Response::new(empty_body())
}

/// Headers that concern only the hop between client and proxy.
const HOP_HEADERS: &[header::HeaderName] = &[
    header::PROXY_AUTHORIZATION,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

async fn forward_request(
    ctx: &Arc<HttpCtx>,
    forward: &Forward,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return text_response(
            StatusCode::BAD_REQUEST,
            "this proxy forwards absolute http:// URLs and tunnels with CONNECT\n",
        );
    }
    let Some(authority) = uri.authority().cloned() else {
        return text_response(StatusCode::BAD_REQUEST, "no host in the request target\n");
    };
    let port = authority.port_u16().unwrap_or(80);
    let key = format!("{}:{port}", authority.host());
    let (mut parts, body) = req.into_parts();
    parts.uri = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    for h in HOP_HEADERS {
        parts.headers.remove(h);
    }
    parts.headers.remove("proxy-connection");
    if !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    let mut slot = forward.lock().await;
    let reusable = matches!(&*slot, Some((k, s)) if *k == key && !s.is_closed());
    if !reusable {
        *slot = None;
        let upstream = match ctx.upstream.connect(authority.host(), port).await {
            Ok(s) => s,
            Err(e) => return upstream_failure(&e, &key),
        };
        let Ok((sender, conn)) =
            hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream)).await
        else {
            return text_response(
                StatusCode::BAD_GATEWAY,
                "handshake with the origin failed\n",
            );
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *slot = Some((key.clone(), sender));
    }
    let Some((_, sender)) = slot.as_mut() else {
        return text_response(StatusCode::BAD_GATEWAY, "no origin connection\n");
    };
    if sender.ready().await.is_err() {
        *slot = None;
        return text_response(
            StatusCode::BAD_GATEWAY,
            "the origin closed the connection\n",
        );
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => {
            *slot = None;
            text_response(StatusCode::BAD_GATEWAY, &format!("origin error: {e}\n"))
        }
    }
}
