//! What hfd keeps in `LOCAL_DIR/.hfd/`, and the rules that keep re-runs
//! both cheap and honest.
//!
//! | file | content |
//! |---|---|
//! | `repo_metadata.json` | the repo-info answer, as hfd.sh keeps it |
//! | `manifest` | `size<TAB>path` per selected file, as hfd.sh writes it |
//! | `files.json` | the complete file list of one commit (sizes, hashes) |
//! | `verified.json` | files on disk whose hash was checked, with a fingerprint |
//! | `partial/<path>.part`, `.part.ctl` | downloads in progress |
//! | `xet/<blake3 of path>.json` | the Xet layout of each completed Xet file, for its next update |
//! | `lock` | held while an hfd runs here |
//!
//! No token is ever written: none of these records contains one.
//!
//! A file counts as present and verified when its recorded fingerprint
//! (size, mtime, ctime, inode) still matches and its recorded hash is the one
//! the listing expects. Anything that rewrites, truncates, replaces or
//! touches the file changes the fingerprint (ctime cannot be set from user
//! space), and then the file is hashed again before it is trusted. Only
//! corruption that bypasses the file system (bit rot) keeps the fingerprint;
//! `--verify` re-hashes every file to catch that too.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::api::RepoFile;
use crate::storage::folder::{Folder, Open, file_name};
use crate::xet::reuse::Layout;

/// Our folder inside the local dir.
pub const HFD_DIR: &str = ".hfd";
const FORMAT: u32 = 1;

/// Checks a repo path from the Hub and returns it as a relative path that
/// stays inside the local dir: no absolute paths, no `.`/`..` or empty
/// segments, nothing inside our own `.hfd/`, no NUL.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let refuse = |why: &str| Err(format!("unsafe file name {path:?}: {why}"));
    if path.is_empty() {
        return refuse("it is empty");
    }
    if path.starts_with('/') {
        return refuse("an absolute path would be written outside the local dir");
    }
    if path.chars().any(|c| c.is_control()) {
        // NUL cannot be in a file name; newlines and escape sequences would
        // garble hfd.sh's manifest format and the terminal.
        return refuse("it contains control characters");
    }
    let mut out = PathBuf::new();
    for (i, seg) in path.split('/').enumerate() {
        match seg {
            "" => return refuse("it has an empty path segment"),
            "." | ".." => {
                return refuse("a '.' or '..' segment could take it outside the local dir");
            }
            HFD_DIR if i == 0 => return refuse("it would overwrite hfd's own .hfd folder"),
            _ => out.push(seg),
        }
    }
    // Belt and braces: what we built must be plain names only.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse("it is not a plain relative path");
    }
    Ok(out)
}

/// A cheap identity of a file's current content: anything that writes to
/// the file, replaces it or changes its size changes this.
pub fn fingerprint(meta: &fs::Metadata) -> String {
    format!(
        "{}:{}.{:09}:{}.{:09}:{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino()
    )
}

/// The file list of one commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Listing {
    pub format: u32,
    pub repo: String,
    pub repo_type: String,
    pub commit: String,
    pub files: Vec<RepoFile>,
}

impl Listing {
    pub fn new(repo: &str, repo_type: &str, commit: &str, files: Vec<RepoFile>) -> Listing {
        Listing {
            format: FORMAT,
            repo: repo.into(),
            repo_type: repo_type.into(),
            commit: commit.into(),
            files,
        }
    }
}

/// One verified file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub size: u64,
    /// `sha-256:<hex>` or `git-sha1:<hex>`.
    pub hash: String,
    /// The commit it was downloaded (or checked) for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub fingerprint: String,
}

/// Every verified file, by repo path.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verified {
    pub format: u32,
    pub files: BTreeMap<String, Record>,
}

/// What hfd keeps of a completed Xet file for its next update: the
/// content it describes and its terms ([`crate::xet::reuse`]). When a new
/// version of the file is fetched, the terms it shares with this one are
/// copied from the file on disk instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct XetRecord {
    pub format: u32,
    pub path: String,
    /// `sha-256:<hex>` of the content the layout describes.
    pub hash: String,
    pub size: u64,
    pub file_id: String,
    pub terms: Layout,
}

impl XetRecord {
    pub fn new(path: &str, hash: String, size: u64, file_id: String, terms: Layout) -> XetRecord {
        XetRecord {
            format: FORMAT,
            path: path.into(),
            hash,
            size,
            file_id,
            terms,
        }
    }

    /// The sha256 of the content, when the record names one.
    pub fn sha256(&self) -> Option<&str> {
        let hex = self.hash.strip_prefix("sha-256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
    }
}

/// The name of a file's Xet record: repo paths may be long or nested, the
/// record's name is neither.
fn xet_name(path: &str) -> String {
    format!("{}.json", blake3::hash(path.as_bytes()).to_hex())
}

/// The local dir, locked for this run. Its `.hfd/` is held open, and a
/// link in its place is refused: hfd's state never goes elsewhere.
///
/// A dry run looks at the same folder through [`LocalDir::peek`]: it reads
/// what is there with the same rules and writes nothing.
pub struct LocalDir {
    root: PathBuf,
    hfd: PathBuf,
    /// `None` when peeking: nothing is written, moved or removed.
    hfd_dir: Option<Folder>,
    _lock: Option<File>,
}

impl LocalDir {
    /// Creates `root/.hfd/` and takes its lock; a second hfd on the same
    /// folder is refused rather than left to fight over the state files.
    pub fn open(root: &Path) -> Result<LocalDir, String> {
        LocalDir::open_in(root, Path::new(""))
    }

    /// The state in `root/base/.hfd/`: `root` is the folder the user named
    /// (followed), `base` a folder of ours below it (not followed), as the
    /// repo's folder in the Hugging Face cache.
    pub fn open_in(root: &Path, base: &Path) -> Result<LocalDir, String> {
        let hfd = root.join(base).join(HFD_DIR);
        let hfd_dir = Folder::open(root)
            .and_then(|top| top.sub(&base.join(HFD_DIR)))
            .and_then(|d| d.sub(Path::new("partial")).map(|_| d))
            .map_err(|e| e.to_string())?;
        let lock_path = hfd.join("lock");
        let lock = hfd_dir
            .open_file(OsStr::new("lock"), Open::Keep)
            .map_err(|e| e.to_string())?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(format!(
                    "another hfd is already downloading into {}; wait for it to finish",
                    root.join(base).display()
                ));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", lock_path.display())),
        }
        Ok(LocalDir {
            root: root.to_path_buf(),
            hfd,
            hfd_dir: Some(hfd_dir),
            _lock: Some(lock),
        })
    }

    /// The local dir as it is, for a dry run: nothing is created (not even
    /// the folder or `.hfd/`), nothing locked, and every save, removal and
    /// tidy-up is skipped; what a run would read is read the same way.
    pub fn peek(root: &Path) -> LocalDir {
        LocalDir::peek_in(root, Path::new(""))
    }

    /// [`LocalDir::peek`] at the state [`LocalDir::open_in`] would open.
    pub fn peek_in(root: &Path, base: &Path) -> LocalDir {
        LocalDir {
            root: root.to_path_buf(),
            hfd: root.join(base).join(HFD_DIR),
            hfd_dir: None,
            _lock: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a repo file ends up.
    pub fn output(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// Where its data is written until complete and verified.
    pub fn partial(&self, rel: &Path) -> PathBuf {
        let mut p = self.hfd.join("partial").join(rel).into_os_string();
        p.push(".part");
        PathBuf::from(p)
    }

    /// Removes what a download of `rel` may have left under `.hfd/partial/`
    /// (a kill between the final rename and the control file's removal
    /// leaves the control file): for files that are done.
    pub fn forget_partial(&self, rel: &Path) {
        let part = self.partial(rel);
        let dir = Path::new("partial").join(rel.parent().unwrap_or(Path::new("")));
        let Some(folder) = self.hfd_dir.as_ref().and_then(|d| d.find(&dir)) else {
            return;
        };
        let name = file_name(&part).to_owned();
        let mut ctl = name.clone();
        ctl.push(".ctl");
        for n in [name, ctl] {
            if folder.stat(&n).is_none() {
                continue;
            }
            match folder.remove(&n) {
                Ok(()) => tracing::info!("removed the leftover {}", folder.path_of(&n).display()),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// True when any download is in progress under `.hfd/partial/`.
    pub fn has_partials(&self) -> bool {
        fs::read_dir(self.hfd.join("partial")).is_ok_and(|mut d| d.next().is_some())
    }

    pub fn load_listing(&self) -> Option<Listing> {
        let l: Listing = read_json(&self.hfd.join("files.json"))?;
        (l.format == FORMAT).then_some(l)
    }

    pub fn save_listing(&self, l: &Listing) -> Result<(), String> {
        self.write_json("files.json", l)
    }

    pub fn load_verified(&self) -> Verified {
        read_json::<Verified>(&self.hfd.join("verified.json"))
            .filter(|v| v.format == FORMAT)
            .unwrap_or(Verified {
                format: FORMAT,
                files: BTreeMap::new(),
            })
    }

    pub fn save_verified(&self, v: &Verified) -> Result<(), String> {
        self.write_json("verified.json", v)
    }

    /// The Xet record of the file at repo path `path`, if one is kept.
    pub fn load_xet(&self, path: &str) -> Option<XetRecord> {
        let r: XetRecord = read_json(&self.hfd.join("xet").join(xet_name(path)))?;
        (r.format == FORMAT && r.path == path).then_some(r)
    }

    /// Keeps `r` (replacing the record of an older version).
    pub fn save_xet(&self, r: &XetRecord) -> Result<(), String> {
        let Some(dir) = &self.hfd_dir else {
            return Ok(());
        };
        let bytes =
            serde_json::to_vec(r).map_err(|e| format!("cannot encode a Xet record: {e}"))?;
        dir.sub(Path::new("xet"))
            .and_then(|d| d.write_atomic(OsStr::new(&xet_name(&r.path)), &bytes))
            .map_err(|e| e.to_string())
    }

    /// The repo-info answer, kept like hfd.sh does.
    pub fn save_metadata(&self, raw: &[u8]) -> Result<(), String> {
        self.write_atomic("repo_metadata.json", raw)
    }

    /// hfd.sh's `manifest`: `size<TAB>path` per selected file.
    pub fn save_manifest(&self, files: &[&RepoFile]) -> Result<(), String> {
        let mut s = String::new();
        for f in files {
            s.push_str(&format!("{}\t{}\n", f.size, f.path));
        }
        self.write_atomic("manifest", s.as_bytes())
    }

    fn write_json<T: Serialize>(&self, name: &str, v: &T) -> Result<(), String> {
        let bytes = serde_json::to_vec(v).map_err(|e| format!("cannot encode {name}: {e}"))?;
        self.write_atomic(name, &bytes)
    }

    /// Writes a state file whole (see [`Folder::write_atomic`]); a peek
    /// (dry run) writes nothing.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let Some(dir) = &self.hfd_dir else {
            return Ok(());
        };
        dir.write_atomic(OsStr::new(name), bytes)
            .map_err(|e| e.to_string())
    }

    /// Removes empty folders left under `.hfd/partial/` by finished files.
    pub fn tidy_partials(&self) {
        if self.hfd_dir.is_none() {
            return;
        }
        fn walk(dir: &Path, top: bool) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), false);
                }
            }
            if !top {
                let _ = fs::remove_dir(dir);
            }
        }
        walk(&self.hfd.join("partial"), true);
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Option<T> {
    let bytes = fs::read(p).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", p.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_names_that_leave_the_folder() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            ".hfd/manifest",
            "..",
            ".",
            "a\0b",
            "a\nb",
            "\u{1b}[31mred",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a",
            "sub/dir/x.bin",
            "a b#1.txt",
            "x/.hfd/y",
            "..a",
            "a..",
            ".gitattributes",
        ] {
            assert_eq!(safe_relative(good).unwrap(), PathBuf::from(good));
        }
    }

    #[test]
    fn state_round_trips_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let l = LocalDir::open(dir.path()).unwrap();
        assert!(
            LocalDir::open(dir.path()).is_err(),
            "the second open must be refused"
        );
        assert!(!l.has_partials());
        let files = vec![RepoFile {
            path: "a.txt".into(),
            size: 3,
            oid: None,
            lfs: false,
            sha256: None,
        }];
        l.save_listing(&Listing::new("o/r", "model", "c1", files.clone()))
            .unwrap();
        let back = l.load_listing().unwrap();
        assert_eq!(back.files, files);
        assert_eq!(back.commit, "c1");
        let mut v = l.load_verified();
        assert!(v.files.is_empty());
        v.files.insert(
            "a.txt".into(),
            Record {
                size: 3,
                hash: "git-sha1:x".into(),
                commit: None,
                fingerprint: "f".into(),
            },
        );
        l.save_verified(&v).unwrap();
        assert_eq!(l.load_verified().files.len(), 1);
        assert_eq!(
            l.partial(Path::new("sub/x.bin")),
            dir.path().join(".hfd/partial/sub/x.bin.part")
        );
        fs::write(dir.path().join(".hfd/verified.json"), b"{torn").unwrap();
        assert!(l.load_verified().files.is_empty());
    }

    #[test]
    fn fingerprint_changes_on_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"abc").unwrap();
        let a = fingerprint(&fs::metadata(&p).unwrap());
        assert_eq!(a, fingerprint(&fs::metadata(&p).unwrap()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&p, b"abd").unwrap();
        assert_ne!(a, fingerprint(&fs::metadata(&p).unwrap()));
    }
}
