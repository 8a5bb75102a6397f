//! The Hugging Face cache layout, as huggingface_hub 2.4 writes and reads it
//! (`file_download.py`), so that transformers, diffusers, vLLM and `hf`
//! find what hfd downloaded, and hfd finds what they downloaded:
//!
//! ```text
//! CACHE/CACHEDIR.TAG
//! CACHE/models--ORG--NAME/            (datasets--ORG--NAME for datasets)
//!   blobs/<etag>                      sha256 of LFS files, git blob sha1 of the others
//!                                     (or huggingface_hub's link into CACHE/blobs/, its
//!                                     store of Xet files: storage::shared_blobs)
//!   snapshots/<commit>/<path>         relative link to ../../blobs/<etag> (one ../ more per folder)
//!   refs/<revision>                   the commit a branch or tag named (none for a commit id)
//!   .hfd/                             hfd's own state: lock, file list, partial data
//! ```
//!
//! A blob's name is its hash, and a blob only gets that name once its data
//! is complete and verified: partial data lives in `.hfd/partial/`, never
//! under `blobs/`. So a blob of the right size is trusted without hashing
//! it again (as huggingface_hub does); `--verify` hashes them anyway.
//! Identical files share one blob, across paths and revisions.
//!
//! Every folder below the cache dir is opened by handle without following
//! links ([`Folder`]), like the local dir's.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::api::RepoFile;
use super::endpoint::{RepoId, RepoType};
use super::state::safe_relative;
use crate::storage::folder::{Folder, file_name};
use crate::storage::shared_blobs;

/// The text of `CACHEDIR.TAG` (the signature line is the standard's; the
/// rest says who wrote it), so backup tools skip the cache.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# A Hugging Face cache directory (written by hfd, read by huggingface_hub).\n\
# See https://bford.info/cachedir/ for what this file means.\n";

/// The default cache, as huggingface_hub finds it: `$HF_HUB_CACHE`, else
/// `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn default_cache_dir(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(d) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return Ok(expand_home(&d, &env));
    }
    if let Some(h) = set("HF_HOME") {
        return Ok(expand_home(&h, &env).join("hub"));
    }
    let base = match set("XDG_CACHE_HOME") {
        Some(x) => expand_home(&x, &env),
        None => match set("HOME") {
            Some(home) => Path::new(&home).join(".cache"),
            None => {
                return Err("--cache: no HF_HUB_CACHE, HF_HOME or HOME to find the \
                            Hugging Face cache in; name it with --cache-dir DIR"
                    .into());
            }
        },
    };
    Ok(base.join("huggingface").join("hub"))
}

/// `~/x` → `$HOME/x`, as Python's `expanduser` does.
fn expand_home(p: &str, env: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match (p.strip_prefix("~/"), env("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if p == "~" => env("HOME").map_or_else(|| PathBuf::from(p), PathBuf::from),
        _ => PathBuf::from(p),
    }
}

/// `models--ORG--NAME` (`datasets--…`): the repo's folder in the cache.
pub fn repo_folder_name(t: RepoType, repo: &RepoId) -> String {
    std::iter::once(t.api_segment())
        .chain(repo.as_str().split('/'))
        .collect::<Vec<_>>()
        .join("--")
}

/// The blob name of a file: the hash huggingface_hub calls its etag
/// (sha256 for LFS files, the git blob sha1 for the others); `None` when
/// the listing gave no usable hash.
pub fn blob_name(f: &RepoFile) -> Option<String> {
    f.checksum().map(|c| c.hex().to_string())
}

/// True for a full 40-hex commit id (huggingface_hub writes no ref for it).
pub fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// huggingface_hub's cached listing of a commit (`_tree_cache.py`,
/// `trees/<commit>.json`): with it, `snapshot_download` skips the tree call
/// and, offline, tells a complete snapshot from an incomplete one. `None`
/// when a file lacks what the format needs (a git blob id; an LFS sha256).
pub fn tree_json(files: &[RepoFile]) -> Option<Vec<u8>> {
    let mut out = serde_json::Map::new();
    for f in files {
        let mut e = serde_json::Map::new();
        e.insert("size".into(), f.size.into());
        e.insert("blob_id".into(), f.oid.clone()?.into());
        if f.lfs {
            e.insert("lfs_sha256".into(), f.sha256.clone()?.into());
            e.insert("lfs_size".into(), f.size.into());
        }
        out.insert(f.path.clone(), e.into());
    }
    let doc = serde_json::json!({ "format_version": 1, "files": out });
    serde_json::to_vec_pretty(&doc).ok()
}

/// Writes `trees/<commit>.json` in `folder` unless one is there (it may be
/// huggingface_hub's own, with more in it).
pub fn write_tree_in(folder: &Folder, commit: &str, files: &[RepoFile]) -> Result<(), String> {
    if !is_commit_id(commit) {
        return Ok(());
    }
    let Some(json) = tree_json(files) else {
        return Ok(());
    };
    let trees = folder.sub(Path::new("trees")).map_err(|e| e.to_string())?;
    let name = format!("{commit}.json");
    if trees.stat(OsStr::new(&name)).is_some() {
        return Ok(());
    }
    trees
        .write_replace(OsStr::new(&name), &json)
        .map_err(|e| e.to_string())
}

/// Where a repo's snapshot of `commit` is: `CACHE/FOLDER/snapshots/COMMIT`,
/// `FOLDER` being [`repo_folder_name`].
pub fn snapshot_dir(cache_dir: &Path, folder: &str, commit: &str) -> PathBuf {
    cache_dir.join(folder).join("snapshots").join(commit)
}

/// Where a repo's blobs are: `CACHE/FOLDER/blobs`.
pub fn blobs_dir(cache_dir: &Path, folder: &str) -> PathBuf {
    cache_dir.join(folder).join("blobs")
}

/// One repo's folder in the cache, its sub-folders held open.
pub struct RepoCache {
    cache_dir: PathBuf,
    top: Folder,
    /// `models--ORG--NAME`, relative to the cache dir.
    name: String,
    repo: Folder,
    blobs: Folder,
}

impl RepoCache {
    /// Opens (creating) the repo's folder with `blobs/`, `snapshots/` and
    /// `refs/` (huggingface_hub's scan calls a repo folder without
    /// `snapshots/` corrupted).
    pub fn open(cache_dir: &Path, t: RepoType, repo: &RepoId) -> Result<RepoCache, String> {
        let name = repo_folder_name(t, repo);
        let top = Folder::open(cache_dir).map_err(|e| e.to_string())?;
        let repo = top.sub(Path::new(&name)).map_err(|e| e.to_string())?;
        let blobs = repo.sub(Path::new("blobs")).map_err(|e| e.to_string())?;
        for d in ["snapshots", "refs"] {
            repo.sub(Path::new(d)).map_err(|e| e.to_string())?;
        }
        if top.stat(OsStr::new("CACHEDIR.TAG")).is_none() {
            // Advisory only: a cache without it works the same.
            let _ = top.write_replace(OsStr::new("CACHEDIR.TAG"), CACHEDIR_TAG.as_bytes());
        }
        Ok(RepoCache {
            cache_dir: cache_dir.to_path_buf(),
            top,
            name,
            repo,
            blobs,
        })
    }

    /// The repo's folder as it is, for a dry run: nothing is created;
    /// `None` when the cache holds no `blobs/` folder for the repo (links
    /// are not followed below the cache dir, as for [`RepoCache::open`]).
    pub fn peek(cache_dir: &Path, t: RepoType, repo: &RepoId) -> Option<RepoCache> {
        let name = repo_folder_name(t, repo);
        let top = Folder::open_existing(cache_dir).ok()?;
        let repo = top.find(Path::new(&name))?;
        let blobs = repo.find(Path::new("blobs"))?;
        Some(RepoCache {
            cache_dir: cache_dir.to_path_buf(),
            top,
            name,
            repo,
            blobs,
        })
    }

    /// The cache dir the user named (links below it are not followed).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The repo's folder, relative to the cache dir (hfd's `.hfd/` is in it).
    pub fn repo_rel(&self) -> &Path {
        Path::new(&self.name)
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.blobs.path_of(OsStr::new(blob))
    }

    /// A complete blob of `size` bytes is here: a regular file, or
    /// huggingface_hub's link into its store of Xet files (no other link).
    pub fn has_blob(&self, blob: &str, size: u64) -> bool {
        shared_blobs::stat_blob(&self.top, &self.blobs, OsStr::new(blob))
            .is_some_and(|e| e.len == size)
    }

    /// `blob` is huggingface_hub's link into its store, to a regular file.
    pub fn is_shared_link(&self, blob: &str) -> bool {
        shared_blobs::stat_linked(&self.top, &self.blobs, OsStr::new(blob)).is_some()
    }

    /// Makes `snapshots/<commit>/<rel>` a relative link to the blob, unless
    /// it is one already.
    pub fn link(&self, commit: &str, rel: &Path, blob: &str) -> Result<(), String> {
        let dir = Path::new("snapshots")
            .join(commit)
            .join(rel.parent().unwrap_or(Path::new("")));
        let folder = self.repo.sub(&dir).map_err(|e| e.to_string())?;
        let mut target = PathBuf::new();
        for _ in 0..=rel.components().count() {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob);
        let name = file_name(rel);
        if folder.read_link(name).as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        if folder.stat(name).is_some_and(|e| e.is_dir) {
            return Err(format!(
                "{} is a folder where the file's link belongs; remove it",
                folder.path_of(name).display()
            ));
        }
        folder.symlink(&target, name).map_err(|e| e.to_string())
    }

    /// `refs/<revision>` = `commit`, written whole, for a branch or tag
    /// (`refs/pr/1` becomes `refs/refs/pr/1`, as huggingface_hub has it);
    /// nothing for a commit id.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), String> {
        if revision == commit {
            return Ok(());
        }
        let rel = safe_relative(revision).map_err(|e| format!("revision: {e}"))?;
        let dir = Path::new("refs").join(rel.parent().unwrap_or(Path::new("")));
        let folder = self.repo.sub(&dir).map_err(|e| e.to_string())?;
        let name = file_name(&rel);
        if folder.read_small(name, 256).as_deref() == Some(commit.as_bytes()) {
            return Ok(());
        }
        folder
            .write_atomic(name, commit.as_bytes())
            .map_err(|e| e.to_string())
    }

    /// The commit's listing for huggingface_hub ([`tree_json`]).
    pub fn write_tree(&self, commit: &str, files: &[RepoFile]) -> Result<(), String> {
        write_tree_in(&self.repo, commit, files)
    }

    /// The commit `refs/<revision>` names, if any.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let rel = safe_relative(revision).ok()?;
        let dir = Path::new("refs").join(rel.parent().unwrap_or(Path::new("")));
        let folder = self.repo.find(&dir)?;
        let bytes = folder.read_small(file_name(&rel), 256)?;
        String::from_utf8(bytes).ok().filter(|c| is_commit_id(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn default_cache_dir_follows_huggingface_hub() {
        let d = |p: &[(&str, &str)]| default_cache_dir(env_of(p)).unwrap();
        assert_eq!(
            d(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("HOME", "/u")]),
            PathBuf::from("/c")
        );
        assert_eq!(
            d(&[("HUGGINGFACE_HUB_CACHE", "/old"), ("HOME", "/u")]),
            PathBuf::from("/old")
        );
        assert_eq!(
            d(&[("HF_HOME", "~/hf"), ("HOME", "/u")]),
            PathBuf::from("/u/hf/hub")
        );
        assert_eq!(
            d(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/u")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            d(&[("HOME", "/u")]),
            PathBuf::from("/u/.cache/huggingface/hub")
        );
        assert!(default_cache_dir(env_of(&[])).is_err());
    }

    #[test]
    fn names_links_and_refs() {
        let repo = RepoId::parse("org/name").unwrap();
        assert_eq!(
            repo_folder_name(RepoType::Model, &repo),
            "models--org--name"
        );
        let gpt2 = RepoId::parse("gpt2").unwrap();
        assert_eq!(repo_folder_name(RepoType::Dataset, &gpt2), "datasets--gpt2");
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("main") && !is_commit_id(&"A".repeat(40)));

        let dir = tempfile::tempdir().unwrap();
        let c = RepoCache::open(dir.path(), RepoType::Model, &repo).unwrap();
        let root = dir.path().join("models--org--name");
        std::fs::write(root.join("blobs/abc"), b"x").unwrap();
        assert!(c.has_blob("abc", 1) && !c.has_blob("abc", 2) && !c.has_blob("z", 1));
        let commit = "c".repeat(40);
        c.link(&commit, Path::new("sub/dir/f.txt"), "abc").unwrap();
        c.link(&commit, Path::new("top.txt"), "abc").unwrap();
        c.link(&commit, Path::new("top.txt"), "abc").unwrap();
        let snap = root.join("snapshots").join(&commit);
        assert_eq!(
            std::fs::read_link(snap.join("sub/dir/f.txt")).unwrap(),
            PathBuf::from("../../../../blobs/abc")
        );
        assert_eq!(std::fs::read(snap.join("top.txt")).unwrap(), b"x");
        c.write_ref("refs/pr/1", &commit).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("refs/refs/pr/1")).unwrap(),
            commit
        );
        assert_eq!(c.read_ref("refs/pr/1").as_deref(), Some(commit.as_str()));
        c.write_ref(&commit, &commit).unwrap();
        assert!(!root.join("refs").join(&commit).exists());
        assert!(c.write_ref("../x", &commit).is_err());
        assert!(dir.path().join("CACHEDIR.TAG").is_file());
    }

    #[test]
    fn tree_json_is_huggingface_hubs_format() {
        let git = RepoFile {
            path: "a.txt".into(),
            size: 3,
            oid: Some("1".repeat(40)),
            lfs: false,
            sha256: None,
        };
        let lfs = RepoFile {
            path: "w.bin".into(),
            size: 9,
            oid: Some("2".repeat(40)),
            lfs: true,
            sha256: Some("3".repeat(64)),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&tree_json(&[git.clone(), lfs.clone()]).unwrap()).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(
            v["files"]["a.txt"],
            serde_json::json!({"size": 3, "blob_id": "1".repeat(40)})
        );
        assert_eq!(v["files"]["w.bin"]["lfs_sha256"], "3".repeat(64));
        assert_eq!(v["files"]["w.bin"]["lfs_size"], 9);
        let no_oid = RepoFile { oid: None, ..git };
        assert!(tree_json(&[no_oid, lfs]).is_none());
    }
}
