//! Opening connections: route, transport, TLS, HTTP handshake.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::body::Body;
use super::plain::{self, PlainConn};
use super::proxy::{Proxy, ProxyKind, Route};
use super::tls_link::TlsLink;
use super::{BoxIo, Net, NetError, Origin, tls};

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
    Plain(PlainConn),
}

/// One open HTTP connection to one origin. Requests go one after another
/// (HTTP/1.1 keep-alive); a connection whose response body was not read to
/// the end must be dropped, not reused.
pub struct Conn {
    sender: Sender,
    origin: Origin,
    /// Plain-http target through an HTTP proxy: absolute-form request targets.
    absolute_form: bool,
    proxy_auth: Option<HeaderValue>,
    route: Route,
    /// Where the route led, for `-v`: the address a direct connection or a
    /// locally resolved SOCKS request went to.
    route_detail: Option<String>,
    tls_info: Option<String>,
    response_timeout: Duration,
}

impl Conn {
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The per-connection line `-v` shows: origin, route (proxy
    /// credentials redacted), protocol, and TLS version and ALPN, e.g.
    /// `https://hub.example:443 via socks5h://***@127.0.0.1:7891, HTTP/2, TLS 1.3,
    /// TLS13_AES_128_GCM_SHA256, ALPN h2`.
    pub fn describe(&self) -> String {
        let proto = match self.sender {
            Sender::H1(_) => "HTTP/1.1",
            Sender::H2(_) => "HTTP/2",
            Sender::Plain(_) if self.tls_info.is_some() => "HTTP/1.1 (own TLS records)",
            Sender::Plain(_) => "HTTP/1.1 (spliced)",
        };
        let mut s = format!("{} {}", self.origin, self.route);
        if let Some(d) = &self.route_detail {
            s.push_str(&format!(" ({d})"));
        }
        s.push_str(", ");
        s.push_str(proto);
        if let Some(t) = &self.tls_info {
            s.push_str(", ");
            s.push_str(t);
        }
        s
    }

    /// How long a response head may take (`--timeout`).
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Whether this connection can carry a request for `url` (same origin and
    /// same route) and is still open.
    pub fn can_serve(&self, url: &Url, net: &Net) -> bool {
        let open = match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
            // A connection with an answer still due carries nothing else.
            Sender::Plain(p) => !p.is_closed() && !p.has_answer_pending(),
        };
        open && Origin::of(url).is_ok_and(|o| o == self.origin) && net.route_for(url) == self.route
    }

    /// True when a request was sent ahead on this connection and its
    /// answer is next: [`receive_ahead`](Self::receive_ahead) reads it.
    pub fn has_answer_pending(&self) -> bool {
        matches!(&self.sender, Sender::Plain(p) if p.has_answer_pending())
    }

    /// The bytes of a `GET url` request to send ahead on a body of this
    /// connection ([`crate::net::plain::PlainBody::send_ahead`]); `None`
    /// when the connection cannot pipeline (only our own HTTP/1.1 client
    /// can, plain or over TLS).
    pub fn head_ahead(&self, url: &Url, headers: HeaderMap) -> Result<Option<Vec<u8>>, NetError> {
        if !matches!(self.sender, Sender::Plain(_)) {
            return Ok(None);
        }
        let req = self.request(url, headers)?;
        Ok(Some(plain::request_head(
            &req.uri().to_string(),
            req.headers(),
        )))
    }

    /// Waits for the head of the answer to the request sent ahead, at most
    /// `timeout`.
    pub async fn receive_ahead(&mut self, timeout: Duration) -> Result<Response<Body>, NetError> {
        let host = self.origin.host.clone();
        let Sender::Plain(p) = &mut self.sender else {
            return Err(NetError::Http {
                host,
                detail: "no request was sent ahead".into(),
            });
        };
        let r = within(timeout, &host, p.receive(&host)).await?;
        Ok(r.map(Body::Plain))
    }

    /// `GET url` with `headers`, in the form this connection sends it.
    fn request(&self, url: &Url, headers: HeaderMap) -> Result<Request<Empty<Bytes>>, NetError> {
        // User info never travels in a request target or `:authority`: a
        // proxy would read it there. It is sent as `Authorization` to its
        // own origin only (see `engine::source`).
        let mut target = url.clone();
        target.set_fragment(None);
        let _ = target.set_username("");
        let _ = target.set_password(None);
        let uri: http::Uri = match self.sender {
            Sender::H2(_) => target.as_str().parse::<http::Uri>(),
            Sender::H1(_) if self.absolute_form => target.as_str().parse::<http::Uri>(),
            Sender::H1(_) | Sender::Plain(_) => {
                let mut pq = target.path().to_string();
                if let Some(q) = target.query() {
                    pq.push('?');
                    pq.push_str(q);
                }
                pq.parse::<http::Uri>()
            }
        }
        .map_err(|e| NetError::BadUrl {
            url: super::redact_url(url),
            reason: e.to_string(),
        })?;
        let mut req = Request::get(uri)
            .body(Empty::<Bytes>::new())
            .expect("a GET with a valid URI is a valid request");
        let h = req.headers_mut();
        if let Sender::H1(_) | Sender::Plain(_) = self.sender {
            h.insert(
                http::header::HOST,
                HeaderValue::from_str(&self.origin.host_header()).map_err(|e| {
                    NetError::BadUrl {
                        url: super::redact_url(url),
                        reason: e.to_string(),
                    }
                })?,
            );
        }
        if let (true, Some(auth)) = (self.absolute_form, &self.proxy_auth) {
            h.insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        for (k, v) in headers.iter() {
            h.append(k, v.clone());
        }
        Ok(req)
    }

    /// Sends `GET url` with `headers` and waits for the response head.
    pub async fn get(&mut self, url: &Url, headers: HeaderMap) -> Result<Response<Body>, NetError> {
        let host = self.origin.host.clone();
        let http_err = |e: hyper::Error| NetError::Http {
            host: host.clone(),
            detail: describe_hyper_error(&e),
        };
        let req = self.request(url, headers)?;
        let fut = async {
            match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(http_err)?;
                    let r = s.send_request(req).await.map_err(http_err)?;
                    Ok(r.map(Body::Hyper))
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(http_err)?;
                    let r = s.send_request(req).await.map_err(http_err)?;
                    Ok(r.map(Body::Hyper))
                }
                Sender::Plain(p) => {
                    let target = req.uri().to_string();
                    let head = plain::request_head(&target, req.headers());
                    let r = p.send(head, &host).await?;
                    Ok(r.map(Body::Plain))
                }
            }
        };
        let response = within(self.response_timeout, &host, fut).await?;
        // Through an HTTP proxy in absolute form, a 407 is the proxy's
        // answer, not the origin's: report it as a proxy failure. So is
        // tinyproxy 1.11's answer to wrong credentials, a 401 with its own
        // realm (Debian 12 ships it; an origin has no reason to use it).
        if self.absolute_form
            && let Route::Via(proxy) = &self.route
        {
            let status = response.status();
            let tinyproxy_reject = status == http::StatusCode::UNAUTHORIZED
                && self.proxy_auth.is_some()
                && response
                    .headers()
                    .get(http::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().contains("realm=\"tinyproxy\""));
            if status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED || tinyproxy_reject {
                return Err(proxy_auth_error(proxy, self.proxy_auth.is_some()));
            }
        }
        Ok(response)
    }
}

/// `answer`, or a [`NetError::ResponseTimeout`] once `timeout` has passed.
async fn within<T>(
    timeout: Duration,
    host: &str,
    answer: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or_else(|_| {
            Err(NetError::ResponseTimeout {
                host: host.to_string(),
                secs: timeout.as_secs(),
            })
        })
}

fn describe_hyper_error(e: &hyper::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Opens a connection to `origin` along `route`.
pub(super) async fn open(net: &Net, origin: Origin, route: Route) -> Result<Conn, NetError> {
    let opts = net.options();
    let mut route_detail = None;
    let (link, absolute_form, proxy_auth): (Link, bool, Option<HeaderValue>) = match &route {
        Route::Direct => {
            let tcp = tcp_connect(
                &origin.host,
                origin.port,
                opts.connect_timeout,
                opts.recv_buffer,
            )
            .await?;
            if let Ok(peer) = tcp.peer_addr() {
                route_detail = Some(peer.to_string());
            }
            if opts.splice && !origin.https {
                (Link::Plain(tcp), false, None)
            } else {
                (Link::Hyper(Box::new(tcp)), false, None)
            }
        }
        Route::Via(proxy) => match proxy.kind {
            ProxyKind::Http | ProxyKind::Https => {
                let mut io = proxy_transport(net, proxy).await?;
                let auth = proxy.auth.as_ref().map(|(u, p)| basic_auth(u, p));
                if origin.https {
                    connect_tunnel(
                        &mut io,
                        proxy,
                        &origin,
                        auth.as_ref(),
                        opts.response_timeout,
                    )
                    .await?;
                    (Link::Hyper(io), false, None)
                } else {
                    (Link::Hyper(io), true, auth)
                }
            }
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let (io, detail) = socks_connect(net, proxy, &origin).await?;
                route_detail = detail;
                (Link::Hyper(io), false, None)
            }
        },
    };
    let (sender, tls_info) = match link {
        Link::Plain(tcp) => (Sender::Plain(PlainConn::new(tcp, opts.read_buffer)), None),
        Link::Hyper(io) if origin.https && opts.own_tls && !opts.http2 => {
            own_tls_sender(net, &origin, io).await?
        }
        Link::Hyper(io) => hyper_sender(net, &origin, io).await?,
    };
    let conn = Conn {
        sender,
        origin,
        absolute_form,
        proxy_auth,
        route,
        route_detail,
        tls_info,
        response_timeout: opts.response_timeout,
    };
    tracing::info!("connected: {}", conn.describe());
    Ok(conn)
}

/// What a connection's requests travel on: the bare socket, for our own
/// plain HTTP/1.1 client, or whatever the route gave, under TLS when the
/// origin is https (our own client again for HTTP/1.1, else hyper).
enum Link {
    Plain(TcpStream),
    Hyper(BoxIo),
}

/// TLS by rustls's handshake and our own records, under our own HTTP/1.1
/// client; also returns the TLS line for `-v`.
async fn own_tls_sender(
    net: &Net,
    origin: &Origin,
    io: BoxIo,
) -> Result<(Sender, Option<String>), NetError> {
    let config = net.tls_for_target()?;
    let name = tls::server_name(&origin.host).map_err(NetError::Config)?;
    let link = tls_handshake(net, origin, TlsLink::handshake(io, config, name)).await?;
    let info = link.info().to_string();
    let conn = PlainConn::over_tls(link, net.options().read_buffer);
    Ok((Sender::Plain(conn), Some(info)))
}

/// Sets up TLS (for an https origin) and hyper's HTTP/1.1 or HTTP/2 client
/// over `io`; also returns the TLS line for `-v`.
async fn hyper_sender(
    net: &Net,
    origin: &Origin,
    io: BoxIo,
) -> Result<(Sender, Option<String>), NetError> {
    let mut tls_info = None;
    let mut h2 = false;
    let io: BoxIo = if origin.https {
        let config = net.tls_for_target()?;
        let name = tls::server_name(&origin.host).map_err(NetError::Config)?;
        let stream =
            tls_handshake(net, origin, TlsConnector::from(config).connect(name, io)).await?;
        let (_, session) = stream.get_ref();
        h2 = session.alpn_protocol() == Some(b"h2");
        tls_info = Some(tls::describe(session));
        Box::new(stream)
    } else {
        io
    };

    let host = origin.host.clone();
    let handshake_err = |e: hyper::Error| NetError::Http {
        host: host.clone(),
        detail: describe_hyper_error(&e),
    };
    let sender = if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .adaptive_window(true)
            .keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(15))
            .handshake(TokioIo::new(io))
            .await
            .map_err(handshake_err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/2 connection ended: {e}");
            }
        });
        Sender::H2(sender)
    } else {
        let mut b = http1::Builder::new();
        // hyper's adaptive read buffer may grow to ~400 KiB per connection,
        // which at 64 connections alone would blow the memory budget.
        b.max_buf_size(net.options().read_buffer.max(8192));
        let (sender, conn) = b.handshake(TokioIo::new(io)).await.map_err(handshake_err)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP/1.1 connection ended: {e}");
            }
        });
        Sender::H1(sender)
    };
    Ok((sender, tls_info))
}

/// Runs a TLS handshake within the connect timeout.
async fn tls_handshake<T>(
    net: &Net,
    origin: &Origin,
    handshake: impl Future<Output = io::Result<T>>,
) -> Result<T, NetError> {
    let timeout = net.options().connect_timeout;
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(tls_error(&origin.host, e)),
        Err(_) => Err(NetError::Tls {
            host: origin.host.clone(),
            detail: format!("no handshake within {} s", timeout.as_secs()),
            certificate: false,
        }),
    }
}

fn tls_error(host: &str, e: io::Error) -> NetError {
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|re| {
            matches!(
                re,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    let mut detail = e.to_string();
    if certificate {
        detail.push_str(
            " (if a proxy or an internal CA signs this certificate, pass its CA with --ca-certificate or SSL_CERT_FILE)",
        );
    }
    NetError::Tls {
        host: host.to_string(),
        detail,
        certificate,
    }
}

/// Resolves `host` and connects to the first address that answers, with
/// the receive buffer `recv_buffer` when set.
async fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
    recv_buffer: Option<usize>,
) -> Result<TcpStream, NetError> {
    let addrs = resolve(host, port).await?;
    let mut last = None;
    for addr in addrs {
        let connect = async {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(n) = recv_buffer {
                socket.set_recv_buffer_size(n.min(u32::MAX as usize) as u32)?;
            }
            socket.connect(addr).await
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Some(describe_io(&e)),
            Err(_) => last = Some(format!("timed out after {} s", timeout.as_secs())),
        }
    }
    Err(NetError::Connect {
        addr: authority(host, port),
        detail: last.unwrap_or_else(|| "no address".into()),
    })
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(it) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                Err(NetError::Dns {
                    host: host.into(),
                    detail: "no addresses".into(),
                })
            } else {
                Ok(v)
            }
        }
        Err(e) => Err(NetError::Dns {
            host: host.into(),
            detail: e.to_string(),
        }),
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

fn basic_auth(user: &str, pass: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut v =
        HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

fn unreachable_proxy(proxy: &Proxy, e: NetError) -> NetError {
    let detail = match e {
        NetError::Connect { detail, .. } | NetError::Dns { detail, .. } => detail,
        other => other.to_string(),
    };
    let hint = if detail == "connection refused" {
        " — is it running?"
    } else if detail.starts_with("timed out") {
        " — is the address right, and is it running?"
    } else {
        ""
    };
    NetError::Proxy {
        proxy: proxy.to_string(),
        detail: format!("cannot reach proxy {proxy}: {detail}{hint}"),
        fatal: false,
    }
}

/// TCP to an HTTP(S) proxy, with TLS to the proxy itself for `https://` proxies.
async fn proxy_transport(net: &Net, proxy: &Proxy) -> Result<BoxIo, NetError> {
    let opts = net.options();
    let tcp = tcp_connect(
        &proxy.host,
        proxy.port,
        opts.connect_timeout,
        opts.recv_buffer,
    )
    .await
    .map_err(|e| unreachable_proxy(proxy, e))?;
    if proxy.kind != ProxyKind::Https {
        return Ok(Box::new(tcp));
    }
    let config = net.tls_for_proxy()?;
    let name = tls::server_name(&proxy.host).map_err(NetError::Config)?;
    match tokio::time::timeout(
        opts.connect_timeout,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(NetError::Proxy {
            proxy: proxy.to_string(),
            detail: format!("TLS to proxy {proxy} failed: {}", tls_error(&proxy.host, e)),
            fatal: true,
        }),
        Err(_) => Err(NetError::Proxy {
            proxy: proxy.to_string(),
            detail: format!("TLS to proxy {proxy} timed out"),
            fatal: false,
        }),
    }
}

/// Asks an HTTP proxy for a tunnel to `origin` and checks its answer.
async fn connect_tunnel(
    io: &mut BoxIo,
    proxy: &Proxy,
    origin: &Origin,
    auth: Option<&HeaderValue>,
    timeout: Duration,
) -> Result<(), NetError> {
    let target = origin.authority();
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = auth {
        req.push_str("Proxy-Authorization: ");
        req.push_str(a.to_str().unwrap_or(""));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let perr = |detail: String, fatal: bool| NetError::Proxy {
        proxy: proxy.to_string(),
        detail,
        fatal,
    };
    let exchange = async {
        io.write_all(req.as_bytes()).await?;
        io.flush().await?;
        read_head(io).await
    };
    let head = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            return Err(perr(
                format!("proxy {proxy} failed during CONNECT to {target}: {e}"),
                false,
            ));
        }
        Err(_) => {
            return Err(perr(
                format!(
                    "proxy {proxy} did not answer CONNECT to {target} within {} s",
                    timeout.as_secs()
                ),
                false,
            ));
        }
    };
    tunnel_verdict(proxy, &target, auth.is_some(), &head)
}

/// Reads the proxy's answer head byte by byte: nothing of the tunnel may be
/// consumed, and this happens once per connection.
async fn read_head(io: &mut BoxIo) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection",
            ));
        }
        head.push(byte[0]);
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("the proxy's answer is too long"));
        }
    }
    Ok(head)
}

/// What the status line of a proxy's answer to CONNECT means for us.
fn tunnel_verdict(
    proxy: &Proxy,
    target: &str,
    sent_auth: bool,
    head: &[u8],
) -> Result<(), NetError> {
    let perr = |detail: String, fatal: bool| NetError::Proxy {
        proxy: proxy.to_string(),
        detail,
        fatal,
    };
    let text = String::from_utf8_lossy(head);
    let status_line = text.lines().next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match code {
        200..=299 => Ok(()),
        // Any answer to CONNECT comes from the proxy itself. tinyproxy 1.11
        // answers wrong credentials with 401 rather than 407.
        407 => Err(proxy_auth_error(proxy, sent_auth)),
        401 if sent_auth => Err(proxy_auth_error(proxy, true)),
        0 => Err(perr(
            format!("proxy {proxy} sent an invalid answer to CONNECT: {status_line:?}"),
            false,
        )),
        // The proxy tried and failed (502, 503, 504): the target may be
        // down for a moment, so this is retried.
        500..=599 => Err(perr(
            format!(
                "proxy {proxy} could not reach {target}: {}",
                status_line.trim()
            ),
            false,
        )),
        _ => Err(perr(
            format!(
                "proxy {proxy} refused a tunnel to {target}: {} (some proxies allow CONNECT only to port 443)",
                status_line.trim()
            ),
            true,
        )),
    }
}

/// The error for a proxy's 407 (or tinyproxy's 401): wrong credentials if
/// we sent some, missing ones otherwise. Retrying cannot help either way.
fn proxy_auth_error(proxy: &Proxy, sent: bool) -> NetError {
    let detail = if sent {
        format!(
            "proxy {proxy} rejected the user name or password (407 Proxy Authentication Required): check the user:password in the proxy URL (percent-encode '@' as %40 and ':' as %3A)"
        )
    } else {
        format!(
            "proxy {proxy} requires authentication (407): put user:password in the proxy URL, e.g. http://user:pass@host:port"
        )
    };
    NetError::Proxy {
        proxy: proxy.to_string(),
        detail,
        fatal: true,
    }
}

/// A SOCKS5 session to `origin`: the name is resolved here for `socks5://`,
/// by the proxy for `socks5h://` (IP literals are sent as addresses either
/// way). With local resolution each address is tried in turn, as a direct
/// connection would (`localhost` may give `::1` first while the origin
/// listens on IPv4). Returns the stream and, for local resolution, the
/// address used.
async fn socks_connect(
    net: &Net,
    proxy: &Proxy,
    origin: &Origin,
) -> Result<(BoxIo, Option<String>), NetError> {
    let literal = origin.host.parse::<std::net::IpAddr>().ok();
    if let Some(ip) = literal {
        let target = tokio_socks::TargetAddr::Ip(SocketAddr::new(ip, origin.port));
        return Ok((
            socks_session(net, proxy, origin, target)
                .await
                .map_err(|f| f.0)?,
            None,
        ));
    }
    if proxy.kind == ProxyKind::Socks5h {
        let target = tokio_socks::TargetAddr::Domain(origin.host.clone().into(), origin.port);
        return Ok((
            socks_session(net, proxy, origin, target)
                .await
                .map_err(|f| f.0)?,
            None,
        ));
    }
    let addrs = resolve(&origin.host, origin.port).await.map_err(|mut e| {
        if let NetError::Dns { detail, .. } = &mut e {
            detail.push_str(
                " (with socks5:// names are resolved locally; socks5h:// lets the proxy resolve them)",
            );
        }
        e
    })?;
    let mut last = None;
    // A few addresses at most: each attempt is a new session with the proxy.
    for addr in addrs.into_iter().take(4) {
        match socks_session(net, proxy, origin, tokio_socks::TargetAddr::Ip(addr)).await {
            Ok(io) => return Ok((io, Some(format!("resolved locally to {}", addr.ip())))),
            Err(SocksFail(e, true)) => last = Some(e),
            Err(SocksFail(e, false)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| NetError::Dns {
        host: origin.host.clone(),
        detail: "no addresses".into(),
    }))
}

/// What a failed SOCKS5 negotiation means: the message for the user, whether
/// retrying can help, and whether another address of the name might work.
fn socks_failure(proxy: &Proxy, target: &str, e: tokio_socks::Error) -> SocksFail {
    use tokio_socks::Error as E;
    let unreachable = matches!(
        e,
        E::HostUnreachable | E::NetworkUnreachable | E::ConnectionRefused
    );
    let (detail, fatal) = match e {
        E::PasswordAuthFailure(_) => (
            format!(
                "SOCKS5 proxy {proxy} rejected the user name or password: check the user:password in the proxy URL (percent-encode '@' as %40 and ':' as %3A)"
            ),
            true,
        ),
        E::NoAcceptableAuthMethods | E::AuthorizationRequired => (
            format!(
                "SOCKS5 proxy {proxy} requires authentication: put user:password in the proxy URL, e.g. socks5h://user:pass@host:port"
            ),
            true,
        ),
        E::InvalidAuthValues(why) => (
            format!("SOCKS5 proxy {proxy}: unusable credentials ({why})"),
            true,
        ),
        E::HostUnreachable
        | E::NetworkUnreachable
        | E::ConnectionRefused
        | E::TtlExpired
        | E::GeneralSocksServerFailure => (
            format!("SOCKS5 proxy {proxy} could not reach {target}: {e}"),
            false,
        ),
        E::ConnectionNotAllowedByRuleset => (
            format!("SOCKS5 proxy {proxy} does not allow connections to {target}"),
            true,
        ),
        other => (format!("SOCKS5 proxy {proxy} failed: {other}"), false),
    };
    SocksFail(
        NetError::Proxy {
            proxy: proxy.to_string(),
            detail,
            fatal,
        },
        unreachable,
    )
}

/// A failed SOCKS5 session; `.1` is true when the proxy could not reach
/// the target address (another address of the same name may work).
struct SocksFail(NetError, bool);

/// One SOCKS5 negotiation over a new TCP connection to the proxy.
async fn socks_session(
    net: &Net,
    proxy: &Proxy,
    origin: &Origin,
    target: tokio_socks::TargetAddr<'static>,
) -> Result<BoxIo, SocksFail> {
    use tokio_socks::tcp::Socks5Stream;
    let opts = net.options();
    let tcp = tcp_connect(
        &proxy.host,
        proxy.port,
        opts.connect_timeout,
        opts.recv_buffer,
    )
    .await
    .map_err(|e| SocksFail(unreachable_proxy(proxy, e), false))?;
    let handshake = async {
        match &proxy.auth {
            Some((u, p)) => Socks5Stream::connect_with_password_and_socket(tcp, target, u, p).await,
            None => Socks5Stream::connect_with_socket(tcp, target).await,
        }
    };
    let target_s = origin.authority();
    match tokio::time::timeout(opts.connect_timeout, handshake).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(socks_failure(proxy, &target_s, e)),
        Err(_) => Err(SocksFail(
            NetError::Proxy {
                proxy: proxy.to_string(),
                detail: format!(
                    "SOCKS5 proxy {proxy} did not complete the handshake within {} s",
                    opts.connect_timeout.as_secs()
                ),
                fatal: false,
            },
            false,
        )),
    }
}
