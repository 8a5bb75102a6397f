//! The server: its thread and runtime, routing, the file answer (ranges,
//! validators, faults), statistics and the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::body::{FileBody, Meter, Pace, ServerBody};
use super::conn::{ConnIo, ConnState, CutKind, RawSock, Schedule, Stream};
use super::content::Content;
use super::faults::Countdown;
use super::semantics::{
    RangeAnswer, http_date, if_range_matches, parse_range, resolve_range, unix_millis,
    url_signature,
};
use super::spec::{Body, DEFAULT_LAST_MODIFIED, FileSpec, Handler, Redirect, Reply, RequestInfo};
use crate::sync::lock;

/// Largest request body collected for a handler route.
const MAX_REQUEST_BODY: usize = 16 << 20;

/// How the server is set up. `ServerOptions::default()` is plain HTTP on
/// `127.0.0.1:0` speaking HTTP/1.1 and HTTP/2 (prior knowledge).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub bind: SocketAddr,
    /// Serve TLS with this configuration. ALPN decides between HTTP/1.1 and
    /// HTTP/2; when the configuration lists no ALPN protocols the server
    /// offers `h2` (if `http2`) and `http/1.1`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept HTTP/2: by prior knowledge on plain TCP, by ALPN with TLS.
    pub http2: bool,
    /// A cap on concurrent connections to the whole server. A per-IP cap
    /// is a property of a server (or its firewall), not of one file, and
    /// the refusal happens before any request names a path.
    pub max_connections: Option<ConnLimit>,
    /// Most requests kept for `requests()`; older ones are dropped first.
    pub request_log_limit: usize,
    /// Accept connections only from these peer addresses; others are closed
    /// right after accept, before a byte is read, and counted in
    /// `Stats::foreign_connections`. With a proxy that connects from
    /// `127.0.0.2`, an origin that allows only `127.0.0.2` makes a test fail
    /// if anything bypasses the proxy.
    pub allow_peers: Option<Vec<IpAddr>>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: None,
            http2: true,
            max_connections: None,
            request_log_limit: 100_000,
            allow_peers: None,
        }
    }
}

/// At most `max` connections at once; `over` says what happens to the
/// others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimit {
    pub max: usize,
    pub over: OverLimit,
}

/// What a connection beyond `ConnLimit::max` gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// Every request on it is answered `503` with `Connection: close`
    /// (HTTP/1.1 then closes; HTTP/2 drops the header and keeps answering
    /// 503 on that connection). These requests count in `Stats::requests`
    /// but are not in `requests()`.
    Respond503,
    /// Closed right after accept, before reading anything.
    Close,
}

/// A snapshot of the server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted (including refused ones).
    pub connections: u64,
    /// Connections refused by `max_connections`.
    pub refused_connections: u64,
    /// Connections closed because their peer is not in `allow_peers`
    /// (not counted in `connections`).
    pub foreign_connections: u64,
    pub requests: u64,
    /// Response body bytes handed to connections (headers not included),
    /// counted when a body's frame is produced.
    pub bytes_served: u64,
    /// Bytes written into the sockets (heads included), less what the
    /// kernel still held of them on open connections at their last write:
    /// what reached the client, as near as the server can tell, for tests
    /// that judge a client's pace by what the server delivered.
    pub bytes_delivered: u64,
    /// Responses with a body currently being sent.
    pub current_transfers: u64,
    /// Most responses with a body in flight at once.
    pub peak_transfers: u64,
    /// Per request path (without query).
    pub per_path: BTreeMap<String, PathStats>,
}

/// Counters of one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    pub requests: u64,
    pub bytes_served: u64,
}

/// Live counters, updated from the server thread, read from anywhere.
#[derive(Default)]
pub(crate) struct StatsInner {
    connections: AtomicU64,
    refused: AtomicU64,
    foreign: AtomicU64,
    requests: AtomicU64,
    pub(crate) bytes_served: AtomicU64,
    bytes_written: Arc<AtomicU64>,
    /// Connections whose kernel queues count against `bytes_written`.
    live: Mutex<Vec<std::sync::Weak<ConnState>>>,
    current: AtomicU64,
    peak: AtomicU64,
    per_path: Mutex<HashMap<String, Arc<PathCounters>>>,
}

#[derive(Default)]
pub(crate) struct PathCounters {
    requests: AtomicU64,
    pub(crate) bytes_served: AtomicU64,
}

impl StatsInner {
    pub(crate) fn transfer_started(&self) {
        let now = self.current.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }

    pub(crate) fn transfer_ended(&self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }

    /// Counts `conn`'s kernel queue in `bytes_delivered` while it lives.
    pub(crate) fn track(&self, conn: &Arc<ConnState>) {
        let mut live = lock(&self.live);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(conn));
    }

    fn delivered(&self) -> u64 {
        let held: u64 = lock(&self.live)
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|c| c.in_kernel.load(Ordering::Relaxed))
            .sum();
        self.bytes_written
            .load(Ordering::Relaxed)
            .saturating_sub(held)
    }

    fn path(&self, path: &str) -> Arc<PathCounters> {
        let mut map = lock(&self.per_path);
        map.entry(path.to_owned()).or_default().clone()
    }

    fn snapshot(&self) -> Stats {
        let per_path = lock(&self.per_path)
            .iter()
            .map(|(k, c)| {
                let s = PathStats {
                    requests: c.requests.load(Ordering::Relaxed),
                    bytes_served: c.bytes_served.load(Ordering::Relaxed),
                };
                (k.clone(), s)
            })
            .filter(|(_, s)| *s != PathStats::default())
            .collect();
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            refused_connections: self.refused.load(Ordering::Relaxed),
            foreign_connections: self.foreign.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            bytes_delivered: self.delivered(),
            current_transfers: self.current.load(Ordering::Relaxed),
            peak_transfers: self.peak.load(Ordering::Relaxed),
            per_path,
        }
    }

    /// Zeroes the counters. Path entries are zeroed rather than removed, so
    /// a body still in flight keeps counting into the live entry.
    fn reset(&self) {
        for c in [
            &self.connections,
            &self.refused,
            &self.foreign,
            &self.requests,
            &self.bytes_served,
            &self.bytes_written,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.peak
            .store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
        for c in lock(&self.per_path).values() {
            c.requests.store(0, Ordering::Relaxed);
            c.bytes_served.store(0, Ordering::Relaxed);
        }
    }
}

/// A file route with its run-time fault state.
pub(crate) struct FileEntry {
    spec: FileSpec,
    /// The ETag while unchanged, computed once: for a static body it is a
    /// hash of the bytes, too slow to redo per request.
    etag: String,
    served: AtomicU64,
    /// Set once `change_after` fires: the new `Last-Modified`.
    changed: OnceLock<String>,
    reset: Countdown,
    truncate: Countdown,
    stall: Countdown,
    drip: Countdown,
    fail: Countdown,
    /// Requests still to let through before `fail` starts.
    fail_after: Countdown,
    wrong_range: Countdown,
    corrupt: Countdown,
}

/// What a file route serves right now (it changes after `change_after`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    pub body: Body,
    /// `None` when `omit_etag` is set.
    pub etag: Option<String>,
    /// `None` when `omit_last_modified` is set.
    pub last_modified: Option<String>,
    /// True once `change_after` has fired.
    pub changed: bool,
}

impl FileEntry {
    fn new(spec: FileSpec) -> FileEntry {
        let f = &spec.faults;
        FileEntry {
            reset: Countdown::new(f.reset_after.map(|x| x.1)),
            truncate: Countdown::new(f.truncate.map(|x| x.1)),
            stall: Countdown::new(f.stall.map(|x| x.times)),
            drip: Countdown::new(f.drip.map(|x| x.1)),
            fail: Countdown::new(f.fail.as_ref().map(|x| x.times)),
            fail_after: Countdown::new(f.fail.as_ref().map(|x| x.after)),
            wrong_range: Countdown::new(f.wrong_content_range.map(|x| x.1)),
            corrupt: Countdown::new(f.corrupt.map(|x| x.1)),
            served: AtomicU64::new(0),
            changed: OnceLock::new(),
            etag: spec.current_etag(),
            spec,
        }
    }

    pub(crate) fn add_served(&self, n: u64) {
        let Some((threshold, _)) = self.spec.faults.change_after else {
            return;
        };
        let total = self.served.fetch_add(n, Ordering::AcqRel) + n;
        if total >= threshold && self.changed.get().is_none() {
            let secs = unix_millis() / 1000;
            let _ = self.changed.set(http_date(secs));
        }
    }

    fn view(&self) -> FileView {
        let spec = &self.spec;
        let f = &spec.faults;
        let (body, etag, last_modified, changed) = match (f.change_after, self.changed.get()) {
            (Some((_, new_seed)), Some(date)) => {
                let body = Body::Generated(Content::new(new_seed, spec.len()));
                let etag = match &spec.etag {
                    Some(custom) => changed_etag(custom),
                    None => body.default_etag(),
                };
                (body, etag, date.clone(), true)
            }
            _ => (
                spec.body.clone(),
                self.etag.clone(),
                spec.last_modified
                    .clone()
                    .unwrap_or_else(|| DEFAULT_LAST_MODIFIED.to_owned()),
                false,
            ),
        };
        FileView {
            body,
            etag: (!f.omit_etag).then_some(etag),
            last_modified: (!f.omit_last_modified).then_some(last_modified),
            changed,
        }
    }
}

/// A test-chosen ETag after `change_after`: the same tag with `-changed`
/// inside the quotes, keeping a `W/` prefix.
fn changed_etag(custom: &str) -> String {
    let (weak, tag) = match custom.strip_prefix("W/") {
        Some(rest) => ("W/", rest),
        None => ("", custom),
    };
    format!("{weak}\"{}-changed\"", tag.trim_matches('"'))
}

#[derive(Default)]
struct Routes {
    files: HashMap<String, Arc<FileEntry>>,
    redirects: HashMap<String, Redirect>,
    /// Prefix handlers; the longest matching prefix wins.
    handlers: Vec<(String, Handler)>,
}

enum Route {
    File(Arc<FileEntry>),
    Redirect(Redirect),
    Handler(Handler),
    NotFound,
}

struct LogEntry {
    info: RequestInfo,
    body_bytes: Arc<AtomicU64>,
}

/// Everything the server thread and the `TestServer` handle share.
pub(crate) struct Shared {
    routes: RwLock<Routes>,
    stats: Arc<StatsInner>,
    log: Mutex<VecDeque<LogEntry>>,
    log_limit: usize,
    conn_serial: AtomicU64,
    request_serial: AtomicU64,
    /// Requests seen per nonce of URLs signed for a number of uses.
    signed_uses: Mutex<HashMap<String, u32>>,
    active_connections: AtomicUsize,
}

fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// A local HTTP(S) server for tests, demos and benchmarks. It runs on its
/// own thread with its own single-threaded tokio runtime, so it works from
/// sync tests and from tests that block on a child process. Dropping it
/// stops the server and closes every connection.
pub struct TestServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    /// Stops the server when dropped.
    _thread: ServerThread,
}

impl TestServer {
    /// A plain HTTP server on `127.0.0.1` with a free port.
    ///
    /// # Panics
    /// If the server cannot start (no free port, no threads).
    pub fn start() -> TestServer {
        TestServer::start_with(ServerOptions::default())
    }

    /// A server with the given options.
    ///
    /// # Panics
    /// If the server cannot start; see `try_start_with`.
    pub fn start_with(opts: ServerOptions) -> TestServer {
        TestServer::try_start_with(opts).expect("cannot start the test server")
    }

    /// A server with the given options, or why it could not start (the
    /// address is taken, say).
    pub fn try_start_with(opts: ServerOptions) -> io::Result<TestServer> {
        let shared = Arc::new(Shared {
            routes: RwLock::new(Routes::default()),
            stats: Arc::new(StatsInner::default()),
            log: Mutex::new(VecDeque::new()),
            log_limit: opts.request_log_limit,
            conn_serial: AtomicU64::new(0),
            request_serial: AtomicU64::new(0),
            signed_uses: Mutex::new(HashMap::new()),
            active_connections: AtomicUsize::new(0),
        });
        let tls = opts.tls.is_some();
        let thread_shared = shared.clone();
        let bind = opts.bind;
        let thread = ServerThread::spawn("testserver", bind, move |listener, shutdown| {
            accept_loop(listener, thread_shared, opts, shutdown)
        })?;
        Ok(TestServer {
            addr: thread.addr,
            tls,
            shared,
            _thread: thread,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when serving TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS; `[::1]` when bound to
    /// IPv6). The host is the IP literal: that needs no name resolution
    /// (`localhost` may resolve to `::1` first while we listen on IPv4), and
    /// rustls checks IP literals against IP-address SANs, so a test
    /// certificate for `["localhost", "127.0.0.1"]` verifies. Use
    /// `url_with_host("localhost", ..)` to exercise name-based checks.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `base_url()` + `path` (a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), normalize(path))
    }

    /// Like `url` with another host name in front of the port.
    pub fn url_with_host(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{}", self.addr.port(), normalize(path))
    }

    /// Serves `spec` at `path` (replacing whatever was there, fault counters
    /// included). Takes effect for the next request.
    pub fn add_file(&self, path: &str, spec: FileSpec) {
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let path = normalize(path);
        routes.redirects.remove(&path);
        routes.files.insert(path, Arc::new(FileEntry::new(spec)));
    }

    /// Answers requests for `path` with a redirect.
    pub fn add_redirect(&self, path: &str, redirect: Redirect) {
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let path = normalize(path);
        routes.files.remove(&path);
        routes.redirects.insert(path, redirect);
    }

    /// Answers every path starting with `prefix` (and not served by a file
    /// or redirect route) with `handler`. The longest prefix wins.
    pub fn add_handler(&self, prefix: &str, handler: Handler) {
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let prefix = normalize(prefix);
        routes.handlers.retain(|(p, _)| *p != prefix);
        routes.handlers.push((prefix, handler));
        routes
            .handlers
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    /// `add_handler` taking a closure.
    pub fn add_handler_fn(
        &self,
        prefix: &str,
        handler: impl Fn(&RequestInfo) -> Reply + Send + Sync + 'static,
    ) {
        self.add_handler(prefix, Arc::new(handler));
    }

    /// Removes the file, redirect or handler registered at exactly `path`.
    /// Returns whether something was removed.
    pub fn remove(&self, path: &str) -> bool {
        let mut routes = self
            .shared
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let path = normalize(path);
        let before = routes.handlers.len();
        routes.handlers.retain(|(p, _)| *p != path);
        routes.files.remove(&path).is_some()
            | routes.redirects.remove(&path).is_some()
            | (routes.handlers.len() != before)
    }

    /// What the file route at `path` serves now (after any
    /// `change_after`), or `None` if there is no file there.
    pub fn file(&self, path: &str) -> Option<FileView> {
        let routes = self.shared.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.files.get(&normalize(path)).map(|f| f.view())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// The requests received so far, oldest first, with the status answered
    /// and the body bytes sent up to now.
    pub fn requests(&self) -> Vec<RequestInfo> {
        lock(&self.shared.log)
            .iter()
            .map(|e| {
                let mut info = e.info.clone();
                info.body_bytes = e.body_bytes.load(Ordering::Relaxed);
                info
            })
            .collect()
    }

    /// Zeroes the counters and clears the request log. Connection serial
    /// numbers keep counting (they select `SlowConns`), and transfers in
    /// flight stay in `current_transfers`.
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
        lock(&self.shared.log).clear();
    }
}

/// A listener served on its own thread and single-threaded runtime, so
/// sync tests (and tests that wait on a child process) can use it. Dropping
/// it stops the accept loop and, with the runtime, every connection task.
pub(crate) struct ServerThread {
    pub(crate) addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `bind` on a new thread named `name` and runs `serve(listener,
    /// shutdown)` there; returns once the address is known (or why not).
    pub(crate) fn spawn<F, Fut>(name: &str, bind: SocketAddr, serve: F) -> io::Result<ServerThread>
    where
        F: FnOnce(TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match listen(bind) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr());
                    serve(listener, shutdown_rx).await;
                });
                // Dropping the runtime here drops every connection task.
            })?;
        match ready_rx.recv() {
            Ok(Ok(addr)) => Ok(ServerThread {
                addr,
                shutdown: Some(shutdown_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(format!(
                    "{name} thread died while starting"
                )))
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Binds with a deep accept backlog: benchmarks open many connections at
/// once, and the default of 128 would turn a burst into SYN retries.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    opts: ServerOptions,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let tls = opts.tls.map(|cfg| {
        let cfg = if cfg.alpn_protocols.is_empty() {
            let mut c = (*cfg).clone();
            if opts.http2 {
                c.alpn_protocols.push(b"h2".to_vec());
            }
            c.alpn_protocols.push(b"http/1.1".to_vec());
            Arc::new(c)
        } else {
            cfg
        };
        TlsAcceptor::from(cfg)
    });
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of
                // spinning, the condition is usually transient.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(allowed) = &opts.allow_peers
            && !allowed.contains(&peer.ip())
        {
            shared.stats.foreign.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let serial = shared.conn_serial.fetch_add(1, Ordering::Relaxed);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let admitted = match opts.max_connections {
            None => {
                shared.active_connections.fetch_add(1, Ordering::AcqRel);
                true
            }
            Some(limit) => shared
                .active_connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit.max).then_some(n + 1)
                })
                .is_ok(),
        };
        if !admitted {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            if opts.max_connections.map(|l| l.over) == Some(OverLimit::Close) {
                drop(stream);
                continue;
            }
        }
        let conn = Arc::new(ConnState::new(serial, peer));
        tokio::spawn(serve_connection(
            stream,
            conn,
            shared.clone(),
            tls.clone(),
            opts.http2,
            admitted,
        ));
    }
}

/// Releases a connection slot when its task ends, however it ends.
struct SlotGuard(Arc<Shared>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection(
    stream: TcpStream,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    http2: bool,
    admitted: bool,
) {
    let _slot = admitted.then(|| SlotGuard(shared.clone()));
    let sock = RawSock::of(&stream);
    enum Proto {
        H1,
        H2,
        Auto,
    }
    let (inner, proto) = match tls {
        None => (
            Stream::Plain(stream),
            if http2 { Proto::Auto } else { Proto::H1 },
        ),
        Some(acceptor) => {
            let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
            if let Some(name) = s.get_ref().1.server_name() {
                let _ = conn.sni.set(name.to_string());
            }
            (
                Stream::Tls(Box::new(s)),
                if h2 { Proto::H2 } else { Proto::H1 },
            )
        }
    };
    let io = TokioIo::new(ConnIo {
        inner,
        state: conn.clone(),
        written: shared.stats.bytes_written.clone(),
        sock,
    });
    shared.stats.track(&conn);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header timeout: a test server should not hang up on a slow
    // client, and hyper needs a timer for one.
    builder.http1().header_read_timeout(None);
    let builder = match proto {
        Proto::H1 => builder.http1_only(),
        Proto::H2 => builder.http2_only(),
        Proto::Auto => builder,
    };
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let conn = service_conn.clone();
        async move {
            if admitted {
                Ok::<_, Infallible>(handle(req, shared, conn).await)
            } else {
                Ok(refuse(&shared))
            }
        }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    // While the connection lives, what the kernel holds of its writes is
    // read every 50 ms here, where the socket is surely open, so
    // `bytes_delivered` follows the wire even while hyper waits to write.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let kind = loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            kind = conn.cut_ready() => break kind,
            _ = tick.tick() => {
                let held = sock.unsent().unwrap_or(0) as u64;
                conn.in_kernel.store(held, Ordering::Relaxed);
            }
        }
    };
    match kind {
        CutKind::Reset => {
            sock.drain_send_queue(Duration::from_secs(2)).await;
            sock.set_abortive_close();
        }
        CutKind::Truncate => {
            sock.shutdown_write();
            // Keep reading for a moment so that data the client still sends
            // is consumed; closing with unread input would turn our clean
            // FIN into a RST.
            let _ = tokio::time::timeout(Duration::from_secs(2), connection.as_mut()).await;
        }
    }
    // Dropping `connection` closes the socket.
}

fn refuse(shared: &Shared) -> Response<ServerBody> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let mut resp = Response::new(ServerBody::Empty);
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Per-request context for building the answer.
struct Ctx {
    shared: Arc<Shared>,
    path: Arc<PathCounters>,
    body_bytes: Arc<AtomicU64>,
    conn: Arc<ConnState>,
}

impl Ctx {
    fn meter(&self, file: Option<Arc<FileEntry>>, has_body: bool) -> Meter {
        Meter::new(
            self.shared.stats.clone(),
            self.path.clone(),
            self.body_bytes.clone(),
            file,
            has_body,
        )
    }

    /// A small fixed answer.
    fn simple(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<ServerBody> {
        let body = body.into();
        let meter = self.meter(None, !body.is_empty());
        let mut resp = Response::new(ServerBody::full(body, meter));
        *resp.status_mut() = status_code(status);
        for (k, v) in headers {
            append_header(&mut resp, k, v);
        }
        resp
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Adds a header given as strings; invalid names or values (from a test's
/// configuration) are skipped rather than panicking the server thread.
fn append_header(resp: &mut Response<ServerBody>, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().append(n, v);
    }
}

async fn handle(
    req: http::Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
) -> Response<ServerBody> {
    let id = shared.request_serial.fetch_add(1, Ordering::Relaxed);
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let mut info = RequestInfo {
        id,
        method: parts.method.as_str().to_owned(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned()),
        path: path.clone(),
        query,
        version: parts.version,
        range: parts
            .headers
            .get(header::RANGE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        headers,
        conn: conn.serial,
        peer: conn.peer,
        sni: conn.sni.get().cloned(),
        at: std::time::Instant::now(),
        status: 0,
        body_bytes: 0,
        request_body: Bytes::new(),
    };
    let path_counters = shared.stats.path(&path);
    path_counters.requests.fetch_add(1, Ordering::Relaxed);
    let ctx = Ctx {
        shared: shared.clone(),
        path: path_counters,
        body_bytes: Arc::new(AtomicU64::new(0)),
        conn,
    };

    let mut resp = match check_signature(&info, &shared) {
        Some(reason) => ctx.simple(403, &[("content-type", "text/plain")], reason),
        None => {
            let route = {
                let routes = shared.routes.read().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = routes.files.get(&path) {
                    Route::File(f.clone())
                } else if let Some(r) = routes.redirects.get(&path) {
                    Route::Redirect(r.clone())
                } else if let Some((_, h)) = routes
                    .handlers
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                {
                    Route::Handler(h.clone())
                } else {
                    Route::NotFound
                }
            };
            match route {
                Route::File(f) => serve_file(&ctx, &info, &parts.method, f),
                Route::Redirect(r) => {
                    let location = redirect_location(&r);
                    ctx.simple(r.status, &[("location", &location)], Bytes::new())
                }
                Route::Handler(h) => {
                    match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
                        .collect()
                        .await
                    {
                        Ok(collected) => {
                            info.request_body = collected.to_bytes();
                            reply(&ctx, h(&info), parts.method == Method::HEAD)
                        }
                        Err(_) => ctx.simple(413, &[], "request body too large or broken\n"),
                    }
                }
                Route::NotFound => {
                    ctx.simple(404, &[("content-type", "text/plain")], "not found\n")
                }
            }
        }
    };

    if parts.method == Method::HEAD {
        strip_body(&mut resp);
    }
    info.status = resp.status().as_u16();
    let mut log = lock(&shared.log);
    log.push_back(LogEntry {
        info,
        body_bytes: ctx.body_bytes.clone(),
    });
    while log.len() > shared.log_limit {
        log.pop_front();
    }
    resp
}

/// A HEAD answer sends no body; dropping it here (rather than trusting
/// hyper to skip it) keeps `bytes_served` and the transfer counters exact,
/// and keeps the length the GET would have had.
fn strip_body(resp: &mut Response<ServerBody>) {
    if matches!(resp.body(), ServerBody::Empty) {
        return;
    }
    let len = hyper::body::Body::size_hint(resp.body()).exact();
    *resp.body_mut() = ServerBody::Empty;
    if let Some(len) = len
        && !resp.headers().contains_key(header::CONTENT_LENGTH)
    {
        append_header(resp, "content-length", &len.to_string());
    }
}

/// For a request carrying `expires` and `sig`: why it must be refused, if
/// it must (tampered signature, past its expiry, or its uses spent).
fn check_signature(info: &RequestInfo, shared: &Shared) -> Option<&'static str> {
    let expires = info.query_param("expires")?;
    let sig = info.query_param("sig")?;
    let Ok(expires_ms) = expires.parse::<u64>() else {
        return Some("Signature does not match");
    };
    let uses = info.query_param("uses");
    let nonce = info.query_param("nonce").unwrap_or_default();
    if url_signature(
        &signed_part(&info.path, uses.as_deref(), &nonce),
        expires_ms,
    ) != sig
    {
        return Some("Signature does not match");
    }
    if unix_millis() > expires_ms {
        return Some("Request has expired");
    }
    let allowed: u32 = uses?.parse().ok()?;
    let mut seen = lock(&shared.signed_uses);
    let n = seen.entry(nonce).or_insert(0);
    *n += 1;
    (*n > allowed).then_some("Request has expired")
}

/// What a signature covers: the path, and the number of uses with its nonce.
fn signed_part(path: &str, uses: Option<&str>, nonce: &str) -> String {
    match uses {
        Some(u) => format!("{path}\nuses={u}\nnonce={nonce}"),
        None => path.to_owned(),
    }
}

/// Nonces of URLs signed for a number of uses, unique in the process.
static NONCES: AtomicU64 = AtomicU64::new(0);

/// The `Location` of a redirect, signed when it expires.
fn redirect_location(r: &Redirect) -> String {
    signed_url(&r.to, r.expires_in, r.uses)
}

/// `to` signed to expire after `expires_in` and/or `uses` requests (as is
/// without either): what any `TestServer` receiving it checks.
pub(crate) fn signed_url(to: &str, expires_in: Option<Duration>, uses: Option<u32>) -> String {
    let r = Redirect {
        to: to.to_owned(),
        status: 302,
        expires_in,
        uses,
    };
    if r.expires_in.is_none() && r.uses.is_none() {
        return r.to;
    }
    // Counted uses alone: valid for a day, as far as time goes.
    let valid_for = r.expires_in.unwrap_or(Duration::from_secs(86_400));
    let expires = unix_millis() + valid_for.as_millis() as u64;
    let path = match url::Url::parse(&r.to) {
        Ok(u) => u.path().to_owned(),
        // A path on this server: everything before the query.
        Err(_) => r.to.split(['?', '#']).next().unwrap_or("").to_owned(),
    };
    let sep = if r.to.contains('?') { '&' } else { '?' };
    let (uses, nonce, counted) = match r.uses {
        Some(u) => {
            let nonce = NONCES.fetch_add(1, Ordering::Relaxed).to_string();
            let q = format!("uses={u}&nonce={nonce}&");
            (Some(u.to_string()), nonce, q)
        }
        None => (None, String::new(), String::new()),
    };
    format!(
        "{}{sep}{counted}expires={expires}&sig={}",
        r.to,
        url_signature(&signed_part(&path, uses.as_deref(), &nonce), expires)
    )
}

fn reply(ctx: &Ctx, r: Reply, head: bool) -> Response<ServerBody> {
    let has_length = r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    // hyper derives Content-Length from the body and (in debug builds)
    // asserts that a header set by hand agrees. So: on GET the body decides
    // and a handler's own value is dropped; on HEAD no body is sent and the
    // handler's value, if any, describes the GET (a mock Hub's
    // `X-Linked-Size` style answers need that).
    let body_len = r.body.len();
    let body = if head {
        ServerBody::Empty
    } else if let Some(rate) = r.pace {
        ServerBody::paced(r.body, rate, ctx.meter(None, body_len > 0))
    } else {
        ServerBody::full(r.body, ctx.meter(None, body_len > 0))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status_code(r.status);
    for (k, v) in &r.headers {
        if !head && k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        append_header(&mut resp, k, v);
    }
    if head && !has_length {
        append_header(&mut resp, "content-length", &body_len.to_string());
    }
    resp
}

/// The answer for a file route: faults that replace the answer first, then
/// ranges and validators, then the faults that shape the body.
fn serve_file(
    ctx: &Ctx,
    info: &RequestInfo,
    method: &Method,
    file: Arc<FileEntry>,
) -> Response<ServerBody> {
    let f = &file.spec.faults;
    if let Some((name, value)) = &f.require_header
        && info.header(name) != Some(value.as_str())
    {
        return ctx.simple(
            401,
            &[
                ("www-authenticate", "Bearer realm=\"testserver\""),
                ("content-type", "text/plain"),
            ],
            "Unauthorized\n",
        );
    }
    if let Some(fail) = &f.fail
        && !file.fail_after.take()
        && file.fail.take()
    {
        let mut resp = ctx.simple(
            fail.status,
            &[("content-type", "text/plain")],
            "injected failure\n",
        );
        if let Some(ra) = &fail.retry_after {
            append_header(&mut resp, "retry-after", ra);
        }
        for (k, v) in &fail.headers {
            append_header(&mut resp, k, v);
        }
        return resp;
    }
    let head = *method == Method::HEAD;
    if !head && *method != Method::GET {
        return ctx.simple(405, &[("allow", "GET, HEAD")], Bytes::new());
    }

    let view = file.view();
    let len = view.body.len();
    let answer = match &info.range {
        _ if f.ignore_range => RangeAnswer::Full,
        None => RangeAnswer::Full,
        Some(range) => match info.header("if-range") {
            Some(cond)
                if !if_range_matches(cond, view.etag.as_deref(), view.last_modified.as_deref()) =>
            {
                RangeAnswer::Full
            }
            _ => resolve_range(parse_range(range), len, f.empty_range),
        },
    };

    let mut validators: Vec<(&str, &str)> = Vec::new();
    if let Some(e) = &view.etag {
        validators.push(("etag", e));
    }
    if let Some(lm) = &view.last_modified {
        validators.push(("last-modified", lm));
    }

    let (status, start, n, content_range) = match answer {
        RangeAnswer::Unsatisfiable => {
            let mut headers = validators.clone();
            let cr = format!("bytes */{len}");
            headers.push(("content-range", &cr));
            headers.push(("content-type", "text/plain"));
            return ctx.simple(416, &headers, "Requested range not satisfiable\n");
        }
        RangeAnswer::Full => (200, 0, len, None),
        RangeAnswer::Partial { start, end } => {
            let n = end - start + 1;
            let start = match f.wrong_content_range {
                Some((shift, _)) if !head && file.wrong_range.take() => {
                    (start as i128 + shift as i128).clamp(0, (len - n) as i128) as u64
                }
                _ => start,
            };
            let cr = format!("bytes {}-{}/{len}", start, start + n - 1);
            (206, start, n, Some(cr))
        }
    };

    let has_body = !head && n > 0;
    let body = if has_body {
        let cut = match (f.reset_after, f.truncate) {
            (Some((after, _)), _) if n > after && file.reset.take() => {
                Some((after, CutKind::Reset))
            }
            (_, Some((after, _))) if n > after && file.truncate.take() => {
                Some((after, CutKind::Truncate))
            }
            _ => None,
        };
        let covers = |at: u64| (start..start + n).contains(&at);
        let stall = f
            .stall
            .filter(|s| covers(s.at) && file.stall.take())
            .map(|s| (s.at, s.for_));
        let corrupt = f
            .corrupt
            .filter(|c| covers(c.0) && file.corrupt.take())
            .map(|c| c.0);
        let pace = match (f.drip, f.slow_connections, f.throttle) {
            (Some((rate, _)), _, _) if file.drip.take() => Some(Pace::Own(Schedule::new(), rate)),
            (_, Some(slow), _) if slow.applies_to(ctx.conn.serial) => {
                Some(Pace::Connection(slow.rate))
            }
            (_, _, Some(rate)) => Some(Pace::Connection(rate)),
            _ => None,
        };
        ServerBody::File(Box::new(FileBody {
            source: view.body.clone(),
            pos: start,
            end: start + n,
            sent: 0,
            chunked: f.chunked,
            corrupt,
            stall,
            cut,
            pace,
            conn: ctx.conn.clone(),
            meter: ctx.meter(Some(file.clone()), true),
            sleep: None,
            booked: None,
            halted: false,
        }))
    } else {
        ServerBody::Empty
    };

    let mut resp = Response::new(body);
    *resp.status_mut() = status_code(status);
    if !f.ignore_range {
        append_header(&mut resp, "accept-ranges", "bytes");
    }
    for (k, v) in &validators {
        append_header(&mut resp, k, v);
    }
    append_header(&mut resp, "content-type", "application/octet-stream");
    if let Some(cr) = &content_range {
        append_header(&mut resp, "content-range", cr);
    }
    if !f.chunked {
        append_header(&mut resp, "content-length", &n.to_string());
    }
    // The file's own headers replace ours of the same name (another
    // Content-Type, say). Content-Length is the exception: it frames the
    // body, and a wrong one would break the connection rather than test a
    // client.
    for (k, _) in &file.spec.headers {
        if !k.eq_ignore_ascii_case("content-length")
            && let Ok(name) = HeaderName::from_bytes(k.as_bytes())
        {
            resp.headers_mut().remove(name);
        }
    }
    for (k, v) in &file.spec.headers {
        if !k.eq_ignore_ascii_case("content-length") {
            append_header(&mut resp, k, v);
        }
    }
    resp
}
