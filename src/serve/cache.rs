//! Reading the Hugging Face cache layout, as huggingface_hub writes it:
//!
//! ```text
//! DIR/models--ORG--NAME/            (datasets--ORG--NAME/ for datasets)
//!     refs/<revision>               the commit a branch or tag points to
//!     snapshots/<commit>/<path>     -> ../../blobs/<etag> (relative links)
//!     blobs/<etag>                  the bytes (sha256 for LFS, git sha1 else),
//!                                   or -> ../../blobs/<h[..2]>/<h>: huggingface_hub's
//!                                   store of Xet files (storage::shared_blobs)
//!     trees/<commit>.json           huggingface_hub's listing, when present
//! ```
//!
//! Every name comes from a client, so nothing here is opened by path: the
//! repo folder, its sub-folders and the snapshot's folders are opened one
//! component at a time with `O_NOFOLLOW` below the cache folder's handle.
//! A snapshot's file is the one link followed, and not by the kernel: its
//! target must read exactly `../` (depth + 2 times) `blobs/<name>`, and
//! `<name>` is then opened in the repo's own `blobs/` folder, again without
//! following a link, unless it is huggingface_hub's link into its store,
//! whose exact shape is checked and whose entry is opened the same way from
//! the cache folder. A link that points anywhere else is refused, so no
//! request can read outside the repo folder and the store.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use serde::Deserialize;

use crate::storage::StorageError;
use crate::storage::folder::Folder;
use crate::storage::shared_blobs;

/// A model or a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Model,
    Dataset,
}

impl Kind {
    /// The word in API paths and cache folder names.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }

    /// The kind an API path's word names (`models`, `datasets`).
    pub fn from_plural(word: &str) -> Option<Kind> {
        [Kind::Model, Kind::Dataset]
            .into_iter()
            .find(|k| k.plural() == word)
    }

    /// What precedes the repo id in `resolve` URLs.
    pub fn url_prefix(self) -> &'static str {
        match self {
            Kind::Model => "",
            Kind::Dataset => "datasets/",
        }
    }
}

/// The cache folder, held open.
#[derive(Clone, Debug)]
pub struct Cache {
    root: Folder,
}

impl Cache {
    /// The cache at `path`, which must exist (nothing is created).
    pub fn open(path: &Path) -> Result<Cache, StorageError> {
        Ok(Cache {
            root: Folder::open_existing(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The repo `id` (`ORG/NAME` or `NAME`) if the cache holds it.
    pub fn repo(&self, kind: Kind, id: &str) -> Option<Repo> {
        if !valid_repo_id(id) {
            return None;
        }
        let name = format!("{}--{}", kind.plural(), id.replace('/', "--"));
        let dir = self.root.find(Path::new(&name))?;
        Some(Repo {
            root: self.root.clone(),
            dir,
            id: id.to_string(),
            kind,
        })
    }
}

/// A repo id as the Hub allows them: one or two names of letters, digits,
/// `-`, `_` and `.`, not starting with `.` or `-`, without `--` or `..`
/// (which would make the cache folder name ambiguous or climb).
pub fn valid_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with(['.', '-'])
                && !p.contains("--")
                && !p.contains("..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// A repo folder of the cache.
#[derive(Clone, Debug)]
pub struct Repo {
    /// The cache folder (huggingface_hub's store of Xet files is in it).
    root: Folder,
    dir: Folder,
    pub id: String,
    pub kind: Kind,
}

/// Why a revision has no snapshot here.
#[derive(Debug, PartialEq, Eq)]
pub enum RevError {
    /// No ref by that name, no snapshot for that commit.
    NotFound,
}

impl Repo {
    /// The snapshot `rev` names: a commit with a snapshot folder, or a
    /// branch, tag or `refs/pr/N` whose file in `refs/` holds a commit.
    pub fn snapshot(&self, rev: &str) -> Result<Snapshot, RevError> {
        let commit = if is_commit(rev) {
            rev.to_string()
        } else {
            self.read_ref(rev).ok_or(RevError::NotFound)?
        };
        let dir = self
            .dir
            .find(&Path::new("snapshots").join(&commit))
            .ok_or(RevError::NotFound)?;
        let blobs = self.dir.find(Path::new("blobs"));
        let trees = self.read_trees(&commit);
        Ok(Snapshot {
            root: self.root.clone(),
            dir,
            blobs,
            commit,
            trees,
        })
    }

    fn read_ref(&self, rev: &str) -> Option<String> {
        let parts: Vec<&str> = rev.split('/').collect();
        if parts.iter().any(|p| !plain_name(p)) {
            return None;
        }
        let (name, folders) = parts.split_last()?;
        let mut dir = self.dir.find(Path::new("refs"))?;
        for f in folders {
            dir = dir.find(Path::new(f))?;
        }
        let text = read_small(&dir, name, 256)?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    /// huggingface_hub's `trees/<commit>.json` (blob ids and LFS hashes as
    /// the Hub listed them), when present and readable.
    fn read_trees(&self, commit: &str) -> Option<HashMap<String, TreeEntry>> {
        let dir = self.dir.find(Path::new("trees"))?;
        let text = read_small(&dir, &format!("{commit}.json"), 64 << 20)?;
        let file: TreeFile = serde_json::from_str(&text).ok()?;
        (file.format_version == 1).then_some(file.files)
    }
}

#[derive(Deserialize)]
struct TreeFile {
    format_version: u32,
    files: HashMap<String, TreeEntry>,
}

/// One file of huggingface_hub's tree listing.
#[derive(Clone, Debug, Deserialize)]
pub struct TreeEntry {
    pub size: u64,
    pub blob_id: String,
    pub lfs_sha256: Option<String>,
}

/// A 40-hex commit id.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name that stays in its folder: not empty, `.` or `..`, no `/`, no NUL,
/// not starting with `.` (git refuses such ref names too).
fn plain_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\0', '\\'])
}

fn read_small(dir: &Folder, name: &str, max: u64) -> Option<String> {
    let f = dir.open_read(OsStr::new(name)).ok()?;
    let mut text = String::new();
    f.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// One commit's files.
#[derive(Debug)]
pub struct Snapshot {
    root: Folder,
    dir: Folder,
    blobs: Option<Folder>,
    pub commit: String,
    trees: Option<HashMap<String, TreeEntry>>,
}

/// A file of a snapshot, opened.
#[derive(Debug)]
pub struct Blob {
    pub file: File,
    pub meta: FileMeta,
    pub modified: std::time::SystemTime,
}

/// What the Hub lists of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub path: String,
    pub size: u64,
    /// The name of the blob: the file's ETag (sha256 for LFS files, the
    /// git blob sha1 for the others).
    pub etag: String,
    /// The git object id (for LFS files: of the pointer).
    pub blob_id: String,
    /// The sha256 of an LFS file.
    pub lfs_sha256: Option<String>,
}

/// A listing's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(FileMeta),
    Dir(String),
}

impl Node {
    pub fn path(&self) -> &str {
        match self {
            Node::File(f) => &f.path,
            Node::Dir(d) => d,
        }
    }
}

/// The components of a repo path, or `None` for one that could climb or
/// name nothing (`..`, `.`, empty components, NUL).
pub fn path_parts(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains(['\0', '\\']))
        .then_some(parts)
}

impl Snapshot {
    /// The file at `path`, opened, or `None` when the snapshot has no such
    /// file (or only a link that leads elsewhere than the repo's blobs).
    pub fn open(&self, path: &str) -> Option<Blob> {
        let parts = path_parts(path)?;
        let (name, folders) = parts.split_last()?;
        let mut dir = self.dir.clone();
        for f in folders {
            dir = dir.find(Path::new(f))?;
        }
        let (file, etag) = match self.blob_name(&dir, name, folders.len())? {
            Some(etag) => (
                shared_blobs::open_blob(&self.root, self.blobs.as_ref()?, OsStr::new(&etag))?,
                etag,
            ),
            // A plain file in the snapshot (caches made without links).
            None => (dir.open_read(OsStr::new(name)).ok()?, String::new()),
        };
        let md = file.metadata().ok()?;
        if !md.is_file() {
            return None;
        }
        let meta = self.meta(path, md.len(), etag)?;
        Some(Blob {
            file,
            meta,
            modified: md.modified().unwrap_or(std::time::UNIX_EPOCH),
        })
    }

    /// For the entry `name` at `depth` folders below the snapshot: the blob
    /// its link names (`Some(Some)`), `Some(None)` for a regular file,
    /// `None` for a link that does not lead to `../…/blobs/<name>` or for
    /// anything else.
    fn blob_name(&self, dir: &Folder, name: &str, depth: usize) -> Option<Option<String>> {
        let st = dir.stat(OsStr::new(name))?;
        if st.is_file {
            return Some(None);
        }
        if !st.is_link {
            return None;
        }
        let target = dir.read_link(OsStr::new(name))?;
        let target = target.to_str()?;
        let expected = "../".repeat(depth + 2) + "blobs/";
        let blob = target.strip_prefix(&expected).filter(|b| plain_name(b));
        let Some(blob) = blob else {
            tracing::warn!(
                "refused {}/{name}: its link leads outside the repo's blobs",
                dir.path().display()
            );
            return None;
        };
        Some(Some(blob.to_string()))
    }

    /// The metadata of a file: from huggingface_hub's tree listing when it
    /// agrees on the size, else derived from the blob's name. A plain file
    /// (a cache made without links) needs the listing: it has no blob name
    /// to give its ETag.
    fn meta(&self, path: &str, size: u64, etag: String) -> Option<FileMeta> {
        if let Some(t) = self.trees.as_ref().and_then(|t| t.get(path))
            && t.size == size
        {
            let etag = match (&t.lfs_sha256, etag.is_empty()) {
                (Some(sha), true) => sha.clone(),
                (None, true) => t.blob_id.clone(),
                _ => etag,
            };
            return Some(FileMeta {
                path: path.to_string(),
                size,
                etag,
                blob_id: t.blob_id.clone(),
                lfs_sha256: t.lfs_sha256.clone(),
            });
        }
        (!etag.is_empty()).then(|| derived_meta(path, size, etag))
    }

    /// The entries below `under` ("" for the top): its direct children, or
    /// with `recursive` everything below, sorted by path. `None` when
    /// `under` is not a folder of the snapshot.
    pub fn list(&self, under: &str, recursive: bool) -> Option<Vec<Node>> {
        let mut dir = self.dir.clone();
        if !under.is_empty() {
            for f in path_parts(under)? {
                dir = dir.find(Path::new(f))?;
            }
        }
        let mut out = Vec::new();
        self.walk(&dir, under, recursive, &mut out);
        out.sort_by(|a, b| a.path().cmp(b.path()));
        Some(out)
    }

    fn walk(&self, dir: &Folder, prefix: &str, recursive: bool, out: &mut Vec<Node>) {
        let depth = if prefix.is_empty() {
            0
        } else {
            prefix.split('/').count()
        };
        let Ok(entries) = dir.entries() else {
            return;
        };
        for (name, st) in entries {
            let Some(name) = name.to_str() else {
                continue;
            };
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            if st.is_dir {
                out.push(Node::Dir(path.clone()));
                if recursive && let Some(sub) = dir.find(Path::new(name)) {
                    self.walk(&sub, &path, true, out);
                }
                continue;
            }
            if let Some(meta) = self.stat_file(dir, name, &path, depth) {
                out.push(Node::File(meta));
            }
        }
    }

    /// A file's metadata without opening it (the blob's size by `fstatat`).
    fn stat_file(&self, dir: &Folder, name: &str, path: &str, depth: usize) -> Option<FileMeta> {
        let (size, etag) = match self.blob_name(dir, name, depth)? {
            Some(etag) => {
                let st =
                    shared_blobs::stat_blob(&self.root, self.blobs.as_ref()?, OsStr::new(&etag))?;
                (st.len, etag)
            }
            None => (dir.stat(OsStr::new(name))?.len, String::new()),
        };
        self.meta(path, size, etag)
    }

    /// The entries at exactly these paths (files or folders), in the order
    /// asked; missing ones are left out, as the Hub's `paths-info` does.
    pub fn paths_info(&self, paths: &[String]) -> Vec<Node> {
        let mut out = Vec::new();
        for p in paths {
            let p = p.trim_matches('/');
            let Some(parts) = path_parts(p) else {
                continue;
            };
            let Some((name, folders)) = parts.split_last() else {
                continue;
            };
            let mut dir = Some(self.dir.clone());
            for f in folders {
                dir = dir.and_then(|d| d.find(Path::new(f)));
            }
            let Some(dir) = dir else {
                continue;
            };
            if dir.find(Path::new(name)).is_some() {
                out.push(Node::Dir(p.to_string()));
            } else if let Some(meta) = self.stat_file(&dir, name, p, folders.len()) {
                out.push(Node::File(meta));
            }
        }
        out
    }
}

/// Metadata from the blob's name alone: a 64-hex name is an LFS file's
/// sha256 (its git object is the LFS pointer), anything else is the git
/// blob sha1 itself.
fn derived_meta(path: &str, size: u64, etag: String) -> FileMeta {
    let lfs = etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit());
    let blob_id = if lfs {
        git_blob_sha1(lfs_pointer(&etag, size).as_bytes())
    } else {
        etag.clone()
    };
    FileMeta {
        path: path.to_string(),
        size,
        blob_id,
        lfs_sha256: lfs.then(|| etag.clone()),
        etag,
    }
}

/// The Git LFS pointer file of an object, in its canonical form.
pub fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// git's object id of a blob with these bytes.
pub fn git_blob_sha1(data: &[u8]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_that_could_climb_are_refused() {
        for ok in ["gpt2", "org/name", "a.b/c_d-1"] {
            assert!(valid_repo_id(ok), "{ok}");
        }
        for bad in [
            "", "..", "a/../b", "a/b/c", ".x", "a--b", "/a", "a/", "a%2f", "a\0",
        ] {
            assert!(!valid_repo_id(bad), "{bad:?}");
        }
        assert!(path_parts("a/b.txt").is_some());
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a/.."] {
            assert!(path_parts(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn lfs_metadata_derived_from_the_blob_name() {
        let sha = "a".repeat(64);
        let m = derived_meta("w.bin", 5, sha.clone());
        assert_eq!(m.lfs_sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(
            m.blob_id,
            git_blob_sha1(lfs_pointer(&sha, 5).as_bytes()),
            "the git object of an LFS file is its pointer"
        );
        let m = derived_meta("c.json", 3, "b".repeat(40));
        assert_eq!(
            (m.blob_id.as_str(), m.lfs_sha256),
            ("b".repeat(40).as_str(), None)
        );
        // git's own id of "hello\n".
        assert_eq!(
            git_blob_sha1(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
