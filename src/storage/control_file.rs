//! The control file: the crash-safe record of which bytes are durably written.
//!
//! The file holds two fixed-size slots, A at offset 0 and B at offset
//! [`SLOT`]. Every checkpoint overwrites the slot that does *not* hold the
//! newest record, in place, with a higher generation. A write torn by a crash
//! fails its CRC and the loader falls back to the other slot, which is one
//! checkpoint older and still true. No rename is needed per checkpoint, so a
//! checkpoint costs one small write and one `fdatasync`, and the directory is
//! touched only when the file is created or removed.
//!
//! docs/control-file.md has the byte layout and the argument for why a crash
//! at any instant never marks unwritten bytes as done.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use sha2::{Digest, Sha256};

use super::StorageError;
use super::folder::{Folder, Open, file_name};
use crate::extent::ExtentSet;

/// Size of one slot; the file is exactly two of them.
///
/// 8 KiB holds about 500 extents even with two maximal validators, far more
/// than the few dozen holes a segmented download has at once, and it is two
/// pages, so a checkpoint stays a tiny write.
pub const SLOT: usize = 8192;

/// The slot layout this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: [u8; 8] = *b"HFDCTRL\0";

/// magic, version, flags, generation, total, url hash.
const HEADER_LEN: usize = 8 + 2 + 2 + 8 + 8 + 32;

/// Longest ETag or Last-Modified value stored.
///
/// A longer one is not stored at all rather than cut: a truncated validator
/// would be compared against the server's full one on resume and either never
/// match or, worse, be sent as a wrong `If-Range`. Without a validator a
/// resume cannot prove the file is unchanged, so such a download restarts.
pub const MAX_VALIDATOR: usize = 1024;

/// Extension record types with this bit set must be understood by the
/// reader; finding an unknown one means a newer hfget wrote the file.
const MUST_UNDERSTAND: u16 = 0x8000;

/// What the control file remembers about a download.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlState {
    pub total: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// SHA-256 of the URL: enough to tell whether `-c` resumes the same
    /// download, while the URL itself, which may carry a token, is never
    /// written to disk.
    pub url_hash: [u8; 32],
    /// Byte ranges durably written.
    pub done: ExtentSet,
}

/// SHA-256 of `url`, for [`ControlState::url_hash`].
pub fn url_hash(url: &str) -> [u8; 32] {
    Sha256::digest(url.as_bytes()).into()
}

/// Why one slot cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("blank")]
    Empty,
    #[error("not an hfget control record")]
    BadMagic,
    #[error("format {0}, newer than this hfget understands")]
    FutureVersion(u16),
    #[error("a record of type {0:#06x} that this hfget does not understand")]
    MustUnderstand(u16),
    #[error("cut short")]
    Truncated,
    #[error("checksum mismatch")]
    Checksum,
    #[error("inconsistent content: {0}")]
    Invalid(&'static str),
}

/// Errors of [`ControlFile`]. Every message says what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "the control file {} is damaged ({reason}): delete it to start the download over",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "{} was written by a newer hfget (format {version}{}): upgrade, or delete it to start the download over",
        path.display(),
        record.map(|r| format!(" with feature {r:#06x}")).unwrap_or_default()
    )]
    FutureVersion {
        path: PathBuf,
        version: u16,
        /// The must-understand record type that was not understood, if that
        /// (and not the format number) is what made the file unreadable.
        record: Option<u16>,
    },
    #[error(
        "{} is not an hfget control file: move it away, or choose another output name",
        path.display()
    )]
    NotOurs { path: PathBuf },
    #[error(
        "{} is in use by another hfget process: wait for that download to end, or stop it",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("cannot {action} the control file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A storage error as the path-based calls report it.
fn by_path(path: &Path, action: &'static str, e: StorageError) -> ControlError {
    match e {
        StorageError::Control(c) => c,
        StorageError::Io { source, .. } => ControlError::Io {
            path: path.to_path_buf(),
            action,
            source,
        },
        other => ControlError::Io {
            path: path.to_path_buf(),
            action,
            source: io::Error::other(other.to_string()),
        },
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Serializes `state` as one slot of exactly [`SLOT`] bytes.
///
/// Extents past `total` are cut off, and if there are too many to fit, the
/// smallest are dropped. Both only forget progress (those bytes are fetched
/// again); neither can ever claim a byte that is not on disk.
pub fn encode_slot(state: &ControlState, generation: u64) -> Vec<u8> {
    encode_with_records(state, generation, &[])
}

fn validator(v: &Option<String>) -> &[u8] {
    match v {
        Some(s) if s.len() <= MAX_VALIDATOR => s.as_bytes(),
        _ => &[],
    }
}

fn encode_with_records(state: &ControlState, generation: u64, records: &[(u16, &[u8])]) -> Vec<u8> {
    let etag = validator(&state.etag);
    let last_modified = validator(&state.last_modified);
    let records_len: usize = records.iter().map(|(_, b)| 2 + 4 + b.len()).sum();
    let fixed = HEADER_LEN + 2 + etag.len() + 2 + last_modified.len() + 4 + 2 + records_len + 4;
    let room = SLOT.saturating_sub(fixed) / 16;
    let mut done = state.done.clipped(0..state.total);
    done.keep_largest(room);

    let mut out = Vec::with_capacity(SLOT);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // flags: none defined in format 1
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&state.total.to_le_bytes());
    out.extend_from_slice(&state.url_hash);
    for v in [etag, last_modified] {
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&(done.len() as u32).to_le_bytes());
    for r in done.iter() {
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&r.end.to_le_bytes());
    }
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    for (ty, body) in records {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert!(out.len() <= SLOT, "slot overflow: {}", out.len());
    out.resize(SLOT, 0);
    out
}

/// A bounds-checked little-endian reader: every read that would run past the
/// end is an error, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SlotError> {
        let end = self.pos.checked_add(n).ok_or(SlotError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(SlotError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SlotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, SlotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, SlotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, SlotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Parses one slot; returns its generation and state.
///
/// Total on any input: lengths are checked against the buffer before use,
/// and nothing is allocated from a length field until the bytes it promises
/// are known to be there. The checksum is verified before the content is
/// judged, so a torn write reports "checksum mismatch" rather than whatever
/// garbage it happens to resemble.
pub fn decode_slot(buf: &[u8]) -> Result<(u64, ControlState), SlotError> {
    let buf = &buf[..buf.len().min(SLOT)];
    if buf.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(if buf.iter().all(|b| *b == 0) {
            SlotError::Empty
        } else {
            SlotError::BadMagic
        });
    }
    let mut r = Reader { buf, pos: 0 };
    r.take(MAGIC.len())?;
    let version = r.u16()?;
    if version > FORMAT_VERSION {
        return Err(SlotError::FutureVersion(version));
    }
    if version == 0 {
        return Err(SlotError::Invalid("format 0"));
    }
    let _flags = r.u16()?;
    let generation = r.u64()?;
    let total = r.u64()?;
    let url_hash: [u8; 32] = r.array()?;
    let etag = r.u16().and_then(|n| r.take(n as usize))?;
    let last_modified = r.u16().and_then(|n| r.take(n as usize))?;
    let n_extents = r.u32()? as usize;
    let extents = r.take(n_extents.checked_mul(16).ok_or(SlotError::Truncated)?)?;
    let n_records = r.u16()?;
    let mut records = Vec::new();
    for _ in 0..n_records {
        let ty = r.u16()?;
        let len = r.u32()? as usize;
        records.push((ty, r.take(len)?));
    }
    let covered = r.pos;
    let crc = r.u32()?;
    // Fuzzing skips only this comparison, so the checks below get explored
    // (a fuzzer cannot forge a CRC); everything else is the same code.
    if crc32fast::hash(&buf[..covered]) != crc && !cfg!(fuzzing) {
        return Err(SlotError::Checksum);
    }

    // The bytes are as written; now judge what they say.
    if let Some((ty, _)) = records.iter().find(|(ty, _)| ty & MUST_UNDERSTAND != 0) {
        // Format 1 defines no record types, so every must-understand one is
        // from the future. Optional ones are skipped.
        return Err(SlotError::MustUnderstand(*ty));
    }
    let done = decode_extents(extents, total)?;
    Ok((
        generation,
        ControlState {
            total,
            etag: decode_validator(etag)?,
            last_modified: decode_validator(last_modified)?,
            url_hash,
            done,
        },
    ))
}

/// A validator (ETag, Last-Modified) as stored: empty for none.
fn decode_validator(b: &[u8]) -> Result<Option<String>, SlotError> {
    if b.is_empty() {
        return Ok(None);
    }
    // The encoder never writes a longer one (found by fuzzing: such a
    // slot decoded to a state that did not survive a round trip).
    if b.len() > MAX_VALIDATOR {
        return Err(SlotError::Invalid(
            "a validator longer than the format allows",
        ));
    }
    std::str::from_utf8(b)
        .map(|s| Some(s.to_owned()))
        .map_err(|_| SlotError::Invalid("a validator is not UTF-8"))
}

/// The done extents as stored (16 bytes each: start, end), which must be
/// non-empty, ordered, apart and inside the file.
fn decode_extents(extents: &[u8], total: u64) -> Result<ExtentSet, SlotError> {
    let mut done = ExtentSet::new();
    let mut prev_end = 0u64;
    for pair in extents.chunks_exact(16) {
        let start = u64::from_le_bytes(pair[..8].try_into().map_err(|_| SlotError::Truncated)?);
        let end = u64::from_le_bytes(pair[8..].try_into().map_err(|_| SlotError::Truncated)?);
        if start >= end {
            return Err(SlotError::Invalid("an empty or reversed extent"));
        }
        if end > total {
            return Err(SlotError::Invalid("an extent past the end of the file"));
        }
        if start < prev_end {
            return Err(SlotError::Invalid("extents out of order or overlapping"));
        }
        prev_end = end;
        done.insert(start..end);
    }
    Ok(done)
}

/// An open, locked control file.
///
/// The exclusive `flock` is held for the life of the value, so two hfget
/// processes can never checkpoint into the same file (each would otherwise
/// overwrite the other's progress with claims about bytes it did not write).
#[derive(Debug)]
pub struct ControlFile {
    file: File,
    folder: Folder,
    path: PathBuf,
    /// Generation of the newest valid record on disk.
    generation: u64,
    /// Slot (0 = A, 1 = B) holding that record.
    newest: usize,
}

fn lock(file: &File, path: &Path) -> Result<(), ControlError> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(ControlError::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_err(path, "lock")(e.into())),
    }
}

impl ControlFile {
    /// Starts a fresh control file at `path` (replacing any old one) with
    /// `state` as its first record; its folder is the one `path` names.
    pub fn create(path: &Path, state: &ControlState) -> Result<ControlFile, ControlError> {
        let folder = Folder::parent_of(path).map_err(|e| by_path(path, "create", e))?;
        ControlFile::create_in(&folder, file_name(path), state)
            .map_err(|e| by_path(path, "create", e))
    }

    /// [`ControlFile::create`] for `name` in `folder`, never through a link.
    pub fn create_in(
        folder: &Folder,
        name: &OsStr,
        state: &ControlState,
    ) -> Result<ControlFile, StorageError> {
        let path = folder.path_of(name);
        // Not truncated before we hold the lock: it may be another process's.
        let file = folder.open_file(name, Open::Keep)?;
        lock(&file, &path)?;
        let old_len = file.metadata().map_err(io_err(&path, "inspect"))?.len();
        if old_len > 0 {
            // Make the old records durably gone before writing new ones.
            // Otherwise a crash that tears the new slot A could leave the old
            // slot B valid, and an earlier download's progress would be
            // trusted for this one.
            file.set_len(0).map_err(io_err(&path, "truncate"))?;
            file.sync_all().map_err(io_err(&path, "sync"))?;
        }
        let mut buf = encode_slot(state, 1);
        buf.resize(2 * SLOT, 0);
        file.write_all_at(&buf, 0).map_err(io_err(&path, "write"))?;
        file.sync_data().map_err(io_err(&path, "sync"))?;
        // The new name must survive a power cut as surely as its content.
        folder.sync().map_err(io_err(&path, "sync the folder of"))?;
        Ok(ControlFile {
            file,
            folder: folder.clone(),
            path,
            generation: 1,
            newest: 0,
        })
    }

    /// Opens the control file at `path` and returns it with its newest valid
    /// record, or `None` when there is no file.
    pub fn open(path: &Path) -> Result<Option<(ControlFile, ControlState)>, ControlError> {
        let folder = match Folder::parent_of(path) {
            Ok(f) => f,
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(by_path(path, "open", e)),
        };
        ControlFile::open_in(&folder, file_name(path)).map_err(|e| by_path(path, "open", e))
    }

    /// [`ControlFile::open`] for `name` in `folder`, never through a link.
    pub fn open_in(
        folder: &Folder,
        name: &OsStr,
    ) -> Result<Option<(ControlFile, ControlState)>, StorageError> {
        let path = folder.path_of(name);
        let file = match folder.open_file(name, Open::Existing) {
            Ok(f) => f,
            Err(StorageError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        lock(&file, &path)?;
        let len = file.metadata().map_err(io_err(&path, "inspect"))?.len();
        let mut buf = vec![0u8; (len.min(2 * SLOT as u64)) as usize];
        file.read_exact_at(&mut buf, 0)
            .map_err(io_err(&path, "read"))?;
        let (newest, generation, state) = pick(&buf, len).map_err(|e| match e {
            Pick::Future(version, record) => ControlError::FutureVersion {
                path: path.clone(),
                version,
                record,
            },
            Pick::NotOurs => ControlError::NotOurs { path: path.clone() },
            Pick::Damaged(reason) => ControlError::Damaged {
                path: path.clone(),
                reason,
            },
        })?;
        Ok(Some((
            ControlFile {
                file,
                folder: folder.clone(),
                path,
                generation,
                newest,
            },
            state,
        )))
    }

    /// Records `state` durably, overwriting the older of the two slots.
    ///
    /// The caller must have made every byte in `state.done` durable before
    /// calling (the checkpointer fdatasyncs the data file first).
    pub fn save(&mut self, state: &ControlState) -> Result<(), ControlError> {
        let target = 1 - self.newest;
        let generation = self.generation + 1;
        let buf = encode_slot(state, generation);
        self.file
            .write_all_at(&buf, (target * SLOT) as u64)
            .map_err(io_err(&self.path, "write"))?;
        self.file.sync_data().map_err(io_err(&self.path, "sync"))?;
        // Only now is the new record the newest. If the write or sync failed,
        // the next save overwrites the same (possibly torn) slot again and
        // the older record in the other slot stays untouched meanwhile.
        self.generation = generation;
        self.newest = target;
        Ok(())
    }

    /// Deletes the file once the download is complete; the directory fsync
    /// makes sure it does not reappear after a power cut and send a later
    /// `-c` looking for progress that is no longer relevant.
    pub fn remove(self) -> Result<(), StorageError> {
        self.folder.remove(file_name(&self.path))?;
        self.folder
            .sync()
            .map_err(|e| StorageError::io(&self.path, "sync the folder of", e))
        // The lock goes with `self.file` here, after the name is gone, so no
        // other process can lock the dying file in between.
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Generation of the newest record on disk.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

enum Pick {
    Future(u16, Option<u16>),
    NotOurs,
    Damaged(String),
}

/// Chooses the record to trust from the raw file content (`len` is the
/// file's real length; `buf` at most its first two slots).
///
/// A slot from a newer hfget wins over everything, even a valid older-format
/// slot: the newer program may have made progress, or changed meaning, that
/// this one cannot see, so the honest answer is "upgrade", not a silent
/// rollback.
fn pick(buf: &[u8], len: u64) -> Result<(usize, u64, ControlState), Pick> {
    let results: Vec<Result<(u64, ControlState), SlotError>> = [0, 1]
        .iter()
        .map(|&i| match buf.get(i * SLOT..(i + 1) * SLOT) {
            Some(slot) => decode_slot(slot),
            None => Err(SlotError::Truncated),
        })
        .collect();
    for r in &results {
        match r {
            Err(SlotError::FutureVersion(v)) => return Err(Pick::Future(*v, None)),
            Err(SlotError::MustUnderstand(t)) => {
                return Err(Pick::Future(FORMAT_VERSION, Some(*t)));
            }
            _ => {}
        }
    }
    let best = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().ok().map(|(g, s)| (i, *g, s)))
        .max_by_key(|(i, g, _)| (*g, std::cmp::Reverse(*i)));
    if let Some((i, g, s)) = best {
        return Ok((i, g, s.clone()));
    }
    let expected = 2 * SLOT as u64;
    if len != expected {
        return Err(Pick::Damaged(format!(
            "the file is {len} bytes long, expected {expected}"
        )));
    }
    let errs: Vec<&SlotError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let ours = |e: &&SlotError| !matches!(e, SlotError::BadMagic | SlotError::Empty);
    if !errs.iter().any(ours) && errs.iter().any(|e| **e == SlotError::BadMagic) {
        return Err(Pick::NotOurs);
    }
    Err(Pick::Damaged(if errs[0] == errs[1] {
        match errs[0] {
            SlotError::Checksum => "both copies fail their checksum".to_string(),
            e => format!("both copies: {e}"),
        }
    } else {
        format!("copy A: {}; copy B: {}", errs[0], errs[1])
    }))
}

#[cfg(test)]
// `sample(&[0..10])` is a list of extents, which is what this lint misreads.
#[allow(clippy::single_range_in_vec_init)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(done: &[std::ops::Range<u64>]) -> ControlState {
        ControlState {
            total: 1_000_000,
            etag: Some("\"abc-123\"".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            url_hash: url_hash("https://example.com/f?token=secret"),
            done: done.iter().cloned().collect(),
        }
    }

    /// Reads the newest record without locking, as a crash-recovery tool
    /// (or a test watching a live download) would.
    pub(crate) fn read_newest(path: &Path) -> Option<(u64, ControlState)> {
        let buf = std::fs::read(path).ok()?;
        pick(&buf, buf.len() as u64).ok().map(|(_, g, s)| (g, s))
    }

    #[test]
    fn round_trip() {
        let s = sample(&[0..10, 20..30, 999_990..1_000_000]);
        let slot = encode_slot(&s, 42);
        assert_eq!(slot.len(), SLOT);
        assert_eq!(decode_slot(&slot), Ok((42, s.clone())));
        let none = ControlState {
            etag: None,
            last_modified: None,
            done: ExtentSet::new(),
            ..s
        };
        assert_eq!(decode_slot(&encode_slot(&none, 1)), Ok((1, none)));
    }

    #[test]
    fn the_url_is_not_stored() {
        let slot = encode_slot(&sample(&[]), 1);
        assert!(!slot.windows(6).any(|w| w == b"secret"));
        assert_eq!(url_hash("a"), url_hash("a"));
        assert_ne!(url_hash("a"), url_hash("b"));
    }

    #[test]
    fn overlong_validators_are_dropped_not_cut() {
        let mut s = sample(&[0..5]);
        s.etag = Some("x".repeat(MAX_VALIDATOR + 1));
        s.last_modified = Some("y".repeat(MAX_VALIDATOR));
        let (_, got) = decode_slot(&encode_slot(&s, 1)).unwrap();
        assert_eq!(got.etag, None);
        assert_eq!(got.last_modified, s.last_modified);
        assert_eq!(got.done, s.done);
    }

    #[test]
    fn too_many_extents_fit_by_dropping_the_smallest() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut s = sample(&[]);
        s.etag = Some("e".repeat(MAX_VALIDATOR));
        s.last_modified = Some("l".repeat(MAX_VALIDATOR));
        let mut pos = 0;
        for _ in 0..3000 {
            pos += rng.u64(1..50);
            let len = rng.u64(1..200);
            s.done.insert(pos..pos + len);
            pos += len;
        }
        s.total = pos + 7;
        // Plus one range past the end, which must be cut off.
        s.done.insert(pos + 100..pos + 200);
        let (_, got) = decode_slot(&encode_slot(&s, 9)).unwrap();
        assert!(got.done.len() > 300 && got.done.len() < s.done.len());
        for r in got.done.iter() {
            assert!(s.done.contains_range(r.clone()));
        }
        assert!(got.done.end() <= s.total);
        // The kept ranges are the largest ones.
        let smallest_kept = got.done.iter().map(|r| r.end - r.start).min().unwrap();
        let dropped_larger = s
            .done
            .iter()
            .filter(|r| r.end <= s.total && !got.done.contains_range(r.clone()))
            .any(|r| r.end - r.start > smallest_kept);
        assert!(!dropped_larger);
    }

    #[test]
    fn decode_never_panics() {
        let mut rng = fastrand::Rng::with_seed(99);
        let base = encode_slot(&sample(&[0..10, 20..30, 40..50]), 3);
        // End of the checksummed part of `base`, to re-seal mutated slots so
        // the checks after the CRC are exercised too.
        let covered = HEADER_LEN + 2 + 9 + 2 + 29 + 4 + 3 * 16 + 2;
        assert!(decode_slot(&base).is_ok());
        for round in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..covered + 8);
                b[i] = match rng.u8(..4) {
                    0 => 0xff,
                    1 => 0,
                    _ => rng.u8(..),
                };
            }
            if round % 2 == 0 {
                let crc = crc32fast::hash(&b[..covered]);
                b[covered..covered + 4].copy_from_slice(&crc.to_le_bytes());
            }
            let cut = if round % 7 == 0 {
                rng.usize(..=SLOT)
            } else {
                SLOT
            };
            if let Ok((_, s)) = decode_slot(&b[..cut]) {
                assert!(s.done.end() <= s.total);
            }
        }
        for _ in 0..2000 {
            let n = rng.usize(..200);
            let mut b: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if rng.bool() && n >= 8 {
                b[..8].copy_from_slice(&MAGIC);
            }
            let _ = decode_slot(&b);
        }
    }

    #[test]
    fn semantic_checks_reject_bad_extents() {
        let mut s = sample(&[]);
        s.total = 100;
        let seal = |raw: &[(u64, u64)]| {
            // Hand-build a slot with arbitrary extents.
            let mut b = encode_slot(
                &ControlState {
                    done: ExtentSet::new(),
                    ..s.clone()
                },
                1,
            );
            let at = HEADER_LEN + 2 + 9 + 2 + 29;
            let mut tail = (raw.len() as u32).to_le_bytes().to_vec();
            for (a, e) in raw {
                tail.extend_from_slice(&a.to_le_bytes());
                tail.extend_from_slice(&e.to_le_bytes());
            }
            tail.extend_from_slice(&0u16.to_le_bytes());
            b.truncate(at);
            b.extend_from_slice(&tail);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            b.resize(SLOT, 0);
            decode_slot(&b)
        };
        assert!(seal(&[(0, 10), (10, 20)]).is_ok());
        assert!(matches!(seal(&[(5, 5)]), Err(SlotError::Invalid(_))));
        assert!(matches!(seal(&[(6, 5)]), Err(SlotError::Invalid(_))));
        assert!(matches!(seal(&[(90, 101)]), Err(SlotError::Invalid(_))));
        assert!(matches!(
            seal(&[(10, 20), (0, 5)]),
            Err(SlotError::Invalid(_))
        ));
        assert!(matches!(
            seal(&[(0, 20), (10, 30)]),
            Err(SlotError::Invalid(_))
        ));
    }

    #[test]
    fn records_optional_are_skipped_must_understand_are_refused() {
        let s = sample(&[0..10]);
        let b = encode_with_records(&s, 5, &[(0x0001, b"future hint")]);
        assert_eq!(decode_slot(&b), Ok((5, s.clone())));
        let b = encode_with_records(&s, 5, &[(0x0001, b""), (0x8002, b"x")]);
        assert_eq!(decode_slot(&b), Err(SlotError::MustUnderstand(0x8002)));
    }

    fn paths() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.part.ctl");
        (dir, p)
    }

    #[test]
    fn create_save_open_alternates_slots() {
        let (_d, p) = paths();
        assert!(ControlFile::open(&p).unwrap().is_none());
        let mut cf = ControlFile::create(&p, &sample(&[])).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2 * SLOT as u64);
        for i in 1..=5u64 {
            cf.save(&sample(&[0..i * 10])).unwrap();
            assert_eq!(cf.generation(), i + 1);
        }
        drop(cf);
        let (cf, st) = ControlFile::open(&p).unwrap().unwrap();
        assert_eq!(st, sample(&[0..50]));
        assert_eq!(cf.generation(), 6);
        assert_eq!(cf.path(), p);
        cf.remove().unwrap();
        assert!(!p.exists());
    }

    #[test]
    fn a_torn_newest_slot_falls_back_to_the_older_one() {
        let (_d, p) = paths();
        let mut cf = ControlFile::create(&p, &sample(&[])).unwrap();
        cf.save(&sample(&[0..100])).unwrap(); // gen 2 in B
        cf.save(&sample(&[0..200])).unwrap(); // gen 3 in A
        drop(cf);
        // Tear slot A (the newest) in its extent area.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xAB; 40], 100).unwrap();
        drop(f);
        let (mut cf, st) = ControlFile::open(&p).unwrap().unwrap();
        assert_eq!(st.done, sample(&[0..100]).done);
        assert_eq!(cf.generation(), 2);
        // The next save goes into the torn slot, leaving the good one alone.
        cf.save(&sample(&[0..150])).unwrap();
        drop(cf);
        let (_, st) = ControlFile::open(&p).unwrap().unwrap();
        assert_eq!(st.done, sample(&[0..150]).done);
    }

    fn write_file(p: &Path, bytes: &[u8]) {
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn both_slots_bad_is_damaged() {
        let (_d, p) = paths();
        let mut cf = ControlFile::create(&p, &sample(&[])).unwrap();
        cf.save(&sample(&[0..1])).unwrap();
        drop(cf);
        let mut b = std::fs::read(&p).unwrap();
        b[100] ^= 1;
        b[SLOT + 100] ^= 1;
        write_file(&p, &b);
        match ControlFile::open(&p) {
            Err(e @ ControlError::Damaged { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("both copies fail their checksum"), "{msg}");
                assert!(msg.contains("delete it"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_file_is_damaged_with_its_length() {
        let (_d, p) = paths();
        write_file(&p, b"HFD");
        let e = ControlFile::open(&p).unwrap_err();
        assert!(
            e.to_string()
                .contains("the file is 3 bytes long, expected 16384"),
            "{e}"
        );
        // Cut inside slot B: slot A is still whole and trusted.
        ControlFile::create(&p, &sample(&[0..7])).unwrap();
        let b = std::fs::read(&p).unwrap();
        write_file(&p, &b[..SLOT + 10]);
        let (_, st) = ControlFile::open(&p).unwrap().unwrap();
        assert_eq!(st, sample(&[0..7]));
        // Cut inside slot A: nothing left.
        write_file(&p, &b[..SLOT - 1]);
        assert!(matches!(
            ControlFile::open(&p),
            Err(ControlError::Damaged { .. })
        ));
    }

    #[test]
    fn a_blank_file_is_damaged_and_a_foreign_one_is_not_ours() {
        let (_d, p) = paths();
        write_file(&p, &vec![0u8; 2 * SLOT]);
        assert!(matches!(
            ControlFile::open(&p),
            Err(ControlError::Damaged { .. })
        ));
        let mut junk = b"#!/bin/sh\necho hello\n".to_vec();
        junk.resize(2 * SLOT, b' ');
        write_file(&p, &junk);
        let e = ControlFile::open(&p).unwrap_err();
        assert!(matches!(e, ControlError::NotOurs { .. }), "{e:?}");
        assert!(e.to_string().contains("not an hfget control file"));
    }

    #[test]
    fn newer_formats_are_refused_with_advice() {
        let (_d, p) = paths();
        let mut b = encode_slot(&sample(&[0..1]), 7);
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        // Slot B still holds a valid format-1 record; the newer one wins.
        b.extend_from_slice(&encode_slot(&sample(&[0..1]), 6));
        write_file(&p, &b);
        match ControlFile::open(&p) {
            Err(e @ ControlError::FutureVersion { version: 2, .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("newer hfget (format 2)"), "{msg}");
                assert!(msg.contains("upgrade"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let mut b = encode_with_records(&sample(&[0..1]), 3, &[(0x8001, b"x")]);
        b.resize(2 * SLOT, 0);
        write_file(&p, &b);
        assert!(matches!(
            ControlFile::open(&p),
            Err(ControlError::FutureVersion {
                record: Some(0x8001),
                ..
            })
        ));
    }

    #[test]
    fn a_second_open_is_locked_out() {
        let (_d, p) = paths();
        let cf = ControlFile::create(&p, &sample(&[])).unwrap();
        let e = ControlFile::open(&p).unwrap_err();
        assert!(matches!(e, ControlError::Locked { .. }), "{e:?}");
        assert!(e.to_string().contains("another hfget process"));
        let e = ControlFile::create(&p, &sample(&[0..5])).unwrap_err();
        assert!(matches!(e, ControlError::Locked { .. }), "{e:?}");
        // The refused create did not clobber the live file.
        assert_eq!(read_newest(&p).unwrap().1, sample(&[]));
        drop(cf);
        assert!(ControlFile::open(&p).unwrap().is_some());
    }

    #[test]
    fn create_replaces_an_old_file_entirely() {
        let (_d, p) = paths();
        let mut cf = ControlFile::create(&p, &sample(&[0..9])).unwrap();
        for _ in 0..3 {
            cf.save(&sample(&[0..99])).unwrap();
        }
        drop(cf);
        let cf = ControlFile::create(&p, &sample(&[])).unwrap();
        assert_eq!(cf.generation(), 1);
        let b = std::fs::read(&p).unwrap();
        assert!(b[SLOT..].iter().all(|x| *x == 0));
        assert_eq!(read_newest(&p).unwrap(), (1, sample(&[])));
    }
}
