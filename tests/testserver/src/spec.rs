//! What tests put on the server: files, redirects and dynamic handlers, and
//! the request record handlers and `requests()` hand back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::content::{Content, hex};
use super::faults::{Fail, Faults, SlowConns, Stall};
use super::semantics::{EmptyRange, query_param};

/// The bytes of a served file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Generated on the fly: any size, no memory.
    Generated(Content),
    /// Fixed bytes (small files, JSON, a file with a known hash).
    Static(Bytes),
}

impl Body {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Generated(c) => c.len(),
            Body::Static(b) => b.len() as u64,
        }
    }

    /// True for a zero-length body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `offset .. offset + n` (the caller keeps them inside the body).
    /// Static bodies are sliced without copying.
    pub(crate) fn chunk(&self, offset: u64, n: usize) -> Bytes {
        match self {
            Body::Generated(c) => {
                let mut buf = BytesMut::zeroed(n);
                c.fill(offset, &mut buf);
                buf.freeze()
            }
            Body::Static(b) => b.slice(offset as usize..offset as usize + n),
        }
    }

    /// SHA-256 of the whole body, lowercase hex.
    pub fn sha256_hex(&self) -> String {
        match self {
            Body::Generated(c) => c.sha256_hex(),
            Body::Static(b) => hex(&Sha256::digest(b)),
        }
    }

    /// The strong ETag a file gets when the test sets none: it changes
    /// whenever the bytes do, like a content hash would.
    pub fn default_etag(&self) -> String {
        match self {
            Body::Generated(c) => format!("\"{}-{}\"", c.seed(), c.len()),
            Body::Static(b) => format!("\"s{}-{}\"", &hex(&Sha256::digest(b))[..16], b.len()),
        }
    }
}

/// The `Last-Modified` a file gets when the test sets none. Fixed, so that
/// `If-Range` with a date is reproducible.
pub const DEFAULT_LAST_MODIFIED: &str = "Mon, 01 Jan 2024 00:00:00 GMT";

/// A file served at one path, with its validators and fault knobs.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub body: Body,
    /// `None`: `Body::default_etag()`. Give a `W/"..."` value to test weak
    /// tags.
    pub etag: Option<String>,
    /// `None`: `DEFAULT_LAST_MODIFIED`.
    pub last_modified: Option<String>,
    /// Extra response headers (`Content-Encoding`, `X-Linked-Etag`, ...),
    /// sent on 200/206/HEAD answers; they replace the server's own header
    /// of the same name, except `Content-Length`, which is ignored here.
    pub headers: Vec<(String, String)>,
    pub faults: Faults,
}

impl FileSpec {
    /// A file with the given body and no faults.
    pub fn new(body: Body) -> FileSpec {
        FileSpec {
            body,
            etag: None,
            last_modified: None,
            headers: Vec::new(),
            faults: Faults::default(),
        }
    }

    /// A generated file of `len` bytes (`Content::new(seed, len)`).
    pub fn generated(seed: u64, len: u64) -> FileSpec {
        FileSpec::new(Body::Generated(Content::new(seed, len)))
    }

    /// A file with fixed bytes.
    pub fn bytes(bytes: impl Into<Bytes>) -> FileSpec {
        FileSpec::new(Body::Static(bytes.into()))
    }

    /// File length in bytes.
    pub fn len(&self) -> u64 {
        self.body.len()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// SHA-256 of the file as first served (before any `change_after`).
    pub fn sha256_hex(&self) -> String {
        self.body.sha256_hex()
    }

    /// The ETag sent while the file is unchanged.
    pub fn current_etag(&self) -> String {
        self.etag
            .clone()
            .unwrap_or_else(|| self.body.default_etag())
    }

    pub fn etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into());
        self
    }
    pub fn last_modified(mut self, date: impl Into<String>) -> Self {
        self.last_modified = Some(date.into());
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Replaces all fault knobs at once.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
    pub fn ignore_range(mut self) -> Self {
        self.faults.ignore_range = true;
        self
    }
    pub fn chunked(mut self) -> Self {
        self.faults.chunked = true;
        self
    }
    pub fn throttle(mut self, bytes_per_sec: u64) -> Self {
        self.faults.throttle = Some(bytes_per_sec);
        self
    }
    pub fn slow_connections(mut self, every: u64, rate: u64) -> Self {
        self.faults.slow_connections = Some(SlowConns { every, rate });
        self
    }
    pub fn reset_after(mut self, bytes: u64, times: u32) -> Self {
        self.faults.reset_after = Some((bytes, times));
        self
    }
    pub fn truncate(mut self, bytes: u64, times: u32) -> Self {
        self.faults.truncate = Some((bytes, times));
        self
    }
    pub fn stall(mut self, at: u64, times: u32, for_: Option<Duration>) -> Self {
        self.faults.stall = Some(Stall { at, times, for_ });
        self
    }
    pub fn drip(mut self, bytes_per_sec: u64, times: u32) -> Self {
        self.faults.drip = Some((bytes_per_sec, times));
        self
    }
    pub fn fail(mut self, fail: Fail) -> Self {
        self.faults.fail = Some(fail);
        self
    }
    pub fn wrong_content_range(mut self, shift: i64, times: u32) -> Self {
        self.faults.wrong_content_range = Some((shift, times));
        self
    }
    pub fn corrupt(mut self, offset: u64, times: u32) -> Self {
        self.faults.corrupt = Some((offset, times));
        self
    }
    pub fn change_after(mut self, bytes_served: u64, new_seed: u64) -> Self {
        self.faults.change_after = Some((bytes_served, new_seed));
        self
    }
    pub fn require_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.faults.require_header = Some((name.into(), value.into()));
        self
    }
    pub fn omit_etag(mut self) -> Self {
        self.faults.omit_etag = true;
        self
    }
    pub fn omit_last_modified(mut self) -> Self {
        self.faults.omit_last_modified = true;
        self
    }
    pub fn empty_range(mut self, how: EmptyRange) -> Self {
        self.faults.empty_range = how;
        self
    }
}

/// A redirect route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// An absolute URL (possibly on another `TestServer`) or a path on this
    /// server (`/other`), sent as is in `Location`.
    pub to: String,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// When set, `Location` gets `expires=<unix millis>&sig=<signature>`
    /// appended, and whichever `TestServer` receives that URL answers 403
    /// "Request has expired" once the time has passed: a pre-signed CDN URL
    /// (S3, CloudFront, the Hugging Face xet bridge).
    pub expires_in: Option<Duration>,
    /// When set, `Location` gets `uses=<n>&nonce=<id>` (signed), and
    /// whichever `TestServer` receives that URL answers 403 "Request has
    /// expired" from its `n+1`-th request on: a signed URL that lives only
    /// a few requests, counted rather than timed (0: refused at once).
    pub uses: Option<u32>,
}

impl Redirect {
    pub fn new(to: impl Into<String>, status: u16) -> Redirect {
        Redirect {
            to: to.into(),
            status,
            expires_in: None,
            uses: None,
        }
    }
    /// 302 Found, what the Hub answers for LFS files.
    pub fn found(to: impl Into<String>) -> Redirect {
        Redirect::new(to, 302)
    }
    /// 307 Temporary Redirect, what the Hub answers for a renamed repo.
    pub fn temporary(to: impl Into<String>) -> Redirect {
        Redirect::new(to, 307)
    }
    /// 301 Moved Permanently.
    pub fn permanent(to: impl Into<String>) -> Redirect {
        Redirect::new(to, 301)
    }
    /// Makes the target a signed URL valid for `d`.
    pub fn expiring(mut self, d: Duration) -> Redirect {
        self.expires_in = Some(d);
        self
    }
    /// Makes each target URL handed out valid for `n` requests.
    pub fn expiring_after(mut self, n: u32) -> Redirect {
        self.uses = Some(n);
        self
    }
}

/// A dynamic answer: the handler decides status, headers and body.
/// `Content-Length` comes from the body; a handler's own `Content-Length`
/// is used only when answering HEAD (where no body is sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Send the body at this many bytes per second.
    pub pace: Option<u64>,
}

impl Reply {
    /// An empty answer with `status`.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            pace: None,
        }
    }
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }
    /// An `application/json` answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }
    /// Sends the body at `bytes_per_sec`.
    pub fn paced(mut self, bytes_per_sec: u64) -> Reply {
        self.pace = Some(bytes_per_sec.max(1));
        self
    }
}

/// A dynamic route. Called on the server thread; keep it quick.
pub type Handler = Arc<dyn Fn(&RequestInfo) -> Reply + Send + Sync>;

/// One request as the server saw it. Handlers get it before the answer
/// exists (`status` 0, `body_bytes` 0); `TestServer::requests()` returns it
/// with both filled in (`body_bytes` keeps growing while the body is sent).
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Per-server request serial number, from 0.
    pub id: u64,
    pub method: String,
    /// Path and query as received (`/a/b?x=1`).
    pub uri: String,
    /// Path only, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub version: http::Version,
    /// All request headers, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The `Range` header, if any (also in `headers`).
    pub range: Option<String>,
    /// Accept serial number of the connection, from 0 (see `SlowConns`).
    pub conn: u64,
    pub peer: SocketAddr,
    /// The TLS server name (SNI) the client asked for, on TLS connections.
    pub sni: Option<String>,
    /// When the request head arrived (tests check retry spacing with it).
    pub at: std::time::Instant,
    /// Status answered.
    pub status: u16,
    /// Response body bytes sent so far.
    pub body_bytes: u64,
    /// The request body; collected only for handler routes (up to 16 MiB).
    pub request_body: Bytes,
}

impl RequestInfo {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref().and_then(|q| query_param(q, name))
    }
}
