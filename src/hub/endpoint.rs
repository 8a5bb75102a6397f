//! Where things are on a Hub: the endpoint, repo ids, and the URLs built
//! from them, percent-encoded the way the Hub expects.
//!
//! hfd.sh pasted revisions and file names into URLs raw, so `refs/pr/1`
//! became three path segments and a file named `a#b.txt` lost everything
//! after `#`. Here a revision is always one segment (every byte outside the
//! RFC 3986 unreserved set is escaped, `/` included), and a file path keeps
//! its `/` separators with each segment escaped the same way.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// Everything but `A-Z a-z 0-9 - . _ ~` is escaped: Python's
/// `quote(s, safe="")`, which huggingface_hub uses for revisions.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping `/`: for repo file paths.
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// The endpoint used when `HF_ENDPOINT` is unset or empty.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The repo's page on huggingface.co, where a gated repo's terms are
/// accepted: always there, since mirrors have no accounts of their own.
pub fn hub_page(t: RepoType, repo: &RepoId) -> String {
    format!("{DEFAULT_ENDPOINT}/{}{repo}", t.download_prefix())
}

/// Encodes one path segment (a revision).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Encodes a repo file path, keeping its `/` separators.
pub fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// A model or a dataset (`--dataset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// The API collection: `models` or `datasets`.
    pub fn api_segment(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }

    /// The prefix of file URLs: none for models, `datasets/` for datasets.
    pub fn download_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
        }
    }
}

/// A checked repo id: `name` or `org/name`, made of letters, digits, `-`,
/// `_` and `.`, never `.` or `..` (it also names the local folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(s: &str) -> Result<RepoId, String> {
        let bad = |why: &str| {
            Err(format!(
                "invalid repo id {s:?}: {why} (expected ORG/NAME, or a single NAME like gpt2)"
            ))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 2 {
            return bad("it has more than one '/'");
        }
        for p in &parts {
            if p.is_empty() || *p == "." || *p == ".." {
                return bad("a part of it is empty, '.' or '..'");
            }
            if !p
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return bad("only letters, digits, '-', '_' and '.' are allowed");
            }
        }
        Ok(RepoId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// hfd.sh's default local folder: everything after the first `/`.
    pub fn default_dir_name(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(_, n)| n)
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `HF_ENDPOINT`: the Hub or a mirror. Stored without a trailing `/` so
/// that joining never yields `//api` (which some mirrors reject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    url: Url,
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let trimmed = s.trim().trim_end_matches('/');
        let url = Url::parse(trimmed).map_err(|e| {
            format!("invalid HF_ENDPOINT {s:?}: {e} (expected e.g. https://hf-mirror.com)")
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "invalid HF_ENDPOINT {s:?}: it must be an http:// or https:// URL with a host"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "invalid HF_ENDPOINT {s:?}: it must not have a query or fragment"
            ));
        }
        Ok(Endpoint {
            base: trimmed.to_string(),
            url,
        })
    }

    /// The endpoint as given, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    fn join(&self, rest: &str) -> Result<Url, String> {
        let s = format!("{}{rest}", self.base);
        Url::parse(&s).map_err(|e| format!("cannot build a URL from {s:?}: {e}"))
    }

    /// Repo info with per-file sizes and hashes. Like hfd.sh, the
    /// `/revision/…` form only when the revision is not `main`.
    pub fn info_url(&self, t: RepoType, repo: &RepoId, revision: &str) -> Result<Url, String> {
        let rev = if revision == "main" {
            String::new()
        } else {
            format!("/revision/{}", encode_segment(revision))
        };
        self.join(&format!("/api/{}/{repo}{rev}?blobs=true", t.api_segment()))
    }

    /// Total bytes of a revision (hfd.sh uses it to tell whether `siblings`
    /// is the complete file list).
    pub fn treesize_url(&self, t: RepoType, repo: &RepoId, revision: &str) -> Result<Url, String> {
        self.join(&format!(
            "/api/{}/{repo}/treesize/{}",
            t.api_segment(),
            encode_segment(revision)
        ))
    }

    /// The Xet read-token route of a revision (what a resolve answer's
    /// `Link: <…>; rel="xet-auth"` names on the Hub).
    pub fn xet_token_url(&self, t: RepoType, repo: &RepoId, revision: &str) -> Result<Url, String> {
        self.join(&format!(
            "/api/{}/{repo}/xet-read-token/{}",
            t.api_segment(),
            encode_segment(revision)
        ))
    }

    /// The first page of the recursive file tree.
    pub fn tree_url(&self, t: RepoType, repo: &RepoId, revision: &str) -> Result<Url, String> {
        self.join(&format!(
            "/api/{}/{repo}/tree/{}?recursive=true&expand=false",
            t.api_segment(),
            encode_segment(revision)
        ))
    }

    /// A file: `{endpoint}/{datasets/}{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(
        &self,
        t: RepoType,
        repo: &RepoId,
        revision: &str,
        path: &str,
    ) -> Result<Url, String> {
        self.join(&format!(
            "/{}{repo}/resolve/{}/{}",
            t.download_prefix(),
            encode_segment(revision),
            encode_path(path)
        ))
    }

    /// A pagination link as the Hub sent it, moved onto this endpoint when
    /// it names another origin: behind a mirror the Hub's absolute `next`
    /// URLs may point at huggingface.co, which the user may not be able to
    /// reach (and which must not get a token meant for the mirror).
    pub fn rebase(&self, next: &Url) -> Result<Url, String> {
        let same_origin = next.scheme() == self.url.scheme()
            && next.host_str() == self.url.host_str()
            && next.port_or_known_default() == self.url.port_or_known_default();
        if same_origin {
            return Ok(next.clone());
        }
        let mut rest = next.path().to_string();
        if !rest.starts_with('/') {
            // A URL without a hierarchical path ("x:evil.example"): pasted
            // after the endpoint as it is, it would become part of the host
            // name (found by fuzzing).
            rest.insert(0, '/');
        }
        // A mirror mounted under a path prefix: keep its prefix once.
        let prefix = self.url.path().trim_end_matches('/');
        if !prefix.is_empty() && rest.starts_with(&format!("{prefix}/")) {
            rest = rest[prefix.len()..].to_string();
        }
        if let Some(q) = next.query() {
            rest.push('?');
            rest.push_str(q);
        }
        let url = self.join(&rest)?;
        if url.origin() != self.url.origin() {
            return Err(format!(
                "the next page link {next} cannot be followed on {}",
                self.base
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoId {
        RepoId::parse(s).unwrap()
    }

    #[test]
    fn encodes_revisions_and_paths() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("v1.0_x-y~z"), "v1.0_x-y~z");
        assert_eq!(encode_path("a b/c#d?.txt"), "a%20b/c%23d%3F.txt");
        assert_eq!(encode_path("100%.bin"), "100%25.bin");
        assert_eq!(
            encode_path("目录/文件.md"),
            "%E7%9B%AE%E5%BD%95/%E6%96%87%E4%BB%B6.md"
        );
    }

    #[test]
    fn builds_urls() {
        let ep = Endpoint::parse("https://hf-mirror.com/").unwrap();
        assert_eq!(ep.as_str(), "https://hf-mirror.com");
        let r = repo("org/name");
        assert_eq!(
            ep.info_url(RepoType::Model, &r, "main").unwrap().as_str(),
            "https://hf-mirror.com/api/models/org/name?blobs=true"
        );
        assert_eq!(
            ep.info_url(RepoType::Dataset, &r, "refs/pr/1")
                .unwrap()
                .as_str(),
            "https://hf-mirror.com/api/datasets/org/name/revision/refs%2Fpr%2F1?blobs=true"
        );
        assert_eq!(
            ep.tree_url(RepoType::Model, &r, "main").unwrap().as_str(),
            "https://hf-mirror.com/api/models/org/name/tree/main?recursive=true&expand=false"
        );
        assert_eq!(
            ep.resolve_url(RepoType::Dataset, &r, "refs/pr/1", "dir/a b#1.txt")
                .unwrap()
                .as_str(),
            "https://hf-mirror.com/datasets/org/name/resolve/refs%2Fpr%2F1/dir/a%20b%231.txt"
        );
        assert_eq!(
            ep.resolve_url(RepoType::Model, &repo("gpt2"), "main", "config.json")
                .unwrap()
                .as_str(),
            "https://hf-mirror.com/gpt2/resolve/main/config.json"
        );
    }

    #[test]
    fn checks_repo_ids_and_endpoints() {
        assert_eq!(repo("org/name").default_dir_name(), "name");
        assert_eq!(repo("gpt2").default_dir_name(), "gpt2");
        for bad in ["", "/x", "x/", "a/b/c", "../x", "a/..", ".", "a b", "a/b\0"] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("not a url").is_err());
        assert!(Endpoint::parse("https://x/?q=1").is_err());
    }

    #[test]
    fn rebases_foreign_next_links() {
        let ep = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        let next =
            Url::parse("https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=abc")
                .unwrap();
        assert_eq!(
            ep.rebase(&next).unwrap().as_str(),
            "http://127.0.0.1:8080/api/models/a/b/tree/main?recursive=true&cursor=abc"
        );
        let own = Url::parse("http://127.0.0.1:8080/api/x?cursor=1").unwrap();
        assert_eq!(ep.rebase(&own).unwrap(), own);
        let prefixed = Endpoint::parse("https://mirror.example/hf/").unwrap();
        let foreign = Url::parse("https://huggingface.co/api/x?c=1").unwrap();
        assert_eq!(
            prefixed.rebase(&foreign).unwrap().as_str(),
            "https://mirror.example/hf/api/x?c=1"
        );
        // Found by fuzzing: a link without a hierarchical path once became
        // part of the host name ("https://hub.examplemjdcursor=abc/").
        let opaque = Url::parse("httzps:mjdcursor=abc").unwrap();
        let moved = ep.rebase(&opaque).unwrap();
        assert_eq!(moved.origin(), ep.url().origin());
        assert_eq!(moved.as_str(), "http://127.0.0.1:8080/mjdcursor=abc");
        let foreign_prefixed = Url::parse("https://other/hf/api/x").unwrap();
        assert_eq!(
            prefixed.rebase(&foreign_prefixed).unwrap().as_str(),
            "https://mirror.example/hf/api/x"
        );
    }
}
