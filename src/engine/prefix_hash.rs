//! The checksum of a download, computed while it arrives.
//!
//! A thread hashes the partial data from its start as far as the written
//! bytes reach ([`crate::storage::watch`]: a byte counts once the write
//! that put it into the file returned), so the check at the end only hashes
//! what was not reached yet. Xet units arrive nearly in file order and
//! leave almost nothing for the end; a plain download's segments arrive side
//! by side, and the thread gets through the first of them meanwhile. The
//! work is the same, done earlier: on a 4 GiB file the end no longer waits
//! for seconds of sha-256 on one core.
//!
//! What the thread hashed stays valid because a byte is written once per
//! generation of the writer (two slots never write the same byte; a Xet
//! unit writes only its own range), and every restart of the writer (new
//! attempt, restart from zero after the file changed) starts a new
//! generation, seen before any byte of it is written: the thread then
//! starts over. It reads with `pread`, not through a mapping, because a
//! restart may truncate the file under it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use sha1::digest::DynDigest;
use tokio::sync::watch;

use super::DownloadSpec;
use super::verify::{self, Checksum};
use crate::storage::watch::{Written, WrittenWatch};

/// Bytes read and hashed per step: the thread's buffer.
const STEP: usize = 1 << 20;

/// Smaller files are hashed at the end only: a thread and a buffer each
/// would cost more than the wait they save (with many small files at once,
/// a 4 MiB buffer each showed as 169 MiB of peak RSS).
const MIN_LEN: u64 = 64 << 20;

/// How long the thread sleeps when the written prefix has not grown.
const IDLE: Duration = Duration::from_millis(20);

/// A running hash of a download's partial data.
pub struct PrefixHash {
    stop: Arc<AtomicBool>,
    /// Bytes of the current generation hashed so far.
    hashed: Arc<AtomicU64>,
    thread: Option<JoinHandle<Hashed>>,
    written: watch::Receiver<Written>,
    sum: Checksum,
}

/// What the thread got through: the digest of `[0, pos)` as written in
/// `generation`.
struct Hashed {
    digest: Box<dyn DynDigest + Send>,
    pos: u64,
    generation: u64,
}

/// The writer's watch for `spec` and the running hash that follows it: the
/// spec's own watch (`hfd serve` reads files as they arrive), or a new one
/// only when a running hash is worth having.
pub fn for_download(
    spec: &DownloadSpec,
    part: &Path,
) -> (Option<WrittenWatch>, Option<PrefixHash>) {
    let worth = spec.expected_size.is_some_and(|l| l >= MIN_LEN);
    let Some(sum) = spec.checksum.as_ref().filter(|_| worth) else {
        return (spec.written.clone(), None);
    };
    let w = spec.written.clone().unwrap_or_default();
    let hash = PrefixHash::start(part, sum, spec.expected_size, &w);
    (Some(w), hash)
}

impl PrefixHash {
    /// Starts hashing `part` as `written` says it fills. `None` when there
    /// is little to gain: a file of unknown size or under [`MIN_LEN`] (git's
    /// blob id also needs the length first).
    pub fn start(
        part: &Path,
        sum: &Checksum,
        len: Option<u64>,
        written: &WrittenWatch,
    ) -> Option<PrefixHash> {
        let len = len.filter(|&l| l >= MIN_LEN)?;
        let stop = Arc::new(AtomicBool::new(false));
        let hashed = Arc::new(AtomicU64::new(0));
        let job = Job {
            hashed: Arc::clone(&hashed),
            path: part.to_path_buf(),
            sum: sum.clone(),
            len,
            written: written.subscribe(),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("hfd-hash".into())
            .spawn(move || job.run())
            .ok()?;
        Some(PrefixHash {
            stop,
            hashed,
            thread: Some(thread),
            written: written.subscribe(),
            sum: sum.clone(),
        })
    }

    /// Bytes hashed so far (of the writer's current generation).
    pub fn hashed(&self) -> u64 {
        self.hashed.load(Relaxed)
    }

    /// Stops the thread and hashes the rest of `part`, whose writer has
    /// stopped; returns lowercase hex. What the thread hashed is used only
    /// when it belongs to the writer's last generation and lies inside the
    /// file; otherwise the whole file is hashed again.
    pub fn finish(mut self, part: &Path) -> io::Result<String> {
        self.stop.store(true, Relaxed);
        let hashed = self.thread.take().and_then(|t| t.join().ok());
        let generation = self.written.borrow().generation;
        let len = std::fs::metadata(part)?.len();
        match hashed {
            Some(h) if h.generation == generation && h.pos <= len => {
                tracing::debug!(
                    "{}: {} of {len} bytes hashed while they arrived",
                    part.display(),
                    h.pos
                );
                verify::digest_own_file_from(part, h.digest, h.pos)
            }
            _ => verify::digest_own_file(part, &self.sum),
        }
    }
}

impl Drop for PrefixHash {
    /// A download that ends without a check (an error, Ctrl-C) leaves the
    /// thread to notice the flag within one step; nobody waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The thread's side.
struct Job {
    hashed: Arc<AtomicU64>,
    path: PathBuf,
    sum: Checksum,
    len: u64,
    written: watch::Receiver<Written>,
    stop: Arc<AtomicBool>,
}

impl Job {
    fn fresh(&self, generation: u64) -> Hashed {
        self.hashed.store(0, Relaxed);
        Hashed {
            digest: verify::hasher(&self.sum, self.len),
            pos: 0,
            generation,
        }
    }

    fn run(self) -> Hashed {
        let mut h = self.fresh(0);
        let mut file: Option<File> = None;
        let mut buf = vec![0u8; STEP];
        while !self.stop.load(Relaxed) {
            let (generation, end) = {
                let w = self.written.borrow();
                (w.generation, w.set.prefix_len())
            };
            if generation != h.generation {
                h = self.fresh(generation);
                file = None;
                continue;
            }
            if end <= h.pos {
                std::thread::sleep(IDLE);
                continue;
            }
            if file.is_none() {
                file = File::open(&self.path).ok();
            }
            let n = (end - h.pos).min(STEP as u64) as usize;
            let read = file
                .as_ref()
                .is_some_and(|f| f.read_exact_at(&mut buf[..n], h.pos).is_ok());
            // The bytes read are this generation's only if no restart began
            // meanwhile (it is announced before its first write).
            if !read || self.written.borrow().generation != generation {
                std::thread::sleep(IDLE);
                continue;
            }
            h.digest.update(&buf[..n]);
            h.pos += n as u64;
            self.hashed.store(h.pos, Relaxed);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn wait_for(h: &PrefixHash, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while h.hashed() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.hashed(), n, "the thread did not get through the prefix");
    }

    /// Writes `bytes` at `at` and tells the watch, as the writer does.
    fn write(f: &File, w: &WrittenWatch, at: u64, bytes: &[u8]) {
        f.write_all_at(bytes, at).unwrap();
        w.add(at..at + bytes.len() as u64);
    }

    #[test]
    fn hashes_the_written_prefix_and_the_rest_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part");
        let f = File::create(&p).unwrap();
        let want = data(1, MIN_LEN as usize + STEP * 2 + 12_345);
        let sum = Checksum::sha256(&"0".repeat(64)).unwrap();
        let w = WrittenWatch::new();
        w.start(&crate::extent::ExtentSet::new());
        let h = PrefixHash::start(&p, &sum, Some(want.len() as u64), &w).unwrap();
        // Out of order: the tail first, which the thread cannot use yet.
        let cut = MIN_LEN as usize + 100;
        write(&f, &w, cut as u64, &want[cut..]);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.hashed(), 0);
        write(&f, &w, 0, &want[..cut]);
        wait_for(&h, want.len() as u64);
        let got = h.finish(&p).unwrap();
        std::fs::write(dir.path().join("whole"), &want).unwrap();
        let whole = verify::digest_file(&dir.path().join("whole"), &sum).unwrap();
        assert_eq!(got, whole);
    }

    #[test]
    fn a_restart_of_the_writer_starts_the_hash_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part");
        let mut f = File::create(&p).unwrap();
        // Another length, so that waiting for it proves the thread started
        // over rather than kept its count from the first generation.
        let (a, b) = (data(2, MIN_LEN as usize + 7), data(3, MIN_LEN as usize + 9));
        let sum = Checksum::sha256(&"0".repeat(64)).unwrap();
        let w = WrittenWatch::new();
        w.start(&crate::extent::ExtentSet::new());
        let h = PrefixHash::start(&p, &sum, Some(a.len() as u64), &w).unwrap();
        write(&f, &w, 0, &a);
        wait_for(&h, a.len() as u64);
        // The file changed upstream: the writer starts from zero, other bytes.
        w.start(&crate::extent::ExtentSet::new());
        f.set_len(0).unwrap();
        f.flush().unwrap();
        write(&f, &w, 0, &b);
        wait_for(&h, b.len() as u64);
        let got = h.finish(&p).unwrap();
        assert_eq!(got, verify::digest_file(&p, &sum).unwrap());
    }

    #[test]
    fn small_files_and_files_of_unknown_size_are_left_to_the_end() {
        let sum = Checksum::sha256(&"0".repeat(64)).unwrap();
        let w = WrittenWatch::new();
        assert!(PrefixHash::start(Path::new("x"), &sum, None, &w).is_none());
        assert!(PrefixHash::start(Path::new("x"), &sum, Some(MIN_LEN - 1), &w).is_none());
    }
}
