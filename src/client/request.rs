//! One GET, redirects followed by hand, and reading what comes back.
//!
//! Redirects are followed here rather than by a client library so that every
//! hop is routed by its own host (a storage host behind a redirect gets the
//! proxy decision for *its* name), credentials go only to the origin the user
//! named ([`Credentials`]), and the final URL is known to the caller, which
//! sends the next requests there.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, HeaderValue, IF_RANGE, LOCATION, RANGE, USER_AGENT};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use url::Url;

use super::classify::Failure;
use super::credentials::Credentials;
use super::error::Error;
use super::url::SafeUrl;
use crate::net::{Body, Conn, Net};

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

    /// From `start` to the end of the file.
    pub fn from(start: u64) -> ByteRange {
        ByteRange { start, end: None }
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

impl Fetched {
    /// Whether the answer came from somewhere other than `start`.
    pub fn redirected_from(&self, start: &Url) -> bool {
        self.url != *start
    }
}

/// A GET to send.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// Where it goes first.
    pub url: &'a Url,
    /// The user's headers, secrets only for their origin.
    pub credentials: &'a Credentials,
    /// `None`: the whole answer, no `Range` (API documents).
    pub range: Option<ByteRange>,
    pub if_range: Option<&'a str>,
    /// The URL the user gave, for messages.
    pub named: &'a SafeUrl,
}

/// Sends `req`, following redirects, reusing `conn` when it can carry the
/// request and leaving in `conn` the connection the final answer came on.
pub async fn fetch(
    net: &Net,
    req: Request<'_>,
    conn: &mut Option<Conn>,
) -> Result<Fetched, Failure> {
    let started = Instant::now();
    let mut url = req.url.clone();
    let mut hops = Vec::new();
    loop {
        if !conn.as_ref().is_some_and(|c| c.can_serve(&url, net)) {
            *conn = None;
            *conn = Some(net.connect(&url).await.map_err(Failure::from_net)?);
        }
        let c = conn.as_mut().expect("connected above");
        let headers = request_headers(net, &req, &url, req.range);
        let response = match c.get(&url, headers).await {
            Ok(r) => r,
            Err(e) => {
                *conn = None;
                return Err(Failure::from_net(e));
            }
        };
        let status = response.status();
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched {
                response,
                url,
                hops,
                ttfb: started.elapsed(),
            });
        }
        let next = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| url.join(loc.trim()).ok());
        let Some(next) = next else {
            return Err(Failure::Fatal(Error::BadResponse {
                url: req.named.clone(),
                detail: format!(
                    "HTTP {} redirect from {} without a usable Location header",
                    status.as_u16(),
                    SafeUrl::from(&url)
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
                url: req.named.clone(),
                max: MAX_REDIRECTS,
            }));
        }
        tracing::debug!(
            "redirect {} -> {}",
            SafeUrl::from(&url),
            SafeUrl::from(&next)
        );
        url = next;
    }
}

/// Sends `req` once, without following a redirect: the answer as it is
/// (hfd reads the Hub's resolve answer itself, for its Xet headers).
pub async fn send_once(
    net: &Net,
    req: Request<'_>,
    conn: &mut Option<Conn>,
) -> Result<Response<Body>, Failure> {
    if !conn.as_ref().is_some_and(|c| c.can_serve(req.url, net)) {
        *conn = None;
        *conn = Some(net.connect(req.url).await.map_err(Failure::from_net)?);
    }
    let c = conn.as_mut().expect("connected above");
    let headers = request_headers(net, &req, req.url, req.range);
    match c.get(req.url, headers).await {
        Ok(r) => Ok(r),
        Err(e) => {
            *conn = None;
            Err(Failure::from_net(e))
        }
    }
}

/// Whether a chain of redirects that ended at `last` went from https to
/// plain http somewhere: the bytes then travel unprotected.
pub fn downgraded(hops: &[Hop], last: &Url) -> Option<String> {
    let mut secure = false;
    for u in hops.iter().map(|h| &h.url).chain([last]) {
        match u.scheme() {
            "https" => secure = true,
            "http" if secure => return Some(u.host_str().unwrap_or("?").to_string()),
            _ => {}
        }
    }
    None
}

/// The headers of a request to `url`: the user's (secrets only for their
/// origin), the range, no compression, our user agent.
fn request_headers(net: &Net, req: &Request<'_>, url: &Url, range: Option<ByteRange>) -> HeaderMap {
    let mut headers = req.credentials.headers_for(url);
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
    if let Some(v) = req.if_range.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(IF_RANGE, v);
    }
    headers
}

/// `req` for `range` at `url` as bytes to send ahead on `conn` (see
/// [`Conn::head_ahead`]); `None` when `conn` cannot pipeline.
pub fn head_ahead(net: &Net, req: Request<'_>, conn: &Conn, url: &Url) -> Option<Vec<u8>> {
    let headers = request_headers(net, &req, url, req.range);
    conn.head_ahead(url, headers).ok().flatten()
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

/// Why [`read_body`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Larger than the caller's limit: a hostile or broken server.
    TooLarge(usize),
    /// Nothing arrived for `idle`: the server went silent.
    Stalled(Duration),
    /// The connection failed or the body was malformed.
    Broken(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(n) => write!(f, "the answer is larger than {n} bytes"),
            ReadError::Stalled(d) => write!(f, "no data for {} s", d.as_secs()),
            ReadError::Broken(e) => f.write_str(e),
        }
    }
}

/// Reads a whole small body (at most `limit` bytes; a server silent for
/// `idle` fails it), for API answers.
pub async fn read_body(
    response: Response<Body>,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, ReadError> {
    let mut body = response.into_body();
    let mut buf = Vec::new();
    loop {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| ReadError::Stalled(idle))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                return Err(ReadError::TooLarge(limit));
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downgrade_is_found_anywhere_in_the_chain() {
        let u = |s: &str| Url::parse(s).unwrap();
        let hop = |s: &str| Hop {
            url: u(s),
            status: 302,
            headers: HeaderMap::new(),
        };
        assert_eq!(downgraded(&[], &u("http://a/")), None);
        assert_eq!(downgraded(&[hop("http://a/")], &u("https://b/")), None);
        assert_eq!(
            downgraded(&[hop("https://a/")], &u("http://cdn.example/x")),
            Some("cdn.example".into())
        );
        assert_eq!(
            downgraded(&[hop("https://a/"), hop("http://mid/")], &u("https://c/")),
            Some("mid".into())
        );
    }
}
