//! Which repos upstream said are gated or private. When upstream cannot
//! be reached, the cache answers in its place, but not for these: their
//! files would go to anyone. Kept in memory and, so that a restart with
//! upstream down keeps refusing, as an empty marker file
//! `.hfd/serve-restricted` in the repo's cache folder (no token, no user,
//! only the fact).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::hub::cache::repo_folder_name;
use crate::hub::state::HFD_DIR;
use crate::hub::{RepoId, RepoType};
use crate::serve::cache::Kind;
use crate::storage::folder::Folder;
use crate::sync::lock;

const MARKER: &str = "serve-restricted";

pub struct Restricted {
    cache_dir: PathBuf,
    seen: Mutex<HashSet<(Kind, String)>>,
}

impl Restricted {
    pub fn new(cache_dir: &Path) -> Restricted {
        Restricted {
            cache_dir: cache_dir.to_path_buf(),
            seen: Mutex::new(HashSet::new()),
        }
    }

    fn state_dir(&self, kind: Kind, repo: &RepoId) -> PathBuf {
        Path::new(&repo_folder_name(RepoType::from(kind), repo)).join(HFD_DIR)
    }

    /// Records what upstream just said of `repo` (again when the repo's
    /// cache folder has just been made: the marker goes into it).
    pub fn set(&self, kind: Kind, repo: &RepoId, restricted: bool) {
        let key = (kind, repo.to_string());
        let changed = {
            let mut seen = lock(&self.seen);
            if restricted {
                seen.insert(key)
            } else {
                seen.remove(&key)
            }
        };
        if !changed && !restricted {
            return;
        }
        let Ok(top) = Folder::open(&self.cache_dir) else {
            return;
        };
        let rel = self.state_dir(kind, repo);
        let name = OsStr::new(MARKER);
        if restricted {
            // Only a repo with something cached needs protecting; creating
            // a folder for a repo merely looked at would leave one without
            // `snapshots/`, which huggingface_hub's cache scan calls corrupted.
            let Some(repo_dir) = rel.parent().and_then(|r| top.find(r)) else {
                return;
            };
            let dir = repo_dir.sub(Path::new(HFD_DIR));
            let written = dir.and_then(|d| match d.stat(name) {
                Some(_) => Ok(()),
                None => d.write_atomic(name, b""),
            });
            if let Err(e) = written {
                tracing::warn!("{repo}: the gated/private marker was not written: {e}");
            }
        } else if let Some(d) = top.find(&rel)
            && d.stat(name).is_some()
        {
            let _ = d.remove(name);
        }
    }

    /// Whether `repo` is known to be gated or private.
    pub fn is(&self, kind: Kind, repo: &RepoId) -> bool {
        if lock(&self.seen).contains(&(kind, repo.to_string())) {
            return true;
        }
        Folder::open_existing(&self.cache_dir)
            .ok()
            .and_then(|top| top.find(&self.state_dir(kind, repo)))
            .is_some_and(|d| d.stat(OsStr::new(MARKER)).is_some())
    }
}
