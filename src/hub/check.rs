//! What is already in the local dir: files whose fingerprint and hash are
//! on record are done; files of the right size without a record are hashed
//! (and adopted when they match); the rest are downloaded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::api::RepoFile;
use super::events::{Event, Events};
use super::place::Place;
use super::run::{Options, Selection};
use super::state::{self, Record, Verified};
use crate::engine::{self, Checksum};

/// The verdict of the local check.
pub struct Check {
    /// Indices (into `selected`) of files to download.
    pub need: Vec<usize>,
    /// In the cache, files whose blob another needed file brings: counted
    /// as done (nothing more is fetched for them), shown by a dry run as
    /// coming, and their blob's partial data is left for that download.
    pub twins: Vec<usize>,
    pub done_files: usize,
    pub done_bytes: u64,
    /// `.hfd/partial/` has something in it, so finished files may have
    /// left a control file behind (read once: most runs have none).
    leftovers: bool,
}

impl Check {
    /// A file that is on disk and verified: counted, its leftovers tidied.
    fn done(&mut self, place: &Place, f: &RepoFile, rel: &Path) {
        if self.leftovers {
            place.forget_partial(f, rel);
        }
        self.count_done(f);
    }

    /// `f` (file `i`) shares its blob with a file already needed: the
    /// partial data there is that download's, to be resumed, not tidied.
    fn twin(&mut self, i: usize, f: &RepoFile) {
        self.twins.push(i);
        self.count_done(f);
    }

    fn count_done(&mut self, f: &RepoFile) {
        self.done_files += 1;
        self.done_bytes = self.done_bytes.saturating_add(f.size);
    }
}

pub fn hash_key(c: &Checksum) -> String {
    format!("{}:{}", c.algorithm(), c.hex())
}

/// What the check works with.
pub struct Checker<'a> {
    pub opts: &'a Options,
    pub place: &'a Place,
    pub sel: &'a Selection<'a>,
    pub commit: Option<&'a str>,
    pub cancel: &'a CancellationToken,
    pub events: &'a dyn Events,
}

impl Checker<'_> {
    /// Sorts the selected files into done and needed, hashing files of the
    /// right size that have no valid record. `None` when interrupted.
    pub async fn run(&self, verified: &mut Verified) -> Option<Check> {
        let mut check = Check {
            need: Vec::new(),
            twins: Vec::new(),
            done_files: 0,
            done_bytes: 0,
            leftovers: self.place.state.has_partials(),
        };
        let to_hash = self.sort(verified, &mut check);
        if !to_hash.is_empty() {
            self.events.event(Event::Verifying {
                files: to_hash.len(),
            });
        }
        self.hash(to_hash, verified, &mut check).await;
        if self.cancel.is_cancelled() {
            return None;
        }
        Some(check)
    }

    /// Files of the wrong size (or missing) are needed; those whose record
    /// still holds are done; the rest are returned, to be hashed. In the
    /// cache a blob of the right size is done (its name is its verified
    /// hash), and a blob two files share is downloaded once.
    fn sort(&self, verified: &mut Verified, check: &mut Check) -> Vec<usize> {
        let (files, rels) = (&self.sel.files, &self.sel.rels);
        let by_name = self.place.content_addressed();
        let mut to_hash = Vec::new();
        let mut needed: HashSet<PathBuf> = HashSet::new();
        for (i, f) in files.iter().enumerate() {
            let out = self.place.output(f, &rels[i]);
            let meta = match out.as_ref().map(|p| self.place.stat_output(f, p)) {
                Some(Ok(m)) if m.is_file() && m.len() == f.size => m,
                _ => {
                    verified.files.remove(&f.path);
                    match out {
                        // The same blob as a file already needed: it comes with it.
                        Some(o) if by_name && !needed.insert(o.clone()) => check.twin(i, f),
                        _ => check.need.push(i),
                    }
                    continue;
                }
            };
            if by_name && !self.opts.verify_all {
                check.done(self.place, f, &rels[i]);
                continue;
            }
            let fp = state::fingerprint(&meta);
            let expected = f.checksum().map(|c| hash_key(&c));
            let record_ok = verified.files.get(&f.path).is_some_and(|r| {
                r.fingerprint == fp
                    && r.size == f.size
                    && expected.as_ref().is_none_or(|h| r.hash == *h)
            });
            if record_ok && !self.opts.verify_all {
                check.done(self.place, f, &rels[i]);
            } else if f.checksum().is_some() {
                to_hash.push(i);
            } else {
                verified.files.remove(&f.path);
                check.need.push(i);
            }
        }
        to_hash
    }

    /// Hashes the files `to_hash`, a few at a time; a match is recorded and
    /// done, anything else (including a file that changed meanwhile) needed.
    async fn hash(&self, to_hash: Vec<usize>, verified: &mut Verified, check: &mut Check) {
        let parallel = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(self.opts.jobs.max(1));
        let mut queue = to_hash.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < parallel && !self.cancel.is_cancelled() {
                let Some(i) = queue.next() else { break };
                let sum = self.sel.files[i]
                    .checksum()
                    .expect("only files with a checksum are hashed");
                let Some(out) = self.place.output(self.sel.files[i], &self.sel.rels[i]) else {
                    continue;
                };
                running.spawn_blocking(move || {
                    let before = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                    let got = engine::verify::digest_file(&out, &sum).ok();
                    let after = std::fs::metadata(&out).ok().map(|m| state::fingerprint(&m));
                    let ok =
                        got.as_deref() == Some(sum.hex()) && before.is_some() && before == after;
                    (i, after.filter(|_| ok))
                });
            }
            let Some(r) = running.join_next().await else {
                break;
            };
            if let Ok((i, fingerprint)) = r {
                self.hashed(i, fingerprint, verified, check);
            }
        }
    }

    /// The result of hashing file `i`: its fingerprint when it matched.
    fn hashed(
        &self,
        i: usize,
        fingerprint: Option<String>,
        verified: &mut Verified,
        check: &mut Check,
    ) {
        let f = self.sel.files[i];
        let Some(fingerprint) = fingerprint else {
            verified.files.remove(&f.path);
            let then = if self.opts.dry_run {
                "a run would download it again"
            } else {
                "downloading it again"
            };
            self.events.event(Event::Warning(&format!(
                "{}: the local copy does not match its {}; {then}",
                f.path,
                f.checksum().map_or("hash", |c| c.algorithm())
            )));
            check.need.push(i);
            return;
        };
        let sum = f.checksum().expect("hashed files have a checksum");
        let record = Record {
            size: f.size,
            hash: hash_key(&sum),
            commit: self.commit.map(str::to_string),
            fingerprint,
        };
        verified.files.insert(f.path.clone(), record);
        check.done(self.place, f, &self.sel.rels[i]);
    }
}
