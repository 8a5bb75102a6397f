//! Where a run puts the repo's files: a local dir (hfd.sh's layout, with
//! huggingface_hub's download records beside it, [`super::hf_meta`]) or the
//! Hugging Face cache ([`super::cache`]). The rest of the run asks the
//! place where a file goes and where its partial data lives, and tells it
//! at the end which files are here; it knows nothing else of the layout.

use std::path::{Path, PathBuf};

use super::api::RepoFile;
use super::cache::{self, RepoCache, blob_name};
use super::check::hash_key;
use super::hf_meta::HfLocal;
use super::run::{Options, Selection};
use super::state::{Listing, LocalDir, Verified};
use crate::xet::reuse::Previous;

/// Where the user asked for the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// `--local-dir` (or hfd.sh's default): files under their repo paths.
    LocalDir(PathBuf),
    /// `--cache-dir` / `--cache`: the Hugging Face cache in this folder.
    Cache(PathBuf),
}

/// The destination of one run, opened, with hfd's state locked.
pub struct Place {
    /// hfd's `.hfd/` (in the local dir, or in the repo's cache folder).
    pub state: LocalDir,
    kind: Kind,
}

enum Kind {
    Local {
        root: PathBuf,
    },
    Cache {
        cache: RepoCache,
        commit: String,
        snapshot: PathBuf,
    },
    /// A dry run into a cache that holds nothing of the repo yet: every
    /// file is missing, and nothing is created to find that out.
    NoCache {
        cache_dir: PathBuf,
        blobs: PathBuf,
        snapshot: PathBuf,
    },
}

impl Place {
    /// Opens `opts.dest` for a run on `commit` (the one the revision
    /// resolved to; the cache cannot do without it).
    pub fn open(opts: &Options, commit: Option<&str>) -> Result<Place, String> {
        match &opts.dest {
            // A dry run looks without creating, locking or writing.
            Dest::LocalDir(root) if opts.dry_run => Ok(Place {
                state: LocalDir::peek(root),
                kind: Kind::Local { root: root.clone() },
            }),
            Dest::LocalDir(root) => Ok(Place {
                state: LocalDir::open(root)?,
                kind: Kind::Local { root: root.clone() },
            }),
            Dest::Cache(dir) => Place::open_cache(dir, opts, &snapshot_commit(opts, commit)?),
        }
    }

    /// The cache in `dir`, opened for the run, or peeked at for a dry run.
    fn open_cache(dir: &Path, opts: &Options, commit: &str) -> Result<Place, String> {
        let name = cache::repo_folder_name(opts.repo_type, &opts.repo);
        let snapshot = cache::snapshot_dir(dir, &name, commit);
        let commit = commit.to_string();
        if !opts.dry_run {
            let cache = RepoCache::open(dir, opts.repo_type, &opts.repo)?;
            let state = LocalDir::open_in(dir, cache.repo_rel())?;
            let kind = Kind::Cache {
                cache,
                commit,
                snapshot,
            };
            return Ok(Place { state, kind });
        }
        let state = LocalDir::peek_in(dir, Path::new(&name));
        let kind = match RepoCache::peek(dir, opts.repo_type, &opts.repo) {
            Some(cache) => Kind::Cache {
                cache,
                commit,
                snapshot,
            },
            None => Kind::NoCache {
                cache_dir: dir.to_path_buf(),
                blobs: cache::blobs_dir(dir, &name),
                snapshot,
            },
        };
        Ok(Place { state, kind })
    }

    /// The folder the user named: no link below it is followed.
    pub fn root(&self) -> &Path {
        match &self.kind {
            Kind::Local { root } => root,
            Kind::Cache { cache, .. } => cache.cache_dir(),
            Kind::NoCache { cache_dir, .. } => cache_dir,
        }
    }

    /// The folder the user is told about: the local dir, or the snapshot.
    pub fn shown(&self) -> &Path {
        match &self.kind {
            Kind::Local { root } => root,
            Kind::Cache { snapshot, .. } | Kind::NoCache { snapshot, .. } => snapshot,
        }
    }

    /// Files are named by their hash: one of the right size is complete
    /// and verified (it got its name only then), and two files with the
    /// same content are one download.
    pub fn content_addressed(&self) -> bool {
        matches!(self.kind, Kind::Cache { .. } | Kind::NoCache { .. })
    }

    /// Where `f` ends up; `None` in the cache for a file without a hash.
    pub fn output(&self, f: &RepoFile, rel: &Path) -> Option<PathBuf> {
        match &self.kind {
            Kind::Local { root } => Some(root.join(rel)),
            Kind::Cache { cache, .. } => blob_name(f).map(|b| cache.blob_path(&b)),
            Kind::NoCache { blobs, .. } => blob_name(f).map(|b| blobs.join(b)),
        }
    }

    /// What is at `f`'s output `out` ([`Place::output`]), as the check
    /// reads it: in a local dir a link is followed (it may be the user's
    /// link to their copy); in the cache a blob is a regular file, or
    /// huggingface_hub's link into its store of Xet files (followed only
    /// once its shape and its target were checked), never another link.
    pub fn stat_output(&self, f: &RepoFile, out: &Path) -> std::io::Result<std::fs::Metadata> {
        let cache = match &self.kind {
            Kind::Local { .. } => return std::fs::metadata(out),
            Kind::Cache { cache, .. } => cache,
            Kind::NoCache { .. } => return Err(std::io::ErrorKind::NotFound.into()),
        };
        let m = std::fs::symlink_metadata(out)?;
        match blob_name(f) {
            Some(b) if m.is_symlink() && cache.is_shared_link(&b) => std::fs::metadata(out),
            _ => Ok(m),
        }
    }

    /// Where `f`'s data is written until it is complete and verified.
    pub fn partial(&self, f: &RepoFile, rel: &Path) -> Option<PathBuf> {
        match &self.kind {
            Kind::Local { .. } => Some(self.state.partial(rel)),
            Kind::Cache { .. } | Kind::NoCache { .. } => {
                blob_name(f).map(|b| self.state.partial(Path::new(&b)))
            }
        }
    }

    /// An older version of `f` whose Xet layout is on record: in a local
    /// dir the file at its path (replaced only once the new one is
    /// complete), in the cache the blob named by the recorded hash. Its
    /// bytes are not trusted (see [`crate::xet::reuse`]).
    pub fn previous_xet(&self, f: &RepoFile, rel: &Path) -> Option<Previous> {
        // Copied bytes are trusted only through the file's hash: without
        // one in the listing, nothing is copied.
        let sum = f.checksum()?;
        let rec = self.state.load_xet(&f.path)?;
        // The same content again: what is on disk failed its check (or is
        // gone), so it is no source for itself.
        if hash_key(&sum) == rec.hash {
            return None;
        }
        let path = match &self.kind {
            Kind::Local { root } => root.join(rel),
            Kind::Cache { cache, .. } => cache.blob_path(rec.sha256()?),
            Kind::NoCache { .. } => return None,
        };
        Some(Previous {
            path,
            layout: rec.terms,
        })
    }

    /// Removes what a download of `f` may have left in `.hfd/partial/`,
    /// for a file that is done.
    pub fn forget_partial(&self, f: &RepoFile, rel: &Path) {
        match &self.kind {
            Kind::Local { .. } => self.state.forget_partial(rel),
            Kind::Cache { .. } | Kind::NoCache { .. } => {
                if let Some(b) = blob_name(f) {
                    self.state.forget_partial(Path::new(&b));
                }
            }
        }
    }

    /// The reason the selection cannot go here, if any: the cache names
    /// files by hash, so every file needs one from the listing.
    pub fn refusal(&self, files: &[&RepoFile]) -> Option<String> {
        if !self.content_addressed() {
            return None;
        }
        let f = files.iter().find(|f| blob_name(f).is_none())?;
        Some(format!(
            "{}: the listing gives no hash for this file, and the cache names files by \
             their hash; download into a folder with --local-dir instead",
            f.path
        ))
    }

    /// Makes what is here visible the way huggingface_hub looks for it:
    /// in the cache, a snapshot link per file whose blob is here and the
    /// revision's ref; in a local dir, a download record per verified file.
    /// Returns warnings (nothing here stops the run's verdict).
    pub fn finish(
        &self,
        opts: &Options,
        sel: &Selection<'_>,
        listing: &Listing,
        verified: &Verified,
        commit: Option<&str>,
    ) -> Vec<String> {
        match &self.kind {
            Kind::Cache { cache, commit, .. } => {
                let mut w = link_snapshot(cache, opts, sel, commit);
                w.extend(cache.write_tree(commit, &listing.files).err());
                w
            }
            Kind::Local { root } => match commit.filter(|c| cache::is_commit_id(c)) {
                Some(c) => record_local(root, sel, listing, verified, c),
                None => Vec::new(),
            },
            // Only a dry run opens this, and it finishes nothing.
            Kind::NoCache { .. } => Vec::new(),
        }
    }
}

/// The commit a cache run names its snapshot by: the one the endpoint
/// said, or the revision itself when it is a commit id.
fn snapshot_commit(opts: &Options, commit: Option<&str>) -> Result<String, String> {
    let commit = commit
        .map(str::to_string)
        .or_else(|| cache::is_commit_id(&opts.revision).then(|| opts.revision.clone()))
        .ok_or_else(|| {
            format!(
                "the endpoint did not say which commit {} is at; the cache names \
                 snapshots by commit, so pass --revision with a commit id or use \
                 --local-dir",
                opts.revision
            )
        })?;
    if !cache::is_commit_id(&commit) {
        return Err(format!(
            "the endpoint named {commit:?} as the commit, which is not a commit id; \
             the cache cannot name a snapshot by it"
        ));
    }
    Ok(commit)
}

/// Snapshot links for every selected file whose blob is here, then the ref.
fn link_snapshot(
    cache: &RepoCache,
    opts: &Options,
    sel: &Selection<'_>,
    commit: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut linked = 0usize;
    for (f, rel) in sel.files.iter().zip(&sel.rels) {
        let Some(blob) = blob_name(f) else { continue };
        if !cache.has_blob(&blob, f.size) {
            continue;
        }
        match cache.link(commit, rel, &blob) {
            Ok(()) => linked += 1,
            Err(e) => warnings.push(e),
        }
    }
    // A ref to a snapshot with nothing in it would only mislead.
    if linked > 0
        && let Err(e) = cache.write_ref(&opts.revision, commit)
    {
        warnings.push(e);
    }
    warnings
}

/// huggingface_hub's download record for every selected file hfd verified
/// (its hash on record is the one the listing gives).
fn record_local(
    root: &Path,
    sel: &Selection<'_>,
    listing: &Listing,
    verified: &Verified,
    commit: &str,
) -> Vec<String> {
    let hf = match HfLocal::open(root) {
        Ok(h) => h,
        Err(e) => return vec![format!("huggingface_hub's records were not written: {e}")],
    };
    let mut warnings: Vec<String> = hf
        .write_tree(commit, &listing.files)
        .err()
        .into_iter()
        .collect();
    for (f, rel) in sel.files.iter().zip(&sel.rels) {
        let Some(sum) = f.checksum() else { continue };
        let ok = verified
            .files
            .get(&f.path)
            .is_some_and(|r| r.hash == hash_key(&sum) && r.size == f.size);
        if ok && let Err(e) = hf.record(rel, commit, sum.hex()) {
            warnings.push(e);
            break;
        }
    }
    warnings
}
