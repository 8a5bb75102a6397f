//! The Hub's JSON documents, made from a snapshot: repo info (siblings,
//! with `?blobs=true` sizes, blob ids and LFS hashes), tree pages with
//! cursor pagination, `paths-info` and `treesize`.
//!
//! Tree pages follow the Hub: at most `page_size` entries (1,000 on the
//! Hub), the next page named by an absolute `Link: <…>; rel="next"` URL
//! with an opaque `cursor`. Ours is the last path of the page (base64url),
//! so a page boundary stays right even if files are added to the cache
//! between two pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::cache::{FileMeta, Node, Repo, Snapshot, git_blob_sha1, lfs_pointer};
use super::error::ApiError;

/// A tree entry as `/tree` and `paths-info` list it.
pub fn entry_json(node: &Node) -> Value {
    match node {
        Node::Dir(path) => json!({
            "type": "directory",
            // Not git's tree id (that needs the whole tree): stable per path.
            "oid": git_blob_sha1(path.as_bytes()),
            "size": 0,
            "path": path,
        }),
        Node::File(f) => {
            let mut v = json!({"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path});
            if let Some(sha) = &f.lfs_sha256 {
                v["lfs"] = json!({
                    "oid": sha,
                    "size": f.size,
                    "pointerSize": lfs_pointer(sha, f.size).len(),
                });
            }
            v
        }
    }
}

fn sibling_json(f: &FileMeta, blobs: bool) -> Value {
    if !blobs {
        return json!({ "rfilename": f.path });
    }
    let mut v = json!({ "rfilename": f.path, "size": f.size, "blobId": f.blob_id });
    if let Some(sha) = &f.lfs_sha256 {
        v["lfs"] = json!({
            "sha256": sha,
            "size": f.size,
            "pointerSize": lfs_pointer(sha, f.size).len(),
        });
    }
    v
}

/// Repo info for `/api/{models|datasets}/{id}[/revision/{rev}]`.
pub fn repo_info(repo: &Repo, snap: &Snapshot, blobs: bool) -> Value {
    let files: Vec<FileMeta> = snap
        .list("", true)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match n {
            Node::File(f) => Some(f),
            Node::Dir(_) => None,
        })
        .collect();
    let author = repo.id.split_once('/').map(|(a, _)| a);
    let mut v = json!({
        "_id": &snap.commit[..24],
        "id": repo.id,
        "sha": snap.commit,
        "private": false,
        "gated": false,
        "disabled": false,
        "tags": [],
        "siblings": files.iter().map(|f| sibling_json(f, blobs)).collect::<Vec<_>>(),
        "usedStorage": files.iter().map(|f| f.size).sum::<u64>(),
    });
    if let Some(a) = author {
        v["author"] = json!(a);
    }
    if repo.kind == super::cache::Kind::Model {
        v["modelId"] = json!(repo.id);
    }
    v
}

/// One page of a tree listing.
pub struct Page {
    pub entries: Value,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// The page of `nodes` (sorted by path) after `cursor`.
pub fn page(nodes: &[Node], cursor: Option<&str>, page_size: usize) -> Result<Page, ApiError> {
    let start = match cursor {
        None => 0,
        Some(c) => {
            let after = URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(ApiError::BadRequest("Invalid cursor"))?;
            nodes.partition_point(|n| n.path() <= after.as_str())
        }
    };
    let end = (start + page_size.max(1)).min(nodes.len());
    let shown = &nodes[start..end];
    let next = (end < nodes.len())
        .then(|| shown.last().map(|n| URL_SAFE_NO_PAD.encode(n.path())))
        .flatten();
    Ok(Page {
        entries: Value::Array(shown.iter().map(entry_json).collect()),
        next,
    })
}

/// `paths` and `expand` from a paths-info body: a form
/// (`paths=a&paths=b&expand=true`, as huggingface_hub posts it) or JSON
/// (`{"paths": [...], "expand": true}`).
pub fn paths_from_body(body: &[u8]) -> Result<Vec<String>, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let list = v
            .get("paths")
            .ok_or(ApiError::BadRequest("Missing paths"))?;
        let paths = match list {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(ApiError::BadRequest("paths must be strings"))?,
            _ => return Err(ApiError::BadRequest("paths must be strings")),
        };
        return Ok(paths);
    }
    Ok(url::form_urlencoded::parse(body)
        .filter(|(k, _)| k == "paths" || k == "paths[]")
        .map(|(_, v)| v.into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<Node> {
        (0..n).map(|i| Node::Dir(format!("d{i:02}"))).collect()
    }

    #[test]
    fn pages_chain_by_cursor_until_the_end() {
        let nodes = files(7);
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let p = page(&nodes, cursor.as_deref(), 3).unwrap();
            for e in p.entries.as_array().unwrap() {
                seen.push(e["path"].as_str().unwrap().to_string());
            }
            cursor = p.next;
            if cursor.is_none() {
                break;
            }
        }
        let all: Vec<String> = nodes.iter().map(|n| n.path().to_string()).collect();
        assert_eq!(seen, all);
        assert_eq!(
            page(&nodes, Some("!!"), 3).err(),
            Some(ApiError::BadRequest("Invalid cursor"))
        );
    }

    #[test]
    fn paths_info_bodies_in_both_encodings() {
        assert_eq!(
            paths_from_body(b"paths=a.txt&paths=sub%2Fb.bin&expand=True").unwrap(),
            ["a.txt", "sub/b.bin"]
        );
        assert_eq!(
            paths_from_body(br#"{"paths":["x","y/z"],"expand":true}"#).unwrap(),
            ["x", "y/z"]
        );
        assert!(paths_from_body(br#"{"paths":[1]}"#).is_err());
    }
}
