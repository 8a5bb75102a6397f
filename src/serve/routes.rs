//! Which request is which: the Hub's URL shapes mapped to the cache.
//!
//! ```text
//! GET  /api/{models|datasets}/{id}                         repo info at main
//! GET  /api/{models|datasets}/{id}/revision/{rev}          repo info (?blobs=true)
//! GET  /api/{models|datasets}/{id}/tree/{rev}[/{path}]     listing (?recursive, ?cursor)
//! GET  /api/{models|datasets}/{id}/treesize/{rev}[/{path}] total size
//! POST /api/{models|datasets}/{id}/paths-info/{rev}        entries for paths
//! GET|HEAD /[datasets/]{id}/resolve/{rev}/{path}           the file, with Range
//! ```
//!
//! The path is split on `/` before percent-decoding, so `%2F` can only
//! live inside a revision (`refs%2Fpr%2F1`, as clients send it), never
//! join or climb path components; a decoded `.` or `..` component anywhere
//! is a 400, before any file is looked at. Everything else is a 404 as the
//! Hub words it; the Xet token route among them, so clients take the plain
//! path.

use std::time::SystemTime;

use percent_encoding::percent_decode_str;

use super::cache::{Cache, Kind, Node, Repo, RevError, Snapshot};
use super::error::ApiError;
use super::http::{Body, Request, Response};
use super::listing;
use super::range::{self, Part, Validators};
use crate::hub::endpoint::{encode_path, encode_segment};

/// What the routes need of the server.
pub struct Ctx<'a> {
    pub cache: &'a Cache,
    pub page_size: usize,
    /// `http://host:port` as the client reached us, for `Link` URLs.
    pub base: String,
}

/// The answer to `req`.
pub fn answer(ctx: &Ctx, req: &Request) -> Response {
    route(ctx, req).unwrap_or_else(|e| e.response())
}

fn route(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let Some(path) = path.strip_prefix('/') else {
        return Err(ApiError::BadRequest("The request target must be a path"));
    };
    let segs = decode_segments(path)?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let q = Query::parse(query);
    if let ["api", plural, rest @ ..] = segs.as_slice()
        && let Some(kind) = Kind::from_plural(plural)
    {
        return api(ctx, req, kind, rest, &q);
    }
    match segs.as_slice() {
        ["datasets", rest @ ..] => resolve(ctx, req, Kind::Dataset, rest),
        rest => resolve(ctx, req, Kind::Model, rest),
    }
}

/// Path segments, percent-decoded one by one; `.`, `..`, NUL and bad
/// UTF-8 refused.
pub(super) fn decode_segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.split('/')
        .map(|s| {
            let d = percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| ApiError::BadRequest("Invalid percent-encoding"))?;
            if d == "." || d == ".." || d.contains('\0') {
                return Err(ApiError::BadRequest("Invalid path"));
            }
            Ok(d.into_owned())
        })
        .collect()
}

pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(super) fn parse(q: &str) -> Query {
        Query {
            pairs: url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn flag(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// The repo named by the first one or two of `segs`, and the rest: a
/// two-part id when the cache has it, else a one-part id (`gpt2`).
fn find_repo<'s>(cache: &Cache, kind: Kind, segs: &'s [&'s str]) -> Option<(Repo, &'s [&'s str])> {
    if segs.len() >= 2
        && let Some(r) = cache.repo(kind, &format!("{}/{}", segs[0], segs[1]))
    {
        return Some((r, &segs[2..]));
    }
    let r = cache.repo(kind, segs.first()?)?;
    Some((r, &segs[1..]))
}

fn snapshot(repo: &Repo, rev: &str) -> Result<Snapshot, ApiError> {
    repo.snapshot(rev)
        .map_err(|RevError::NotFound| ApiError::RevisionNotFound(rev.to_string()))
}

pub(super) fn json(v: &serde_json::Value) -> Response {
    Response::new(
        200,
        "application/json; charset=utf-8",
        v.to_string().into_bytes(),
    )
}

fn api(
    ctx: &Ctx,
    req: &Request,
    kind: Kind,
    segs: &[&str],
    q: &Query,
) -> Result<Response, ApiError> {
    let (repo, rest) = find_repo(ctx.cache, kind, segs).ok_or(ApiError::RepoNotFound)?;
    let method = req.method.as_str();
    let wants_post = rest.first() == Some(&"paths-info");
    match (wants_post, method) {
        (true, "POST") | (false, "GET" | "HEAD") => {}
        (true, _) => return Err(ApiError::MethodNotAllowed("POST")),
        (false, _) => return Err(ApiError::MethodNotAllowed("GET, HEAD")),
    }
    match rest {
        [] => Ok(json(&listing::repo_info(
            &repo,
            &snapshot(&repo, "main")?,
            q.flag("blobs"),
        ))),
        ["revision", rev] => {
            let snap = snapshot(&repo, rev)?;
            Ok(json(&listing::repo_info(&repo, &snap, q.flag("blobs"))))
        }
        ["tree", rev, path @ ..] => tree(ctx, &repo, rev, &path.join("/"), q),
        ["treesize", rev, path @ ..] => {
            let snap = snapshot(&repo, rev)?;
            let under = path.join("/");
            let nodes = snap.list(&under, true).ok_or(ApiError::EntryNotFound)?;
            Ok(treesize(&under, &nodes))
        }
        ["paths-info", rev] => {
            let snap = snapshot(&repo, rev)?;
            let paths = listing::paths_from_body(&req.body)?;
            Ok(paths_info(&snap.paths_info(&paths)))
        }
        _ => Err(ApiError::NoRoute),
    }
}

fn tree(ctx: &Ctx, repo: &Repo, rev: &str, under: &str, q: &Query) -> Result<Response, ApiError> {
    let snap = snapshot(repo, rev)?;
    let nodes = snap
        .list(under, q.flag("recursive"))
        .ok_or(ApiError::EntryNotFound)?;
    tree_page(ctx, (repo.kind, &repo.id), rev, under, q, &nodes)
}

/// One page of the listing `nodes` of `under`, with the `Link` to the next.
pub(super) fn tree_page(
    ctx: &Ctx,
    (kind, id): (Kind, &str),
    rev: &str,
    under: &str,
    q: &Query,
    nodes: &[Node],
) -> Result<Response, ApiError> {
    let recursive = q.flag("recursive");
    let page = listing::page(nodes, q.get("cursor"), ctx.page_size)?;
    let mut resp = json(&page.entries);
    if let Some(cursor) = page.next {
        let sub = if under.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_path(under))
        };
        let link = format!(
            "<{}/api/{}/{}/tree/{}{sub}?recursive={recursive}&expand={}&cursor={cursor}>; rel=\"next\"",
            ctx.base,
            kind.plural(),
            id,
            encode_segment(rev),
            q.flag("expand"),
        );
        resp = resp.header("Link", link);
    }
    Ok(resp)
}

/// `treesize`'s answer for the listing `nodes`.
pub(super) fn treesize(under: &str, nodes: &[Node]) -> Response {
    let size: u64 = nodes
        .iter()
        .map(|n| match n {
            Node::File(f) => f.size,
            Node::Dir(_) => 0,
        })
        .sum();
    json(&serde_json::json!({"path": under, "size": size}))
}

/// `paths-info`'s answer.
pub(super) fn paths_info(nodes: &[Node]) -> Response {
    let v: Vec<serde_json::Value> = nodes.iter().map(listing::entry_json).collect();
    json(&serde_json::Value::Array(v))
}

/// `/{id}/resolve/{rev}/{path}`: the file itself, never a redirect.
fn resolve(ctx: &Ctx, req: &Request, kind: Kind, segs: &[&str]) -> Result<Response, ApiError> {
    // `resolve` is the second or third segment: after a one- or two-part id.
    let at = match segs {
        [_, _, "resolve", ..] => 2,
        [_, "resolve", ..] => 1,
        _ => return Err(ApiError::NoRoute),
    };
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return Err(ApiError::MethodNotAllowed("GET, HEAD"));
    }
    let id = segs[..at].join("/");
    let repo = ctx.cache.repo(kind, &id).ok_or(ApiError::RepoNotFound)?;
    let [rev, path @ ..] = &segs[at + 1..] else {
        return Err(ApiError::NoRoute);
    };
    if path.iter().any(|p| p.contains('/')) {
        return Err(ApiError::BadRequest("Invalid path"));
    }
    let snap = snapshot(&repo, rev)?;
    let path = path.join("/");
    let blob = snap.open(&path).ok_or(ApiError::EntryNotFound)?;
    file_response(req, rev, &snap.commit, blob)
}

/// A cache file's answer to `req` for revision `rev` (at `commit`).
pub(super) fn file_response(
    req: &Request,
    rev: &str,
    commit: &str,
    blob: super::cache::Blob,
) -> Result<Response, ApiError> {
    let head = file_head(req, rev, commit, &blob.meta, blob.modified)?;
    Ok(Response {
        body: Body::File {
            file: blob.file,
            offset: head.start,
            len: head.count,
        },
        ..head.resp
    })
}

/// A file answer without its body: the status and headers for `req`'s
/// range, and which bytes the body must carry.
pub(super) struct FileHead {
    pub resp: Response,
    pub start: u64,
    pub count: u64,
}

pub(super) fn file_head(
    req: &Request,
    rev: &str,
    commit: &str,
    meta: &super::cache::FileMeta,
    modified: SystemTime,
) -> Result<FileHead, ApiError> {
    let len = meta.size;
    let etag = format!("\"{}\"", meta.etag);
    let last_modified = httpdate::fmt_http_date(modified.max(SystemTime::UNIX_EPOCH));
    let v = Validators {
        etag: &etag,
        last_modified: &last_modified,
    };
    let part = range::choose(req.header("range"), req.header("if-range"), &v, len);
    let (status, start, count) = match part {
        Part::Whole => (200, 0, len),
        Part::Range { start, end } => (206, start, end - start + 1),
        Part::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(len)),
    };
    let name = meta.path.rsplit('/').next().unwrap_or("");
    let mut resp = Response {
        status,
        headers: vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("Accept-Ranges", "bytes".to_string()),
            ("ETag", etag.clone()),
            ("Last-Modified", last_modified.clone()),
            ("X-Repo-Commit", commit.to_string()),
            ("X-Linked-Etag", etag.clone()),
            ("X-Linked-Size", len.to_string()),
            ("Content-Disposition", disposition(name)),
            // A commit's file never changes; a branch may move: a cache in
            // front (docs/fleet.md) keeps the first for good and the second
            // briefly.
            (
                "Cache-Control",
                if super::cache::is_commit(rev) {
                    "public, max-age=31536000, immutable"
                } else {
                    "public, max-age=60"
                }
                .to_string(),
            ),
        ],
        body: Body::Bytes(Vec::new()),
    };
    if status == 206 {
        resp = resp.header(
            "Content-Range",
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(FileHead { resp, start, count })
}

/// `inline` with the file name, as the Hub sends it: UTF-8 in `filename*`,
/// a plain-ASCII fallback in `filename`.
fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "inline; filename*=UTF-8''{}; filename=\"{ascii}\";",
        encode_segment(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_climb_or_merge() {
        assert_eq!(
            decode_segments("a/refs%2Fpr%2F1/b%20c").unwrap(),
            ["a", "refs/pr/1", "b c"]
        );
        for bad in ["a/../b", "a/%2e%2e/b", "a/%2E/b", "a/%00", "a/%ff"] {
            assert!(decode_segments(bad).is_err(), "{bad}");
        }
        assert_eq!(
            disposition("a\"b\r.txt"),
            "inline; filename*=UTF-8''a%22b%0D.txt; filename=\"a_b_.txt\";"
        );
    }
}
