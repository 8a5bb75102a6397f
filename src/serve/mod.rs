//! `hfd serve`: the repos of a Hugging Face cache folder served over HTTP
//! with the part of the Hub's API that clients use, so a lab downloads a
//! model once and its machines fetch it from a neighbour
//! (`HF_ENDPOINT=http://host:port`).
//!
//! Why a front end of its own beside [`crate::hub`]: the hub layer is a
//! client of the Hub, this is a small Hub. It reads the cache layout
//! huggingface_hub writes ([`cache`]), answers the Hub's routes
//! ([`routes`]) with its JSON ([`listing`]) and error codes ([`error`]),
//! and sends file bodies by `sendfile` with `Range` ([`range`], [`http`]).
//! Files are answered directly (200/206, never a redirect), with the
//! headers the Hub puts on a resolve answer (`ETag`, `X-Repo-Commit`,
//! `X-Linked-Etag`, `X-Linked-Size`), so huggingface_hub, hfd and curl
//! work unchanged. There is no Xet token route: clients take the plain
//! path.
//!
//! Safety: every name in a request is a name, never a path: the cache is
//! opened once and everything below it by handle, one component at a time,
//! without following links, except a snapshot's link into its own repo's
//! `blobs/` (see [`cache`]). Request heads and bodies are bounded
//! ([`http`]).
//!
//! Offline, only what is in the cache is served. With an upstream
//! ([`upstream`]), what the cache lacks is fetched from it by the engine
//! into the cache and served while it arrives ([`growing`]); gated and
//! private repos are served only to clients whose token upstream accepts.

pub mod cache;
pub mod error;
pub mod growing;
pub mod http;
pub mod listing;
pub mod range;
pub mod routes;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use cache::Cache;
pub use error::Error;
pub use upstream::{Upstream, UpstreamOptions};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;
/// How long requests in progress may take to finish after a stop.
const DRAIN: Duration = Duration::from_secs(5);

/// What to serve, and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub cache_dir: PathBuf,
    /// Tree entries per page (the Hub's 1,000).
    pub page_size: usize,
    /// One log line per request (at info level).
    pub log_requests: bool,
    /// Where the cache's misses are fetched from; `None`: offline.
    pub upstream: Option<UpstreamOptions>,
}

impl Options {
    pub fn new(listen: SocketAddr, cache_dir: PathBuf) -> Options {
        Options {
            listen,
            cache_dir,
            page_size: 1000,
            log_requests: false,
            upstream: None,
        }
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    cache: Cache,
    opts: Options,
    slots: Semaphore,
    upstream: Option<Upstream>,
}

impl Server {
    /// Opens the cache and binds the address (port 0: any free port).
    pub async fn bind(opts: Options) -> Result<Server, Error> {
        let cache = Cache::open(&opts.cache_dir)?;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.listen,
                source,
            })?;
        let mut opts = opts;
        if let Ok(a) = listener.local_addr() {
            opts.listen = a;
        }
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                upstream: opts
                    .upstream
                    .clone()
                    .map(|u| Upstream::new(u, opts.cache_dir.clone())),
                cache,
                opts,
                slots: Semaphore::new(MAX_CONNECTIONS),
            }),
        })
    }

    /// Upstream file downloads started so far (0 offline).
    pub fn upstream_fetches(&self) -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let shared = self.shared.clone();
        Arc::new(move || {
            shared
                .upstream
                .as_ref()
                .map_or(0, Upstream::fetches_started)
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }

    /// Serves until `stop` is cancelled; then stops accepting, lets answers
    /// in progress finish (at most 5 s) and returns.
    pub async fn run(self, stop: CancellationToken) -> Result<(), Error> {
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = self.shared.slots.acquire() => p.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    // Out of descriptors and the like: wait, do not spin.
                    Err(e) if is_transient(&e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(Error::Accept(e)),
                },
            };
            permit.forget();
            let shared = self.shared.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                connection(&shared, stream, peer, &stop).await;
                shared.slots.add_permits(1);
            });
        }
        drop(self.listener);
        let all = MAX_CONNECTIONS as u32;
        let _ = tokio::time::timeout(DRAIN, self.shared.slots.acquire_many(all)).await;
        if let Some(u) = &self.shared.upstream {
            u.stop(DRAIN).await;
        }
        Ok(())
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    !matches!(
        e.kind(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::PermissionDenied
    )
}

/// One connection: requests answered in order until the client closes,
/// asks to close, sends something unreadable, or the server stops.
async fn connection(
    shared: &Shared,
    mut stream: TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let base = format!("http://{}", shared.opts.listen);
    let mut buf = Vec::new();
    loop {
        let req = tokio::select! {
            _ = stop.cancelled() => return,
            r = http::read_request(&mut stream, &mut buf) => r,
        };
        let req = match req {
            Ok(r) => r,
            Err(http::ReadError::Gone) => return,
            Err(http::ReadError::Status(status, why)) => {
                let resp = error::ApiError::BadRequest(why).response();
                let resp = http::Response { status, ..resp };
                let _ = http::write_response(&mut stream, resp, false, false).await;
                log(shared, peer, "-", "-", status, 0, Instant::now());
                return;
            }
        };
        let started = Instant::now();
        let ctx = routes::Ctx {
            cache: &shared.cache,
            page_size: shared.opts.page_size,
            base: req
                .header("host")
                .filter(|h| valid_host(h))
                .map_or_else(|| base.clone(), |h| format!("http://{h}")),
        };
        let resp = match &shared.upstream {
            Some(up) => up.answer(&ctx, &req).await,
            None => routes::answer(&ctx, &req),
        };
        let status = resp.status;
        let keep = req.keep_alive && !stop.is_cancelled();
        let head_only = req.method == "HEAD";
        let sent = http::write_response(&mut stream, resp, head_only, keep).await;
        let bytes = *sent.as_ref().unwrap_or(&0);
        log(
            shared,
            peer,
            &req.method,
            &req.target,
            status,
            bytes,
            started,
        );
        if sent.is_err() || !keep {
            return;
        }
    }
}

/// A `Host` header fit to put in a URL: a name or address and a port.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

fn log(
    shared: &Shared,
    peer: SocketAddr,
    method: &str,
    target: &str,
    status: u16,
    bytes: u64,
    t: Instant,
) {
    if shared.opts.log_requests {
        let target: String = target
            .chars()
            .take(300)
            .filter(|c| !c.is_control())
            .collect();
        tracing::info!(
            "{peer} \"{method} {target}\" {status} {bytes} {:.1}ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
}
