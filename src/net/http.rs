//! Parsing the response headers a downloader depends on.
//!
//! Every parser here takes untrusted server input and returns `None` for
//! anything malformed; none of them may panic (they are fuzzed).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RETRY_AFTER};

/// A parsed `Content-Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/total` (total `None` for `*`). `last` is inclusive.
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
    /// `bytes */total`, sent with 416.
    Unsatisfied { total: u64 },
}

/// Parses `Content-Range` (RFC 9110 §14.4).
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?;
    let rest = rest.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim();
    let total = if total == "*" {
        None
    } else {
        Some(parse_u64(total)?)
    };
    let range = range.trim();
    if range == "*" {
        return total.map(|total| ContentRange::Unsatisfied { total });
    }
    let (a, b) = range.split_once('-')?;
    let first = parse_u64(a.trim())?;
    let last = parse_u64(b.trim())?;
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange::Bytes { first, last, total })
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The response's `Content-Range`, if present and valid.
pub fn content_range(h: &HeaderMap) -> Option<ContentRange> {
    h.get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
}

/// `Content-Length`, if present and a plain number.
pub fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| parse_u64(s.trim()))
}

/// The ETag if it is a strong one (weak ETags may not be used with If-Range).
pub fn strong_etag(h: &HeaderMap) -> Option<String> {
    let v = h.get(ETAG)?.to_str().ok()?.trim();
    if v.starts_with("W/") || v.len() < 2 || !v.starts_with('"') || !v.ends_with('"') {
        return None;
    }
    Some(v.to_string())
}

/// Any ETag, weak or strong, as sent (for change detection only).
pub fn any_etag(h: &HeaderMap) -> Option<String> {
    Some(h.get(ETAG)?.to_str().ok()?.trim().to_string())
}

/// `Last-Modified`, if it parses as an HTTP date (kept as sent).
pub fn last_modified(h: &HeaderMap) -> Option<String> {
    let v = h.get(LAST_MODIFIED)?.to_str().ok()?.trim();
    httpdate::parse_http_date(v).ok()?;
    Some(v.to_string())
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date; capped at 10
/// minutes as curl does, so a hostile server cannot park us for a day.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let cap = Duration::from_secs(600);
    if let Some(secs) = parse_u64(v) {
        return Some(Duration::from_secs(secs).min(cap));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(cap),
    )
}

/// The reset time of an IETF `RateLimit` header when its remaining quota is 0
/// (`RateLimit: "api";r=0;t=42`), as the Hub sends with 429.
pub fn ratelimit_reset(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("ratelimit")?.to_str().ok()?;
    let mut remaining = None;
    let mut reset = None;
    for part in v.split(';') {
        let part = part.trim();
        if let Some(r) = part.strip_prefix("r=") {
            remaining = parse_u64(r.trim());
        } else if let Some(t) = part.strip_prefix("t=") {
            reset = parse_u64(t.trim());
        }
    }
    match (remaining, reset) {
        (Some(0), Some(t)) => Some(Duration::from_secs(t.min(600))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 99,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-5/*"),
            Some(ContentRange::Bytes {
                first: 5,
                last: 5,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */0"),
            Some(ContentRange::Unsatisfied { total: 0 })
        );
        for bad in [
            "",
            "bytes",
            "bytes 9-1/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes -1-2/3",
            "bytes 0-1",
            "bytes */*",
            "bytes 1-2/99999999999999999999999",
            "bytes +1-2/3",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn validators_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("W/\"x\""));
        assert_eq!(strong_etag(&h), None);
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        assert_eq!(strong_etag(&h).as_deref(), Some("\"abc\""));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(600)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("ratelimit", HeaderValue::from_static("\"api\";r=0;t=42"));
        assert_eq!(ratelimit_reset(&h), Some(Duration::from_secs(42)));
        h.insert("ratelimit", HeaderValue::from_static("\"api\";r=5;t=42"));
        assert_eq!(ratelimit_reset(&h), None);
    }
}
