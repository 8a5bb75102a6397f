//! huggingface_hub's records in a local dir (`_local_folder.py`), so that
//! `snapshot_download(repo, local_dir=X)` or `hf download --local-dir X`
//! after hfd finds every file current and transfers nothing:
//!
//! ```text
//! LOCAL_DIR/.cache/huggingface/.gitignore            "*"
//! LOCAL_DIR/.cache/huggingface/CACHEDIR.TAG
//! LOCAL_DIR/.cache/huggingface/download/<path>.metadata
//!     <commit>\n<etag>\n<unix time, a float>\n
//! ```
//!
//! huggingface_hub trusts a record when its commit is the one asked for
//! and the file's mtime is at most one second after the record's time; the
//! etag is the sha256 of an LFS file, the git blob sha1 of the others.
//! hfd writes a record only for a file it verified, after the file got its
//! final name, and leaves records that already say the same.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::storage::folder::{Folder, file_name};

const HF_DIR: &str = ".cache/huggingface";

/// One record.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub commit: String,
    pub etag: String,
    pub timestamp: f64,
}

/// A local dir's `.cache/huggingface/`.
pub struct HfLocal {
    root: PathBuf,
    hf: Folder,
    download: Folder,
}

impl HfLocal {
    /// Opens (creating) `.cache/huggingface/download/` below `root` with
    /// its `.gitignore` and `CACHEDIR.TAG`; a link on the way is refused.
    pub fn open(root: &Path) -> Result<HfLocal, String> {
        let hf = Folder::open(root)
            .and_then(|t| t.sub(Path::new(HF_DIR)))
            .map_err(|e| e.to_string())?;
        let download = hf.sub(Path::new("download")).map_err(|e| e.to_string())?;
        for (name, text) in [
            (".gitignore", "*"),
            (
                "CACHEDIR.TAG",
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # huggingface_hub's download records (written by hfd).\n",
            ),
        ] {
            if hf.stat(OsStr::new(name)).is_none() {
                let _ = hf.write_replace(OsStr::new(name), text.as_bytes());
            }
        }
        Ok(HfLocal {
            root: root.to_path_buf(),
            hf,
            download,
        })
    }

    /// `.cache/huggingface/trees/<commit>.json`, as huggingface_hub keeps
    /// it for a local dir ([`super::cache::tree_json`]).
    pub fn write_tree(&self, commit: &str, files: &[super::api::RepoFile]) -> Result<(), String> {
        super::cache::write_tree_in(&self.hf, commit, files)
    }

    /// The folder of `rel`'s record and the record's name.
    fn place(&self, rel: &Path, create: bool) -> Option<(Folder, std::ffi::OsString)> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let folder = if create {
            self.download.sub(parent).ok()?
        } else {
            self.download.find(parent)?
        };
        let mut name = file_name(rel).to_owned();
        name.push(".metadata");
        Some((folder, name))
    }

    /// The record of `rel`, if there is a readable one.
    pub fn read(&self, rel: &Path) -> Option<Meta> {
        let (folder, name) = self.place(rel, false)?;
        let bytes = folder.read_small(&name, 4096)?;
        let text = String::from_utf8(bytes).ok()?;
        let mut lines = text.lines().map(str::trim);
        let commit = lines.next()?.to_string();
        let etag = lines.next()?.to_string();
        let timestamp = lines.next()?.parse().ok()?;
        Some(Meta {
            commit,
            etag,
            timestamp,
        })
    }

    /// True when huggingface_hub would take `rel` as current at `commit`
    /// with `etag` from its record as it is now.
    pub fn is_current(&self, rel: &Path, commit: &str, etag: &str) -> bool {
        let Some(m) = self.read(rel) else {
            return false;
        };
        let Ok(st) = std::fs::symlink_metadata(self.root.join(rel)) else {
            return false;
        };
        let mtime = st.mtime() as f64 + st.mtime_nsec() as f64 / 1e9;
        m.commit == commit && m.etag == etag && mtime - 1.0 <= m.timestamp
    }

    /// Records `rel` as `etag` at `commit`, now; unless the record says so
    /// already.
    pub fn record(&self, rel: &Path, commit: &str, etag: &str) -> Result<(), String> {
        if self.is_current(rel, commit, etag) {
            return Ok(());
        }
        let (folder, name) = self
            .place(rel, true)
            .ok_or_else(|| format!("cannot create the record folder for {}", rel.display()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let text = format!("{commit}\n{etag}\n{now:.6}\n");
        folder
            .write_replace(&name, text.as_bytes())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_go_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f.bin"), b"x").unwrap();
        let h = HfLocal::open(dir.path()).unwrap();
        let rel = Path::new("sub/f.bin");
        assert!(h.read(rel).is_none());
        h.record(rel, "c1", "e1").unwrap();
        let m = h.read(rel).unwrap();
        assert_eq!((m.commit.as_str(), m.etag.as_str()), ("c1", "e1"));
        assert!(h.is_current(rel, "c1", "e1"));
        assert!(!h.is_current(rel, "c2", "e1") && !h.is_current(rel, "c1", "e2"));
        let text = std::fs::read_to_string(
            dir.path()
                .join(".cache/huggingface/download/sub/f.bin.metadata"),
        )
        .unwrap();
        assert!(
            text.starts_with("c1\ne1\n") && text.ends_with('\n'),
            "{text}"
        );
        // A file written after its record is stale.
        let later = std::fs::File::options()
            .write(true)
            .open(dir.path().join("sub/f.bin"))
            .unwrap();
        later
            .set_modified(SystemTime::now() + std::time::Duration::from_secs(10))
            .unwrap();
        assert!(!h.is_current(rel, "c1", "e1"));
        let gi = std::fs::read_to_string(dir.path().join(".cache/huggingface/.gitignore")).unwrap();
        assert_eq!(gi, "*");
    }
}
