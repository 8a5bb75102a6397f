//! One ranged GET, redirects followed by hand, and what its answer means.
//!
//! Redirects are followed here rather than by a client library so that every
//! hop is routed by its own host (a storage host behind a redirect gets the
//! proxy decision for *its* name), credentials go only to the origin the user
//! named, and the final URL is remembered for the next segments.

use std::time::{Duration, Instant};

use crate::net::Body;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, HeaderValue, IF_RANGE, LOCATION, RANGE, USER_AGENT};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use url::Url;

use super::error::{Error, GaveUpKind};
use super::source::Source;
use crate::net::{Conn, Net, NetError, redact_url};

/// At most this many redirects, as aria2c and browsers allow.
pub const MAX_REDIRECTS: usize = 20;

/// Bytes `start..end` (`end` exclusive; `None` = to the end of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    /// The bounded range `r`.
    pub fn of(r: &std::ops::Range<u64>) -> ByteRange {
        ByteRange {
            start: r.start,
            end: Some(r.end),
        }
    }

    fn header(&self) -> String {
        match self.end {
            Some(e) => format!("bytes={}-{}", self.start, e - 1),
            None => format!("bytes={}-", self.start),
        }
    }
}

/// A redirect answer on the way to the data.
#[derive(Clone, Debug)]
pub struct Hop {
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
}

/// The final answer of a request, and how we got there.
pub struct Fetched {
    pub response: Response<Body>,
    pub url: Url,
    pub hops: Vec<Hop>,
    pub ttfb: Duration,
}

/// Why a request did not give usable data.
#[derive(Debug)]
pub enum Failure {
    /// Try again later, on a new connection.
    Retry {
        kind: GaveUpKind,
        detail: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        /// 429/503: the server wants fewer connections.
        overloaded: bool,
    },
    /// The redirect target refused or expired: resolve again from the original URL.
    Expired { detail: String, status: u16 },
    /// Nothing to retry: the download (from this source) cannot succeed.
    Fatal(Error),
}

impl Failure {
    pub fn retry(kind: GaveUpKind, detail: impl Into<String>) -> Failure {
        Failure::Retry {
            kind,
            detail: detail.into(),
            status: None,
            retry_after: None,
            overloaded: false,
        }
    }

    pub fn from_net(e: NetError) -> Failure {
        if !e.is_retryable() {
            return Failure::Fatal(Error::Net(e));
        }
        let kind = match &e {
            NetError::Dns { .. } => GaveUpKind::Dns,
            NetError::Proxy { .. } => GaveUpKind::Proxy,
            NetError::Tls { .. } => GaveUpKind::Tls,
            NetError::ResponseTimeout { .. } => GaveUpKind::Timeout,
            _ => GaveUpKind::Network,
        };
        Failure::retry(kind, e.to_string())
    }
}

/// Sends `GET url` for `range`, following redirects, reusing `conn` when it
/// can carry the request and leaving in `conn` the connection the final
/// answer came on.
pub async fn fetch(
    net: &Net,
    source: &Source,
    url: Url,
    range: ByteRange,
    if_range: Option<&str>,
    conn: &mut Option<Conn>,
) -> Result<Fetched, Failure> {
    fetch_inner(net, source, url, Some(range), if_range, conn).await
}

/// Sends a plain `GET url` (no `Range`), following redirects with the same
/// rules as [`fetch`]: every hop routed by its own host, credentials only to
/// the source's origin. For small API answers (hfd's repo info and tree
/// pages), where a ranged request would be wrong.
pub async fn fetch_whole(
    net: &Net,
    source: &Source,
    url: Url,
    conn: &mut Option<Conn>,
) -> Result<Fetched, Failure> {
    fetch_inner(net, source, url, None, None, conn).await
}

async fn fetch_inner(
    net: &Net,
    source: &Source,
    url: Url,
    range: Option<ByteRange>,
    if_range: Option<&str>,
    conn: &mut Option<Conn>,
) -> Result<Fetched, Failure> {
    let started = Instant::now();
    let mut url = url;
    let mut hops = Vec::new();
    loop {
        if !conn.as_ref().is_some_and(|c| c.can_serve(&url, net)) {
            *conn = None;
            *conn = Some(net.connect(&url).await.map_err(Failure::from_net)?);
        }
        let c = conn.as_mut().expect("connected above");
        let headers = request_headers(net, source, &url, range, if_range);
        let response = match c.get(&url, headers).await {
            Ok(r) => r,
            Err(e) => {
                *conn = None;
                return Err(Failure::from_net(e));
            }
        };
        let status = response.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| url.join(loc.trim()).ok());
            let Some(next) = next else {
                return Err(Failure::Fatal(Error::BadResponse {
                    url: redact_url(&url),
                    detail: format!(
                        "HTTP {} redirect without a usable Location header",
                        status.as_u16()
                    ),
                }));
            };
            hops.push(Hop {
                url: url.clone(),
                status: status.as_u16(),
                headers: response.headers().clone(),
            });
            if !drain_small(response).await {
                *conn = None;
            }
            if hops.len() > MAX_REDIRECTS {
                return Err(Failure::Fatal(Error::TooManyRedirects {
                    url: source.display(),
                    max: MAX_REDIRECTS,
                }));
            }
            tracing::debug!("redirect {} -> {}", redact_url(&url), redact_url(&next));
            url = next;
            continue;
        }
        return Ok(Fetched {
            response,
            url,
            hops,
            ttfb: started.elapsed(),
        });
    }
}

/// The headers of a request to `url`: the source's own (credentials only
/// for its origin), the range, no compression, our user agent.
fn request_headers(
    net: &Net,
    source: &Source,
    url: &Url,
    range: Option<ByteRange>,
    if_range: Option<&str>,
) -> HeaderMap {
    let mut headers = source.headers_for(url);
    if let Some(range) = range {
        headers.insert(
            RANGE,
            HeaderValue::from_str(&range.header()).expect("ascii"),
        );
    }
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if !headers.contains_key(USER_AGENT)
        && let Ok(ua) = HeaderValue::from_str(&net.options().user_agent)
    {
        headers.insert(USER_AGENT, ua);
    }
    if let Some(v) = if_range.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(IF_RANGE, v);
    }
    headers
}

/// The request for `range` of `url` as bytes to send ahead on `conn`
/// (see [`Conn::head_ahead`]); `None` when `conn` cannot pipeline.
pub fn head_ahead(
    net: &Net,
    source: &Source,
    conn: &Conn,
    url: &Url,
    range: ByteRange,
    if_range: Option<&str>,
) -> Option<Vec<u8>> {
    let headers = request_headers(net, source, url, Some(range), if_range);
    conn.head_ahead(url, headers).ok().flatten()
}

/// The answer to a request sent ahead on `conn` for `url`. A redirect is not
/// followed here: the URL was the end of a chain already, so one now is a
/// change the caller handles like any unusable answer.
/// An answer that does not come counts against the source's pipelining
/// ([`Source::ahead_missed`]).
pub async fn receive_ahead(
    source: &Source,
    url: Url,
    conn: &mut Option<Conn>,
) -> Result<Fetched, Failure> {
    let started = Instant::now();
    let c = conn
        .as_mut()
        .ok_or_else(|| Failure::retry(GaveUpKind::Network, "the connection is closed"))?;
    let timeout = source.ahead_timeout(c.response_timeout());
    let response = match c.receive_ahead(timeout).await {
        Ok(r) => {
            source.ahead_answered();
            r
        }
        Err(e) => {
            source.ahead_missed();
            *conn = None;
            return Err(Failure::from_net(e));
        }
    };
    if response.status().is_redirection() {
        *conn = None;
        return Err(Failure::retry(
            GaveUpKind::BadResponse,
            format!(
                "HTTP {} to a request sent ahead; asking again from the start",
                response.status().as_u16()
            ),
        ));
    }
    Ok(Fetched {
        response,
        url,
        hops: Vec::new(),
        ttfb: started.elapsed(),
    })
}

/// Reads a short body to its end so the connection can be reused; gives up
/// (returning false: drop the connection) on a long or slow body.
async fn drain_small(response: Response<Body>) -> bool {
    let mut body = response.into_body();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        seen += d.len();
                        if seen > 64 * 1024 {
                            return false;
                        }
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .unwrap_or(false)
}

/// The first line of an error body, for messages ("Request has expired").
pub async fn error_snippet(response: Response<Body>) -> String {
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                buf.extend_from_slice(&d[..d.len().min(512 - buf.len().min(512))]);
                if buf.len() >= 512 {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), read).await;
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().filter(|c| !c.is_control()).take(160).collect()
}

/// What a non-success, non-redirect status means for the request to `url`
/// (reached by redirect when `redirected`). Consumes the response to quote
/// its body.
pub async fn status_failure(
    response: Response<Body>,
    url: &Url,
    redirected: bool,
    source: &Source,
) -> Failure {
    let status = response.status().as_u16();
    // Both are minimums the server asked for; obeying only the shorter
    // one earns another 429.
    let headers = response.headers();
    let retry_after =
        crate::net::http::retry_after(headers).max(crate::net::http::ratelimit_reset(headers));
    let snippet = error_snippet(response).await;
    let quoted = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {snippet}")
    };
    let shown = redact_url(url);
    match status {
        401 | 403 | 410 | 400 if redirected => Failure::Expired {
            detail: format!("HTTP {status} from {shown}{quoted}"),
            status,
        },
        404 | 410 => Failure::Fatal(Error::NotFound {
            url: source.display(),
            status,
        }),
        401 | 403 | 407 => Failure::Fatal(Error::Auth {
            url: source.display(),
            status,
            hint: if snippet.is_empty() {
                "; if the file needs a login, pass a token with --header 'Authorization: Bearer ...'".into()
            } else {
                format!(": {snippet}")
            },
        }),
        408 | 429 | 500 | 502 | 503 | 504 | 520..=524 => Failure::Retry {
            kind: if status == 429 || status == 503 {
                GaveUpKind::Overloaded
            } else {
                GaveUpKind::Network
            },
            detail: format!("HTTP {status}{quoted}"),
            status: Some(status),
            retry_after,
            overloaded: status == 429 || status == 503,
        },
        500..=599 => Failure::Retry {
            kind: GaveUpKind::Network,
            detail: format!("HTTP {status}{quoted}"),
            status: Some(status),
            retry_after,
            overloaded: false,
        },
        _ => Failure::Fatal(Error::BadResponse {
            url: source.display(),
            detail: format!("unexpected HTTP {status}{quoted}"),
        }),
    }
}

/// Reads a whole small body (at most `limit` bytes), for API answers.
pub async fn read_body(response: Response<Body>, limit: usize) -> Result<Bytes, String> {
    let mut body = response.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                return Err(format!("the answer is larger than {limit} bytes"));
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}
