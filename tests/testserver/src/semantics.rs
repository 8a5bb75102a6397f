//! Pure HTTP rules the server applies: `Range` parsing and resolution,
//! `If-Range` evaluation, HTTP dates, and the signature of expiring URLs.
//! Kept free of I/O so each rule is unit-tested on its own.

use sha2::{Digest, Sha256};

use super::content::hex;

/// What a `Range` header asks for, before the file length is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeHeader {
    /// A unit other than `bytes`: RFC 9110 says to ignore the header.
    OtherUnit,
    /// A syntactically broken `bytes=` value. nginx answers 416; we do too.
    Invalid,
    /// Several ranges. We answer 200 with the whole file, which RFC 9110
    /// allows and which keeps multipart/byteranges out of the test server.
    Multiple,
    /// `bytes=a-b` or `bytes=a-`.
    FromTo(u64, Option<u64>),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Parses a `Range` header value. Never fails: anything odd maps to a
/// variant the caller turns into 200 or 416, as a real server would.
pub(crate) fn parse_range(value: &str) -> RangeHeader {
    let Some((unit, set)) = value.split_once('=') else {
        return RangeHeader::OtherUnit;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeHeader::OtherUnit;
    }
    let mut found = None;
    let mut count = 0;
    for part in set.split(',') {
        let Some(spec) = parse_spec(part.trim()) else {
            return RangeHeader::Invalid;
        };
        found = Some(spec);
        count += 1;
    }
    match (count, found) {
        (1, Some(spec)) => spec,
        (_, Some(_)) => RangeHeader::Multiple,
        _ => RangeHeader::Invalid,
    }
}

fn parse_spec(part: &str) -> Option<RangeHeader> {
    let (first, last) = part.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.trim().is_empty() {
        return Some(RangeHeader::Suffix(num(last)?));
    }
    let a = num(first)?;
    if last.trim().is_empty() {
        return Some(RangeHeader::FromTo(a, None));
    }
    let b = num(last)?;
    // RFC 9110: last-pos < first-pos makes the spec invalid (nginx: 416).
    (b >= a).then_some(RangeHeader::FromTo(a, Some(b)))
}

/// How a zero-length file answers a range request. Servers disagree, and a
/// downloader must cope with both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmptyRange {
    /// 416 with `Content-Range: bytes */0` for every range: the strict
    /// reading of RFC 9110 (no first-pos is below a length of 0), and what
    /// S3-style object stores answer.
    #[default]
    Unsatisfiable,
    /// What nginx 1.22 does (checked on this machine): a range starting at
    /// 0 (`bytes=0-`, `bytes=0-0`) or a suffix range (`bytes=-5`) gets
    /// `200` with an empty body; a range starting later (`bytes=5-`) gets
    /// 416 `bytes */0`.
    Nginx,
}

/// The answer a `Range` request gets once the file length is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Resolves a parsed header against a file of `len` bytes.
pub(crate) fn resolve_range(header: RangeHeader, len: u64, empty: EmptyRange) -> RangeAnswer {
    use RangeAnswer::*;
    if len == 0 && empty == EmptyRange::Nginx {
        return match header {
            RangeHeader::FromTo(0, _) | RangeHeader::Suffix(_) => Full,
            RangeHeader::Invalid | RangeHeader::FromTo(..) => Unsatisfiable,
            RangeHeader::OtherUnit | RangeHeader::Multiple => Full,
        };
    }
    match header {
        RangeHeader::OtherUnit | RangeHeader::Multiple => Full,
        RangeHeader::Invalid => Unsatisfiable,
        RangeHeader::FromTo(a, _) if a >= len => Unsatisfiable,
        RangeHeader::FromTo(a, b) => Partial {
            start: a,
            end: b.map_or(len - 1, |b| b.min(len - 1)),
        },
        RangeHeader::Suffix(0) => Unsatisfiable,
        RangeHeader::Suffix(_) if len == 0 => Unsatisfiable,
        RangeHeader::Suffix(n) => Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        },
    }
}

/// RFC 9110 §13.1.5: does an `If-Range` value still describe the current
/// representation? An entity tag must match strongly (a weak tag on either
/// side never matches); anything else is taken as an HTTP date and must
/// equal the current `Last-Modified` exactly.
pub(crate) fn if_range_matches(
    value: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    let v = value.trim();
    if v.starts_with("W/") {
        return false;
    }
    if v.starts_with('"') {
        return etag.is_some_and(|e| !e.starts_with("W/") && e == v);
    }
    last_modified.is_some_and(|lm| lm == v)
}

/// Formats Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn http_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from a day count (the classic era/day-of-era method).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The signature of an expiring URL. Keyed with a constant shared by every
/// `TestServer` in the process, so a redirect issued by one server (the
/// "Hub") is checked by another (the "CDN"). Not cryptographically
/// meaningful; it only has to make a tampered `expires` fail.
pub(crate) fn url_signature(path: &str, expires_ms: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"hfd-testserver-url-signing\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(expires_ms.to_string().as_bytes());
    hex(&h.finalize()[..16])
}

/// The value of query parameter `name`, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    fn answer(h: &str, len: u64) -> RangeAnswer {
        resolve_range(parse_range(h), len, EmptyRange::Unsatisfiable)
    }

    #[test]
    fn range_forms() {
        assert_eq!(answer("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(answer("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(answer("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(answer("bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(answer("bytes=50-5000", 100), Partial { start: 50, end: 99 });
        assert_eq!(answer("bytes=99-99", 100), Partial { start: 99, end: 99 });
        assert_eq!(answer("Bytes = 1-2 ", 100), Partial { start: 1, end: 2 });
    }

    #[test]
    fn range_oddities_follow_nginx() {
        // Checked against nginx 1.22 on this machine.
        assert_eq!(answer("bytes=100-", 100), Unsatisfiable);
        assert_eq!(answer("bytes=-0", 100), Unsatisfiable);
        assert_eq!(answer("bytes=5-2", 100), Unsatisfiable);
        assert_eq!(answer("bytes=abc", 100), Unsatisfiable);
        assert_eq!(answer("bytes=-", 100), Unsatisfiable);
        assert_eq!(answer("bytes=0-0,", 100), Unsatisfiable);
        assert_eq!(answer("bytes=1-2,abc", 100), Unsatisfiable);
        assert_eq!(answer("bytes=0-1,5-6", 100), Full);
        assert_eq!(answer("items=0-5", 100), Full);
        assert_eq!(answer("garbage", 100), Full);
        assert_eq!(answer("bytes=99999999999999999999999-", 100), Unsatisfiable);
    }

    #[test]
    fn empty_file_both_ways() {
        for h in ["bytes=0-", "bytes=0-0", "bytes=-5", "bytes=5-"] {
            assert_eq!(answer(h, 0), Unsatisfiable, "{h}");
        }
        let nginx = |h| resolve_range(parse_range(h), 0, EmptyRange::Nginx);
        assert_eq!(nginx("bytes=0-"), Full);
        assert_eq!(nginx("bytes=0-0"), Full);
        assert_eq!(nginx("bytes=-5"), Full);
        assert_eq!(nginx("bytes=5-"), Unsatisfiable);
    }

    #[test]
    fn if_range() {
        let lm = "Mon, 01 Jan 2024 00:00:00 GMT";
        assert!(if_range_matches("\"a\"", Some("\"a\""), Some(lm)));
        assert!(!if_range_matches("\"b\"", Some("\"a\""), Some(lm)));
        assert!(!if_range_matches("W/\"a\"", Some("\"a\""), Some(lm)));
        assert!(!if_range_matches("\"a\"", Some("W/\"a\""), Some(lm)));
        assert!(!if_range_matches("\"a\"", None, Some(lm)));
        assert!(if_range_matches(lm, Some("\"a\""), Some(lm)));
        assert!(!if_range_matches(
            "Tue, 02 Jan 2024 00:00:00 GMT",
            Some("\"a\""),
            Some(lm)
        ));
        assert!(!if_range_matches(lm, Some("\"a\""), None));
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(1_704_067_200), "Mon, 01 Jan 2024 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn signatures_and_query() {
        let s = url_signature("/a", 5);
        assert_eq!(s.len(), 32);
        assert_ne!(s, url_signature("/a", 6));
        assert_ne!(s, url_signature("/b", 5));
        assert_eq!(
            query_param("x=1&expires=42&sig=ab", "expires").as_deref(),
            Some("42")
        );
        assert_eq!(query_param("a%20b=c%2Fd", "a b").as_deref(), Some("c/d"));
        assert_eq!(query_param("flag", "flag").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "y"), None);
    }
}
