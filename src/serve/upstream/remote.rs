//! A commit's listing as upstream gave it (a file list), in the shapes the
//! cache's snapshot has: folders implied by the paths, entries sorted by
//! path, so the routes page it and answer `paths-info` as for a snapshot.

use std::collections::BTreeSet;

use crate::hub::api::RepoFile;
use crate::serve::cache::{FileMeta, Node, git_blob_sha1, lfs_pointer};

/// Every file and folder of a commit.
pub struct RemoteTree {
    /// Sorted by path.
    nodes: Vec<Node>,
}

/// A listed file as the cache would describe it; `None` without a hash
/// (nothing to name its blob by).
pub fn meta_of(f: &RepoFile) -> Option<FileMeta> {
    let etag = crate::hub::cache::blob_name(f)?;
    let lfs_sha256 = if f.lfs { f.sha256.clone() } else { None };
    let blob_id = match (&f.oid, &lfs_sha256) {
        (Some(o), _) => o.clone(),
        (None, Some(sha)) => git_blob_sha1(lfs_pointer(sha, f.size).as_bytes()),
        (None, None) => etag.clone(),
    };
    Some(FileMeta {
        path: f.path.clone(),
        size: f.size,
        etag,
        blob_id,
        lfs_sha256,
    })
}

impl RemoteTree {
    pub fn new(files: &[RepoFile]) -> RemoteTree {
        let mut dirs = BTreeSet::new();
        let mut nodes = Vec::with_capacity(files.len());
        for f in files {
            let mut at = 0;
            while let Some(i) = f.path[at..].find('/') {
                dirs.insert(f.path[..at + i].to_string());
                at += i + 1;
            }
            if let Some(m) = meta_of(f) {
                nodes.push(Node::File(m));
            }
        }
        nodes.extend(dirs.into_iter().map(Node::Dir));
        nodes.sort_by(|a, b| a.path().cmp(b.path()));
        RemoteTree { nodes }
    }

    /// The entries below `under` ("" for the top), or `None` when it is
    /// not a folder.
    pub fn list(&self, under: &str, recursive: bool) -> Option<Vec<Node>> {
        let prefix = if under.is_empty() {
            String::new()
        } else {
            if !self.is_dir(under) {
                return None;
            }
            format!("{under}/")
        };
        Some(
            self.nodes
                .iter()
                .filter(|n| {
                    n.path()
                        .strip_prefix(&prefix)
                        .is_some_and(|rest| recursive || !rest.contains('/'))
                })
                .cloned()
                .collect(),
        )
    }

    fn is_dir(&self, path: &str) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::Dir(d) if d == path))
    }

    /// The entries at exactly these paths, in the order asked.
    pub fn paths_info(&self, paths: &[String]) -> Vec<Node> {
        paths
            .iter()
            .filter_map(|p| {
                let p = p.trim_matches('/');
                self.nodes.iter().find(|n| n.path() == p).cloned()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> RepoFile {
        RepoFile {
            path: path.into(),
            size: 1,
            oid: Some("a".repeat(40)),
            lfs: false,
            sha256: None,
        }
    }

    #[test]
    fn folders_are_implied_and_listed_like_a_snapshot() {
        let t = RemoteTree::new(&[file("a.txt"), file("d/e/f.bin"), file("d/g.txt")]);
        let paths = |v: Vec<Node>| v.iter().map(|n| n.path().to_string()).collect::<Vec<_>>();
        assert_eq!(paths(t.list("", false).unwrap()), ["a.txt", "d"]);
        assert_eq!(
            paths(t.list("", true).unwrap()),
            ["a.txt", "d", "d/e", "d/e/f.bin", "d/g.txt"]
        );
        assert_eq!(paths(t.list("d", false).unwrap()), ["d/e", "d/g.txt"]);
        assert!(t.list("a.txt", false).is_none() && t.list("x", true).is_none());
        assert_eq!(
            paths(t.paths_info(&["d/g.txt".into(), "nope".into(), "d".into()])),
            ["d/g.txt", "d"]
        );
    }
}
