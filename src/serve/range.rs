//! Which bytes of a file an answer carries: `Range` and `If-Range` as RFC
//! 9110 defines them, for the single ranges downloaders send.
//!
//! A `Range` we do not understand (another unit, bad syntax, several
//! ranges) is ignored, as the RFC allows: the client gets the whole file
//! with 200 and sees it did. A well-formed range that starts past the end
//! gets 416 with `Content-Range: bytes */LEN`. `If-Range` must match the
//! strong ETag (or the exact Last-Modified date) for the range to apply.

/// What to send of a file of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// All of it, 200.
    Whole,
    /// `[start, end]` inclusive, 206.
    Range { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// The validators of the file being served, for `If-Range`.
pub struct Validators<'a> {
    /// The quoted strong ETag.
    pub etag: &'a str,
    /// The HTTP date of Last-Modified.
    pub last_modified: &'a str,
}

/// The part of a `len`-byte file to send for these request headers.
pub fn choose(range: Option<&str>, if_range: Option<&str>, v: &Validators, len: u64) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    if let Some(cond) = if_range {
        // A weak tag never matches; a date must be exactly ours.
        let matches = cond == v.etag || cond == v.last_modified;
        if !matches {
            return Part::Whole;
        }
    }
    parse(range, len)
}

fn parse(range: &str, len: u64) -> Part {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Part::Whole;
    };
    if spec.contains(',') {
        return Part::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Part::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Part::Unsatisfiable
            } else {
                Part::Range {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Part::Whole;
            }
            if start >= len {
                return Part::Unsatisfiable;
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            Part::Range { start, end }
        }
        _ => Part::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Validators = Validators {
        etag: "\"abc\"",
        last_modified: "Thu, 01 Jan 2026 00:00:00 GMT",
    };

    fn p(r: &str) -> Part {
        choose(Some(r), None, &V, 100)
    }

    #[test]
    fn ranges_as_the_rfc_says() {
        use Part::*;
        assert_eq!(p("bytes=0-9"), Range { start: 0, end: 9 });
        assert_eq!(p("bytes=90-"), Range { start: 90, end: 99 });
        assert_eq!(p("bytes=90-1000"), Range { start: 90, end: 99 });
        assert_eq!(p("bytes=-10"), Range { start: 90, end: 99 });
        assert_eq!(p("bytes=-1000"), Range { start: 0, end: 99 });
        assert_eq!(p("bytes=100-"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2,4-5",
            "items=0-1",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(p(ignored), Whole, "{ignored}");
        }
        assert_eq!(choose(None, None, &V, 100), Whole);
        assert_eq!(choose(Some("bytes=0-0"), None, &V, 0), Unsatisfiable);
    }

    #[test]
    fn if_range_needs_the_strong_tag_or_the_exact_date() {
        let r = Some("bytes=1-2");
        let range = Part::Range { start: 1, end: 2 };
        assert_eq!(choose(r, Some("\"abc\""), &V, 10), range);
        assert_eq!(choose(r, Some(V.last_modified), &V, 10), range);
        assert_eq!(choose(r, Some("W/\"abc\""), &V, 10), Part::Whole);
        assert_eq!(choose(r, Some("\"other\""), &V, 10), Part::Whole);
    }
}
