//! What is already in the local dir: files whose fingerprint and hash are
//! on record are done; files of the right size without a record are hashed
//! (and adopted when they match); the rest are downloaded.

use std::path::Path;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::events::{Event, Events};
use super::run::{Options, Selection};
use super::state::{self, LocalDir, Record, Verified};
use crate::engine::{self, Checksum};

/// The verdict of the local check.
pub struct Check {
    /// Indices (into `selected`) of files to download.
    pub need: Vec<usize>,
    pub done_files: usize,
    pub done_bytes: u64,
    /// `.hfd/partial/` has something in it, so finished files may have
    /// left a control file behind (read once: most runs have none).
    leftovers: bool,
}

impl Check {
    /// A file that is on disk and verified: counted, its leftovers tidied.
    fn done(&mut self, local: &LocalDir, rel: &Path, size: u64) {
        if self.leftovers {
            local.forget_partial(rel);
        }
        self.done_files += 1;
        self.done_bytes = self.done_bytes.saturating_add(size);
    }
}

pub fn hash_key(c: &Checksum) -> String {
    format!("{}:{}", c.algorithm(), c.hex())
}

/// Sorts the selected files into done and needed, hashing files of the
/// right size that have no valid record. `None` when interrupted.
pub async fn local_check(
    opts: &Options,
    local: &LocalDir,
    sel: &Selection<'_>,
    verified: &mut Verified,
    commit: Option<&str>,
    cancel: &CancellationToken,
    events: &dyn Events,
) -> Option<Check> {
    let (selected, rels) = (&sel.files[..], &sel.rels[..]);
    let mut check = Check {
        need: Vec::new(),
        done_files: 0,
        done_bytes: 0,
        leftovers: local.has_partials(),
    };
    let mut to_hash = Vec::new();
    for (i, f) in selected.iter().enumerate() {
        let out = local.output(&rels[i]);
        let meta = match std::fs::metadata(&out) {
            Ok(m) if m.is_file() && m.len() == f.size => m,
            _ => {
                verified.files.remove(&f.path);
                check.need.push(i);
                continue;
            }
        };
        let fp = state::fingerprint(&meta);
        let expected = f.checksum().map(|c| hash_key(&c));
        let record_ok = verified.files.get(&f.path).is_some_and(|r| {
            r.fingerprint == fp
                && r.size == f.size
                && match &expected {
                    Some(h) => r.hash == *h,
                    None => true,
                }
        });
        if record_ok && !opts.verify_all {
            check.done(local, &rels[i], f.size);
        } else if f.checksum().is_some() {
            to_hash.push(i);
        } else {
            verified.files.remove(&f.path);
            check.need.push(i);
        }
    }
    if !to_hash.is_empty() {
        events.event(Event::Verifying {
            files: to_hash.len(),
        });
    }
    let parallel = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(opts.jobs.max(1));
    let mut queue = to_hash.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < parallel && !cancel.is_cancelled() {
            let Some(i) = queue.next() else { break };
            let f = selected[i];
            let sum = f.checksum().expect("only files with a checksum are hashed");
            let out = local.output(&rels[i]);
            running.spawn_blocking(move || {
                let before = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                let got = engine::verify::digest_file(&out, &sum).ok();
                let after = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                let ok = got.as_deref() == Some(sum.hex()) && before.is_some() && before == after;
                (i, ok, after)
            });
        }
        let Some(r) = running.join_next().await else {
            break;
        };
        let Ok((i, ok, fp)) = r else { continue };
        let f = selected[i];
        match (ok, fp) {
            (true, Some(fp)) => {
                let sum = f.checksum().expect("hashed files have a checksum");
                verified.files.insert(
                    f.path.clone(),
                    Record {
                        size: f.size,
                        hash: hash_key(&sum),
                        commit: commit.map(str::to_string),
                        fingerprint: fp,
                    },
                );
                check.done(local, &rels[i], f.size);
            }
            _ => {
                verified.files.remove(&f.path);
                events.event(Event::Warning(&format!(
                    "{}: the local copy does not match its {}; downloading it again",
                    f.path,
                    f.checksum().map_or("hash", |c| c.algorithm())
                )));
                check.need.push(i);
            }
        }
    }
    if cancel.is_cancelled() {
        return None;
    }
    Some(check)
}
