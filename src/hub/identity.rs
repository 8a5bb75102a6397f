//! Whether an endpoint serves the file the listing names.
//!
//! With several endpoints (`--endpoint A --endpoint B`) every file comes from
//! all of them at once, so each must be shown to serve the same bytes before
//! any of its bytes are written. The CDN's `ETag` cannot show it: the Hub's
//! CDN and a mirror's cache give different ETags to the same bytes. The Hub's
//! own answer to a resolve can: `X-Linked-Etag` is the file's sha256 (LFS) or
//! git blob sha1, `X-Linked-Size` its size, and mirrors relay both. So an
//! endpoint is held to the listing's hash and size (or, when the listing has
//! no hash, to the first endpoint's statement), and the final checksum still
//! covers whatever an endpoint did not state.

use std::sync::{Arc, Mutex};

use http::HeaderMap;
use http::header::ETAG;

use super::api::RepoFile;
use crate::engine::{Hop, SourceCheck};

/// What an endpoint's answer says the file is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stated {
    /// A sha256 (64 hex digits) or git blob sha1 (40), lowercase.
    pub hash: Option<String>,
    pub size: Option<u64>,
}

/// A hash as the Hub sends it (`"abc…"`, `W/"abc…"`), when it is one.
pub(super) fn hash_of(raw: &str) -> Option<String> {
    let v = raw.trim().trim_start_matches("W/").trim_matches('"');
    let hex = v.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && (v.len() == 64 || v.len() == 40)).then(|| v.to_ascii_lowercase())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the Hub's statement from a request that began at the endpoint: the
/// redirects followed (`hops`, the endpoint's own answer first) and the final
/// answer. `X-Linked-Etag` wherever it appears, else the `ETag` of the
/// endpoint's own answer (a mirror that serves the bytes itself), never the
/// `ETag` of a storage host behind a redirect.
pub fn stated(hops: &[Hop], last: &HeaderMap) -> Stated {
    let answers: Vec<&HeaderMap> = hops.iter().map(|h| &h.headers).chain([last]).collect();
    let linked = answers
        .iter()
        .find_map(|h| header(h, "x-linked-etag"))
        .and_then(hash_of);
    let hash = linked.or_else(|| header(answers[0], ETAG.as_str()).and_then(hash_of));
    let size = answers
        .iter()
        .find_map(|h| header(h, "x-linked-size"))
        .and_then(|s| s.trim().parse().ok());
    Stated { hash, size }
}

/// The check for `f`: the size must match the listing, and a stated hash
/// must be one the listing gives for the file (its sha256 or git oid). When
/// the listing gave no hash, the first statement seen (the first endpoint's)
/// is the reference.
pub fn check_for(f: &RepoFile) -> SourceCheck {
    let known: Vec<String> = [f.sha256.clone(), f.oid.clone()]
        .into_iter()
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let size = f.size;
    let first: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    SourceCheck::new(move |hops, last| {
        let s = stated(hops, last);
        if let Some(n) = s.size
            && n != size
        {
            return Err(format!(
                "the Hub states {n} bytes, the listing {size} bytes"
            ));
        }
        let Some(hash) = s.hash else {
            return Ok(());
        };
        if !known.is_empty() {
            if known.contains(&hash) {
                return Ok(());
            }
            return Err(format!(
                "the Hub states {} {hash}, the listing {}",
                kind(&hash),
                known[0]
            ));
        }
        let mut first = crate::sync::lock(&first);
        match first.as_deref() {
            None => {
                *first = Some(hash);
                Ok(())
            }
            Some(h) if *h == hash => Ok(()),
            Some(h) => Err(format!(
                "the Hub states {} {hash}, the first endpoint {h}",
                kind(&hash)
            )),
        }
    })
}

fn kind(hash: &str) -> &'static str {
    if hash.len() == 64 {
        "sha256"
    } else {
        "git oid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use url::Url;

    const SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const OID: &str = "ce013625030ba8dba906f756967f9e9ca394464a";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn hop(pairs: &[(&'static str, &str)]) -> Hop {
        Hop {
            url: Url::parse("http://hub/x/resolve/c/f").unwrap(),
            status: 302,
            headers: headers(pairs),
        }
    }

    fn lfs(size: u64) -> RepoFile {
        RepoFile {
            path: "w.bin".into(),
            size,
            oid: Some(OID.into()),
            lfs: true,
            sha256: Some(SHA.into()),
        }
    }

    #[test]
    fn reads_the_hub_answer_not_the_cdn_one() {
        let q = format!("\"{SHA}\"");
        let resolve = hop(&[("x-linked-etag", &q), ("x-linked-size", "9")]);
        let cdn = headers(&[("etag", "\"cdn-tag-1\"")]);
        assert_eq!(
            stated(&[resolve], &cdn),
            Stated {
                hash: Some(SHA.into()),
                size: Some(9)
            }
        );
        // A CDN ETag that happens to look like a hash is still the CDN's.
        let cdn_hex = headers(&[("etag", &format!("\"{OTHER}\""))]);
        assert_eq!(stated(&[hop(&[])], &cdn_hex), Stated::default());
        // A mirror serving the bytes itself: its own ETag counts.
        let direct = headers(&[("etag", &format!("W/\"{}\"", SHA.to_uppercase()))]);
        assert_eq!(stated(&[], &direct).hash.as_deref(), Some(SHA));
        // Not a hash: nothing stated.
        assert_eq!(stated(&[], &headers(&[("etag", "\"5f3a-12\"")])).hash, None);
    }

    #[test]
    fn holds_endpoints_to_the_listing() {
        let c = check_for(&lfs(9));
        let ok = hop(&[
            ("x-linked-etag", &format!("\"{SHA}\"")),
            ("x-linked-size", "9"),
        ]);
        assert!(c.check(&[ok], &HeaderMap::new()).is_ok());
        let other = hop(&[("x-linked-etag", &format!("\"{OTHER}\""))]);
        let e = c.check(&[other], &HeaderMap::new()).unwrap_err();
        assert!(e.contains(OTHER) && e.contains(SHA), "{e}");
        let longer = hop(&[("x-linked-size", "10")]);
        assert!(c.check(&[longer], &HeaderMap::new()).is_err());
        // Silence is not disagreement: the checksum at the end decides.
        assert!(c.check(&[hop(&[])], &HeaderMap::new()).is_ok());
    }

    #[test]
    fn without_a_listed_hash_the_first_statement_is_the_reference() {
        let f = RepoFile {
            sha256: None,
            oid: None,
            ..lfs(9)
        };
        let c = check_for(&f);
        let a = hop(&[("x-linked-etag", &format!("\"{SHA}\""))]);
        let b = hop(&[("x-linked-etag", &format!("\"{OTHER}\""))]);
        assert!(c.check(std::slice::from_ref(&a), &HeaderMap::new()).is_ok());
        assert!(c.check(&[a], &HeaderMap::new()).is_ok());
        assert!(c.check(&[b], &HeaderMap::new()).is_err());
    }
}
