//! The properties the fuzz targets check, shared with the regression test
//! that replays saved inputs in the normal test suite
//! (tests/it/fuzz_regressions.rs), so both check exactly the same thing.

#![allow(dead_code)]

use hfd::hub::Endpoint;
use hfd::hub::api::{next_link, parse_info, parse_tree_page};
use hfd::hub::state::safe_relative;
use hfd::net::http::{
    ContentRange, any_etag, content_length, content_range, last_modified, parse_content_range,
    ratelimit_reset, retry_after, strong_etag,
};
use hfd::net::proxy::{NoProxy, Proxy, ProxyKind};
use hfd::storage::control_file::{decode_slot, encode_slot};

/// Damage is rejected without a panic; what is accepted round-trips.
pub fn control_file(data: &[u8]) {
    if let Ok((generation, state)) = decode_slot(data) {
        assert!(state.done.end() <= state.total);
        let again = encode_slot(&state, generation);
        let (g2, s2) = decode_slot(&again).expect("a re-encoded slot decodes");
        assert_eq!(g2, generation);
        assert_eq!(s2, state);
    }
}

/// Response-header parsers accept anything a server sends.
pub fn http_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(ContentRange::Bytes { first, last, total }) = parse_content_range(&text) {
        assert!(first <= last);
        if let Some(t) = total {
            assert!(last < t);
        }
    }
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut h = http::HeaderMap::new();
    for name in [
        "content-range",
        "content-length",
        "etag",
        "last-modified",
        "retry-after",
        "ratelimit",
    ] {
        h.insert(name, value.clone());
    }
    let _ = content_range(&h);
    let _ = content_length(&h);
    let _ = strong_etag(&h);
    let _ = any_etag(&h);
    let _ = last_modified(&h);
    if let Some(d) = retry_after(&h) {
        assert!(d.as_secs() <= 600);
    }
    if let Some(d) = ratelimit_reset(&h) {
        assert!(d.as_secs() <= 600);
    }
}

/// aria2c input files come from users and other programs.
pub fn input_file(data: &[u8]) {
    for e in hfd::cli::input_file::Entries::new(data)
        .take(10_000)
        .flatten()
    {
        assert!(e.line > 0);
    }
}

/// Proxy URLs and NO_PROXY lists come from the environment; a proxy's shown
/// form has a fixed shape, so its credentials can never be in it.
pub fn proxy_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = Proxy::parse(&text) {
        let scheme = match p.kind {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        };
        // Credentials (user names too: some services put a token there) are
        // never shown.
        let want = match &p.auth {
            Some(_) => format!("{scheme}://***@{}", p.authority()),
            None => format!("{scheme}://{}", p.authority()),
        };
        assert_eq!(p.to_string(), want);
    }
    if let Ok(np) = NoProxy::parse(&text) {
        let _ = np.matches("example.com", 443);
        let _ = np.matches("127.0.0.1", 80);
        let _ = np.matches("::1", 80);
    }
}

/// What the Hub (or a mirror, or whoever answers at HF_ENDPOINT) sends:
/// repo info, tree pages, `Link` headers and the file names in them. Nothing
/// panics; every name the path check accepts stays inside the local dir; a
/// next-page link is only ever followed on the endpoint's own origin.
pub fn hub_json(data: &[u8]) {
    if let Ok(info) = parse_info(bytes::Bytes::copy_from_slice(data)) {
        assert!(info.siblings.len() <= hfd::hub::api::MAX_FILES);
        for f in &info.siblings {
            repo_path(&f.path);
        }
    }
    if let Ok((files, entries)) = parse_tree_page(data) {
        assert!(files.len() <= entries);
        for f in &files {
            repo_path(&f.path);
        }
    }
    repo_path(&String::from_utf8_lossy(data));
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::LINK, value);
        for ep in ["https://hub.example", "http://127.0.0.1:8080/mirror/"] {
            let ep = Endpoint::parse(ep).expect("a valid endpoint");
            let page = ep.url().join("api/models/a/b/tree/main").expect("joins");
            if let Some(next) = next_link(&h, &page)
                && let Ok(url) = ep.rebase(&next)
            {
                assert_eq!(
                    url.origin(),
                    ep.url().origin(),
                    "{next} was moved to {url}, off the endpoint"
                );
            }
        }
    }
}

/// A repo path the check accepts is a plain relative path below the
/// local dir and outside hfd's own `.hfd/`.
fn repo_path(p: &str) {
    use std::path::{Component, Path};
    if let Ok(rel) = safe_relative(p) {
        assert!(!p.contains('\0'));
        assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
        let root = Path::new("/local/dir");
        let full = root.join(&rel);
        assert!(full.starts_with(root) && full != root);
        assert!(!full.starts_with(root.join(".hfd")));
    }
}
