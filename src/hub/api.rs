//! The Hub's JSON API: repo info, tree size, the paginated file tree, and
//! what its error answers mean.
//!
//! Requests go through the client layer ([`crate::client::document`]):
//! redirects followed by hand, the token only to the endpoint's origin,
//! every hop routed by its own proxy decision, 429 and 5xx answers retried
//! after the server's `RateLimit` reset or `Retry-After`, whichever is
//! later. Everything the Hub sends is treated as untrusted input (sizes
//! checked, bodies capped, parse errors reported).

use std::collections::HashSet;

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::endpoint::{Endpoint, RepoId, RepoType};
use crate::client::document::{Answer, DocError, Documents};
use crate::client::{Credentials, RetryPolicy};
use crate::net::{Net, redact_url};

/// Largest repo-info answer read (a 50,000-file repo's siblings fit easily).
const MAX_INFO_BYTES: usize = 256 << 20;
/// Largest tree page read (1,000 entries are about 300 KB).
const MAX_PAGE_BYTES: usize = 64 << 20;
/// Pages followed before giving up on a listing (a million-file repo needs 1,000).
const MAX_PAGES: usize = 100_000;
/// Most files a listing may have. The largest repos on the Hub have a few
/// hundred thousand; each listed file costs a few hundred bytes here, so
/// this bounds a listing's memory (a hostile endpoint could otherwise send
/// pages until memory runs out).
pub const MAX_FILES: usize = 1_000_000;

/// Why an API call failed.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The Hub answered with an error status.
    Status {
        url: String,
        status: u16,
        /// `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`, ...).
        code: Option<String>,
        /// `X-Error-Message`, else the JSON `error` field, else the body's first line.
        message: String,
    },
    /// Network errors (or 429/5xx) until the retries ran out.
    GaveUp {
        url: String,
        detail: String,
    },
    /// An answer we cannot use.
    BadAnswer {
        url: String,
        detail: String,
    },
    Interrupted,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status {
                url,
                status,
                message,
                ..
            } => {
                write!(f, "{url}: HTTP {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ApiError::GaveUp { url, detail } => write!(f, "{url}: gave up: {detail}"),
            ApiError::BadAnswer { url, detail } => write!(f, "{url}: unexpected answer: {detail}"),
            ApiError::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// One file of a revision, with what is needed to verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
    /// The git blob id (sha1 of `"blob <len>\0"` + content) of a file stored
    /// in git; for an LFS file it names the pointer, not the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Stored in LFS (or Xet): the content is verified by `sha256`.
    #[serde(default)]
    pub lfs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl RepoFile {
    /// The checksum that proves the content: sha256 for LFS files, the git
    /// blob sha1 for the rest; `None` when the listing gave no usable hash.
    pub fn checksum(&self) -> Option<crate::engine::Checksum> {
        use crate::engine::Checksum;
        if self.lfs {
            self.sha256
                .as_deref()
                .and_then(|h| Checksum::sha256(h).ok())
        } else {
            self.oid
                .as_deref()
                .and_then(|h| Checksum::git_blob_sha1(h).ok())
        }
    }
}

/// What the repo-info call tells.
#[derive(Clone, Debug)]
pub struct RepoInfo {
    /// The commit the revision points at (absent on some mirrors).
    pub sha: Option<String>,
    /// `gated` is anything but `false` (`"auto"`, `"manual"`, `true`).
    pub gated: bool,
    /// Only its owners (and those they let in) may read it.
    pub private: bool,
    pub disabled: bool,
    /// `siblings` with sizes and hashes (may be truncated on huge repos).
    pub siblings: Vec<RepoFile>,
    /// Every sibling came with a size and a usable hash.
    pub siblings_detailed: bool,
    /// The raw answer, kept as `.hfd/repo_metadata.json`.
    pub raw: Bytes,
}

#[derive(Deserialize)]
struct RawInfo {
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    gated: serde_json::Value,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    private: Option<bool>,
    #[serde(default)]
    siblings: Option<Vec<RawSibling>>,
}

#[derive(Deserialize)]
struct RawSibling {
    #[serde(default)]
    rfilename: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<RawLfs>,
}

/// `lfs` in siblings has `sha256`; in tree entries the same hash is `oid`.
#[derive(Deserialize)]
struct RawLfs {
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    oid: Option<String>,
}

#[derive(Deserialize)]
struct RawTreeEntry {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawTreeSize {
    size: Option<u64>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn file_from(path: String, size: u64, oid: Option<String>, lfs: Option<RawLfs>) -> RepoFile {
    let oid = oid
        .filter(|o| is_hex(o, 40))
        .map(|o| o.to_ascii_lowercase());
    let (is_lfs, sha256) = match lfs {
        Some(l) => (
            true,
            l.sha256
                .or(l.oid)
                .filter(|h| is_hex(h, 64))
                .map(|h| h.to_ascii_lowercase()),
        ),
        None => (false, None),
    };
    RepoFile {
        path,
        size,
        oid,
        lfs: is_lfs,
        sha256,
    }
}

/// Parses a repo-info answer.
pub fn parse_info(raw: Bytes) -> Result<RepoInfo, String> {
    // Straight into the structs (unknown fields skipped), not through a
    // `serde_json::Value`, which would cost many times the answer's size.
    // serde also reads a struct from a JSON array: only an object is valid.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    let info: RawInfo = serde_json::from_slice(&raw).map_err(|e| format!("invalid JSON: {e}"))?;
    if info.siblings.as_ref().is_some_and(|s| s.len() > MAX_FILES) {
        return Err(format!(
            "it lists more than {MAX_FILES} files, more than hfd handles"
        ));
    }
    let gated = !matches!(
        info.gated,
        serde_json::Value::Bool(false) | serde_json::Value::Null
    );
    let mut detailed = true;
    let mut siblings = Vec::new();
    for s in info.siblings.unwrap_or_default() {
        let Some(path) = s.rfilename.filter(|p| !p.is_empty()) else {
            detailed = false;
            continue;
        };
        if s.size.is_none() {
            detailed = false;
        }
        let f = file_from(path, s.size.unwrap_or(0), s.blob_id, s.lfs);
        if f.checksum().is_none() {
            detailed = false;
        }
        siblings.push(f);
    }
    Ok(RepoInfo {
        sha: info.sha.filter(|s| !s.is_empty() && s.len() <= 256),
        gated,
        private: info.private.unwrap_or(false),
        disabled: info.disabled.unwrap_or(false),
        siblings,
        siblings_detailed: detailed,
        raw,
    })
}

/// Parses one tree page: the files in it (directories are skipped).
pub fn parse_tree_page(body: &[u8]) -> Result<(Vec<RepoFile>, usize), String> {
    let entries: Vec<RawTreeEntry> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let n = entries.len();
    let files = entries
        .into_iter()
        .filter(|e| e.kind == "file")
        .filter_map(|e| {
            let path = e.path.filter(|p| !p.is_empty())?;
            Some(file_from(path, e.size.unwrap_or(0), e.oid, e.lfs))
        })
        .collect();
    Ok((files, n))
}

/// The `rel="next"` target of `Link` headers, resolved against `base`.
pub fn next_link(headers: &HeaderMap, base: &Url) -> Option<Url> {
    link_rel(headers, base, "next")
}

/// The target of the `Link` header entry with relation `rel`, resolved
/// against `base`.
pub fn link_rel(headers: &HeaderMap, base: &Url, rel: &str) -> Option<Url> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(v) = value.to_str() else { continue };
        for link in v.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case(rel))
                })
            });
            if is_next {
                return base.join(target.trim()).ok();
            }
        }
    }
    None
}

/// A client for one endpoint.
pub struct Api {
    endpoint: Endpoint,
    /// Kept between calls: a tree walk reuses one connection.
    docs: Documents,
}

impl Api {
    /// A client for `endpoint`; `credentials` (the token) go to its origin
    /// only, whatever URL a listing links to.
    pub fn new(
        net: Net,
        endpoint: Endpoint,
        credentials: HeaderMap,
        retry: RetryPolicy,
        cancel: CancellationToken,
    ) -> Api {
        let creds = Credentials::new(endpoint.url(), &credentials)
            .expect("an endpoint is an http(s) URL with a host");
        Api {
            docs: Documents::new(net, creds, retry, cancel),
            endpoint,
        }
    }

    /// `GET url`, at most `limit` bytes, retried as the client layer does.
    pub async fn get(&self, url: &Url, limit: usize) -> Result<Answer, ApiError> {
        self.docs.get(url, limit).await.map_err(|e| match e {
            DocError::Status {
                url,
                status,
                headers,
                snippet,
            } => ApiError::Status {
                url: url.to_string(),
                status,
                code: header_str(&headers, "x-error-code"),
                message: header_str(&headers, "x-error-message")
                    .or_else(|| json_error(&snippet))
                    .unwrap_or(snippet),
            },
            DocError::GaveUp { url, detail } => ApiError::GaveUp {
                url: url.to_string(),
                detail,
            },
            DocError::BadAnswer { url, detail } => ApiError::BadAnswer {
                url: url.to_string(),
                detail,
            },
            DocError::Interrupted => ApiError::Interrupted,
        })
    }

    /// Repo info with sizes and hashes (`?blobs=true`).
    pub async fn info(
        &self,
        t: RepoType,
        repo: &RepoId,
        revision: &str,
    ) -> Result<RepoInfo, ApiError> {
        let url = self
            .endpoint
            .info_url(t, repo, revision)
            .map_err(|e| bad(&self.endpoint, e))?;
        let a = self.get(&url, MAX_INFO_BYTES).await?;
        parse_info(a.body).map_err(|detail| ApiError::BadAnswer {
            url: redact_url(&url),
            detail,
        })
    }

    /// Total bytes of a revision; `None` when the endpoint cannot tell
    /// (older mirrors lack this call).
    pub async fn treesize(&self, t: RepoType, repo: &RepoId, revision: &str) -> Option<u64> {
        let url = self.endpoint.treesize_url(t, repo, revision).ok()?;
        match self.get(&url, 1 << 20).await {
            Ok(a) => serde_json::from_slice::<RawTreeSize>(&a.body).ok()?.size,
            Err(e) => {
                tracing::debug!("treesize: {e}");
                None
            }
        }
    }

    /// Every file of the revision from the paginated recursive tree.
    /// `on_page` hears the running count of entries scanned.
    pub async fn tree(
        &self,
        t: RepoType,
        repo: &RepoId,
        revision: &str,
        max_files: usize,
        mut on_page: impl FnMut(usize),
    ) -> Result<Vec<RepoFile>, ApiError> {
        let mut url = self
            .endpoint
            .tree_url(t, repo, revision)
            .map_err(|e| bad(&self.endpoint, e))?;
        let mut seen_urls = HashSet::new();
        let mut seen_paths = HashSet::new();
        let mut files = Vec::new();
        let mut scanned = 0usize;
        for _ in 0..MAX_PAGES {
            if !seen_urls.insert(url.to_string()) {
                return Err(ApiError::BadAnswer {
                    url: redact_url(&url),
                    detail: "the tree listing links back to a page already read".into(),
                });
            }
            let a = self.get(&url, MAX_PAGE_BYTES).await?;
            let (page, n) = parse_tree_page(&a.body).map_err(|detail| ApiError::BadAnswer {
                url: redact_url(&url),
                detail,
            })?;
            scanned += n;
            on_page(scanned);
            for f in page {
                if seen_paths.insert(f.path.clone()) {
                    files.push(f);
                }
            }
            if files.len() > max_files {
                return Err(ApiError::BadAnswer {
                    url: redact_url(&url),
                    detail: format!(
                        "the tree lists more than {max_files} files, more than hfd handles"
                    ),
                });
            }
            match next_link(&a.headers, &a.url) {
                None => return Ok(files),
                Some(next) => {
                    let rebased = self
                        .endpoint
                        .rebase(&next)
                        .map_err(|e| bad(&self.endpoint, e))?;
                    if rebased != next {
                        tracing::info!(
                            "the next page link names {}; following it on {}",
                            next.host_str().unwrap_or("?"),
                            self.endpoint.as_str()
                        );
                    }
                    url = rebased;
                }
            }
        }
        Err(ApiError::BadAnswer {
            url: redact_url(&url),
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }
}

fn bad(ep: &Endpoint, detail: String) -> ApiError {
    ApiError::BadAnswer {
        url: ep.as_str().to_string(),
        detail,
    }
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(300).collect())
        .filter(|s: &String| !s.is_empty())
}

/// The `error` field of a JSON error body (`{"error": "..."}`).
fn json_error(snippet: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(snippet).ok()?;
    v.get("error")?
        .as_str()
        .map(|s| s.chars().filter(|c| !c.is_control()).take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_info_with_blobs() {
        let raw = Bytes::from_static(
            br#"{"id":"a/b","sha":"0123456789abcdef0123456789abcdef01234567","gated":"manual","private":false,
            "siblings":[{"rfilename":"config.json","size":10,"blobId":"ce013625030ba8dba906f756967f9e9ca394464a"},
            {"rfilename":"m.bin","size":100,"blobId":"ce013625030ba8dba906f756967f9e9ca394464b",
             "lfs":{"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","size":100,"pointerSize":130}}]}"#,
        );
        let i = parse_info(raw).unwrap();
        assert!(i.gated);
        assert!(i.siblings_detailed);
        assert_eq!(i.siblings.len(), 2);
        assert_eq!(i.siblings[0].checksum().unwrap().algorithm(), "git-sha1");
        assert_eq!(i.siblings[1].checksum().unwrap().algorithm(), "sha-256");
        let plain = parse_info(Bytes::from_static(
            br#"{"gated":false,"siblings":[{"rfilename":"x"}]}"#,
        ))
        .unwrap();
        assert!(!plain.gated);
        assert!(!plain.siblings_detailed);
        assert!(plain.sha.is_none());
        for hostile in [
            &b"[]"[..],
            b"{\"siblings\":7}",
            b"not json",
            b"{\"siblings\":[{\"size\":-1}]}",
        ] {
            assert!(parse_info(Bytes::copy_from_slice(hostile)).is_err());
        }
        // A bad hash is no hash: the file is then checked another way.
        let weird = parse_info(Bytes::from_static(
            br#"{"siblings":[{"rfilename":"x","size":1,"lfs":{"sha256":"zz"}}]}"#,
        ))
        .unwrap();
        assert!(weird.siblings[0].lfs);
        assert!(weird.siblings[0].checksum().is_none());
    }

    #[test]
    fn parses_tree_pages() {
        let (files, n) = parse_tree_page(
            br#"[{"type":"directory","oid":"x","size":0,"path":"sub"},
                {"type":"file","oid":"ce013625030ba8dba906f756967f9e9ca394464a","size":6,"path":"sub/a.txt"},
                {"type":"file","oid":"ce013625030ba8dba906f756967f9e9ca394464b","size":9,"path":"w.bin",
                 "lfs":{"oid":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","size":9,"pointerSize":1}}]"#,
        )
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(files.len(), 2);
        assert!(files[1].lfs);
        assert!(files[1].sha256.is_some());
        assert!(parse_tree_page(b"{}").is_err());
    }

    #[test]
    fn finds_next_links() {
        let base = Url::parse("http://h/api/x").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            HeaderValue::from_static(
                r#"<https://huggingface.co/api/x?cursor=a>; rel="prev", <https://huggingface.co/api/x?cursor=b>; rel="next""#,
            ),
        );
        assert_eq!(
            next_link(&h, &base).unwrap().as_str(),
            "https://huggingface.co/api/x?cursor=b"
        );
        h.insert(
            http::header::LINK,
            HeaderValue::from_static("</api/x?c=2>; rel=next"),
        );
        assert_eq!(next_link(&h, &base).unwrap().as_str(), "http://h/api/x?c=2");
        h.insert(
            http::header::LINK,
            HeaderValue::from_static("garbage<<>>;;"),
        );
        assert!(next_link(&h, &base).is_none());
        assert!(next_link(&HeaderMap::new(), &base).is_none());
    }
}
