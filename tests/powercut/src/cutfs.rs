//! cutfs: an in-memory FUSE file system that keeps what is durable apart
//! from what was merely written, so that a power cut can be simulated.
//!
//! The model, deliberately harsher than ext4 where it can be:
//!
//! - **File data.** Every write and size change of a file is applied at once
//!   to what processes see, and also logged as *pending*. `fsync` or
//!   `fdatasync` of the file makes its current content durable and clears
//!   the log. At a power cut each pending write survives or not at random,
//!   **per 512-byte sector** and in order (so a sector written twice holds
//!   the old, the first or the second version), and each pending size
//!   change survives or not at random. Unsynced data is thus neither all
//!   lost nor all kept, but any mixture, including torn multi-sector writes.
//! - **Names.** Creates, unlinks, renames and mkdirs go into one ordered
//!   journal, as in a journaling file system. Only an `fsync` of a
//!   directory commits it (all of it, as ext4's jbd2 does). At a power cut
//!   a random *prefix* of the uncommitted journal survives. An `fsync` of a
//!   file does **not** make its name durable (POSIX does not promise that).
//! - Inodes unreachable after a cut are dropped.
//!
//! Open files bypass the kernel's page cache (`FOPEN_DIRECT_IO`) and
//! attributes are never cached, so what a process reads is this model's
//! state. `flock` is left to the kernel (the file system does not ask for
//! remote BSD locks), which is enough between the processes of one mount.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const TTL: Duration = Duration::ZERO;
const SECTOR: u64 = 512;
const ROOT: u64 = 1;

enum DataOp {
    Write { off: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct FileData {
    /// What processes see.
    data: Vec<u8>,
    /// What a power cut certainly keeps.
    synced: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<DataOp>,
}

enum Body {
    File(FileData),
    Dir(BTreeMap<OsString, u64>),
}

struct Node {
    body: Body,
    mtime: SystemTime,
    ctime: SystemTime,
}

#[derive(Clone, Debug)]
enum MetaOp {
    Link {
        dir: u64,
        name: OsString,
        ino: u64,
    },
    Unlink {
        dir: u64,
        name: OsString,
    },
    Rename {
        from: u64,
        name: OsString,
        to: u64,
        newname: OsString,
    },
}

/// Counters of what the file system saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub writes: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub cuts: u64,
    /// Pending sectors (and size changes) a cut kept or dropped.
    pub sectors_kept: u64,
    pub sectors_dropped: u64,
    /// Journal entries a cut kept or dropped.
    pub names_kept: u64,
    pub names_dropped: u64,
}

/// The whole file system; shared between the FUSE session and the driver.
pub struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Directory entries as of the last journal commit.
    durable: HashMap<u64, BTreeMap<OsString, u64>>,
    /// Name changes since then, in order.
    journal: Vec<MetaOp>,
    pub stats: Stats,
}

fn apply(
    ns: &mut HashMap<u64, BTreeMap<OsString, u64>>,
    op: &MetaOp,
    is_dir: impl Fn(u64) -> bool,
) {
    match op {
        MetaOp::Link { dir, name, ino } => {
            ns.entry(*dir).or_default().insert(name.clone(), *ino);
            if is_dir(*ino) {
                ns.entry(*ino).or_default();
            }
        }
        MetaOp::Unlink { dir, name } => {
            if let Some(d) = ns.get_mut(dir) {
                d.remove(name);
            }
        }
        MetaOp::Rename {
            from,
            name,
            to,
            newname,
        } => {
            if let Some(ino) = ns.get_mut(from).and_then(|d| d.remove(name)) {
                ns.entry(*to).or_default().insert(newname.clone(), ino);
            }
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        let now = SystemTime::now();
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                body: Body::Dir(BTreeMap::new()),
                mtime: now,
                ctime: now,
            },
        );
        let mut durable = HashMap::new();
        durable.insert(ROOT, BTreeMap::new());
        State {
            nodes,
            next_ino: ROOT + 1,
            durable,
            journal: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.nodes.get(&ino),
            Some(Node {
                body: Body::Dir(_),
                ..
            })
        )
    }

    fn commit(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        let dirs: HashSet<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.body, Body::Dir(_)))
            .map(|(i, _)| *i)
            .collect();
        for op in &journal {
            apply(&mut self.durable, op, |i| dirs.contains(&i));
        }
    }

    /// `sync(2)`: everything becomes durable. For the driver, between runs.
    pub fn sync_all(&mut self) {
        self.commit();
        for n in self.nodes.values_mut() {
            if let Body::File(f) = &mut n.body {
                f.synced = f.data.clone();
                f.pending.clear();
            }
        }
        self.collect_garbage();
    }

    /// The power cut: only durable state survives, plus a random part of
    /// the rest (see the module doc). No process may be using the mount.
    pub fn cut(&mut self, rng: &mut fastrand::Rng) {
        self.stats.cuts += 1;
        let journal = std::mem::take(&mut self.journal);
        let keep = rng.usize(0..=journal.len());
        self.stats.names_kept += keep as u64;
        self.stats.names_dropped += (journal.len() - keep) as u64;
        let dirs: HashSet<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.body, Body::Dir(_)))
            .map(|(i, _)| *i)
            .collect();
        for op in &journal[..keep] {
            apply(&mut self.durable, op, |i| dirs.contains(&i));
        }
        let (mut kept, mut dropped) = (0u64, 0u64);
        for (ino, n) in self.nodes.iter_mut() {
            match &mut n.body {
                Body::Dir(entries) => {
                    *entries = self.durable.get(ino).cloned().unwrap_or_default();
                }
                Body::File(f) => {
                    let mut disk = std::mem::take(&mut f.synced);
                    for op in f.pending.drain(..) {
                        match op {
                            DataOp::SetLen(len) => {
                                if rng.bool() {
                                    disk.resize(len as usize, 0);
                                    kept += 1;
                                } else {
                                    dropped += 1;
                                }
                            }
                            DataOp::Write { off, data } => {
                                let end = off + data.len() as u64;
                                let mut pos = off;
                                while pos < end {
                                    let next = ((pos / SECTOR) + 1) * SECTOR;
                                    let stop = next.min(end);
                                    if rng.bool() {
                                        if disk.len() < stop as usize {
                                            disk.resize(stop as usize, 0);
                                        }
                                        disk[pos as usize..stop as usize].copy_from_slice(
                                            &data[(pos - off) as usize..(stop - off) as usize],
                                        );
                                        kept += 1;
                                    } else {
                                        dropped += 1;
                                    }
                                    pos = stop;
                                }
                            }
                        }
                    }
                    f.data = disk.clone();
                    f.synced = disk;
                }
            }
        }
        self.stats.sectors_kept += kept;
        self.stats.sectors_dropped += dropped;
        self.collect_garbage();
    }

    /// Drops inodes that no directory (seen or durable) names.
    fn collect_garbage(&mut self) {
        let mut reachable = HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(i) = stack.pop() {
            if !reachable.insert(i) {
                continue;
            }
            if let Some(Node {
                body: Body::Dir(e), ..
            }) = self.nodes.get(&i)
            {
                stack.extend(e.values().copied());
            }
            if let Some(e) = self.durable.get(&i) {
                stack.extend(e.values().copied());
            }
        }
        for op in &self.journal {
            if let MetaOp::Link { ino, .. } = op {
                reachable.insert(*ino);
            }
        }
        self.nodes.retain(|i, _| reachable.contains(i));
        self.durable.retain(|i, _| reachable.contains(i));
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.nodes.get(&ino)?;
        let (kind, size, perm, nlink) = match &n.body {
            Body::File(f) => (FileType::RegularFile, f.data.len() as u64, 0o644, 1),
            Body::Dir(_) => (FileType::Directory, 0, 0o755, 2),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.ctime,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, i32> {
        match self.nodes.get(&dir) {
            Some(Node {
                body: Body::Dir(e), ..
            }) => Ok(e),
            Some(_) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&dir) {
            Some(Node {
                body: Body::Dir(e), ..
            }) => Ok(e),
            Some(_) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn touch(&mut self, ino: u64) {
        let now = SystemTime::now();
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mtime = now;
            n.ctime = now;
        }
    }

    fn new_node(&mut self, parent: u64, name: &OsStr, body: Body) -> Result<u64, i32> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = SystemTime::now();
        self.nodes.insert(
            ino,
            Node {
                body,
                mtime: now,
                ctime: now,
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.journal.push(MetaOp::Link {
            dir: parent,
            name: name.to_owned(),
            ino,
        });
        self.touch(parent);
        Ok(ino)
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, i32> {
        match self.nodes.get_mut(&ino) {
            Some(Node {
                body: Body::File(f),
                ..
            }) => Ok(f),
            Some(_) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn set_len(&mut self, ino: u64, len: u64) -> Result<(), i32> {
        let f = self.file_mut(ino)?;
        f.data.resize(len as usize, 0);
        f.pending.push(DataOp::SetLen(len));
        self.touch(ino);
        Ok(())
    }
}

/// The FUSE side: every operation takes the state's lock.
pub struct CutFs(pub Arc<Mutex<State>>);

impl CutFs {
    fn st(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Filesystem for CutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let st = self.st();
        let ino = match st.entries(parent) {
            Ok(e) => e.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        match ino.and_then(|i| st.attr(i)) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.st().attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut st = self.st();
        if let Some(len) = size
            && let Err(e) = st.set_len(ino, len)
        {
            return reply.error(e);
        }
        if let Some(t) = mtime
            && let Some(n) = st.nodes.get_mut(&ino)
        {
            n.mtime = match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            };
            n.ctime = SystemTime::now();
        }
        match st.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.st();
        match st.new_node(parent, name, Body::Dir(BTreeMap::new())) {
            Ok(ino) => reply.entry(&TTL, &st.attr(ino).expect("just made"), 0),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.st();
        let existing = match st.entries(parent) {
            Ok(e) => e.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let ino = match existing {
            Some(_) if flags & libc::O_EXCL != 0 => return reply.error(libc::EEXIST),
            Some(i) => {
                if flags & libc::O_TRUNC != 0
                    && let Err(e) = st.set_len(i, 0)
                {
                    return reply.error(e);
                }
                i
            }
            None => match st.new_node(parent, name, Body::File(FileData::default())) {
                Ok(i) => i,
                Err(e) => return reply.error(e),
            },
        };
        reply.created(&TTL, &st.attr(ino).expect("exists"), 0, 0, FOPEN_DIRECT_IO);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut st = self.st();
        if st.attr(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        if flags & libc::O_TRUNC != 0
            && let Err(e) = st.set_len(ino, 0)
        {
            return reply.error(e);
        }
        reply.opened(0, FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let mut st = self.st();
        match st.file_mut(ino) {
            Ok(f) => {
                let start = (offset.max(0) as usize).min(f.data.len());
                let end = start.saturating_add(size as usize).min(f.data.len());
                reply.data(&f.data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut st = self.st();
        st.stats.writes += 1;
        let f = match st.file_mut(ino) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let off = offset.max(0) as usize;
        let end = off + data.len();
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[off..end].copy_from_slice(data);
        f.pending.push(DataOp::Write {
            off: off as u64,
            data: data.to_vec(),
        });
        st.touch(ino);
        reply.written(data.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        st.stats.file_syncs += 1;
        match st.file_mut(ino) {
            Ok(f) => {
                f.synced = f.data.clone();
                f.pending.clear();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        st.stats.dir_syncs += 1;
        st.commit();
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let st = self.st();
        let entries = match st.entries(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ino, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in entries {
            let kind = if st.is_dir(*child) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*child, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let ino = match st.entries(parent).map(|e| e.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        if st.is_dir(ino) {
            return reply.error(libc::EISDIR);
        }
        st.entries_mut(parent).expect("checked").remove(name);
        st.journal.push(MetaOp::Unlink {
            dir: parent,
            name: name.to_owned(),
        });
        st.touch(parent);
        reply.ok();
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let ino = match st.entries(parent).map(|e| e.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        match st.entries(ino) {
            Ok(e) if !e.is_empty() => return reply.error(libc::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        st.entries_mut(parent).expect("checked").remove(name);
        st.journal.push(MetaOp::Unlink {
            dir: parent,
            name: name.to_owned(),
        });
        st.touch(parent);
        reply.ok();
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        let ino = match st.entries(parent).map(|e| e.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        let target = match st.entries(newparent) {
            Ok(e) => e.get(newname).copied(),
            Err(e) => return reply.error(e),
        };
        if flags & libc::RENAME_EXCHANGE != 0 {
            return reply.error(libc::EINVAL);
        }
        if let Some(t) = target {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return reply.error(libc::EEXIST);
            }
            if t == ino {
                return reply.ok();
            }
            match (st.is_dir(ino), st.is_dir(t)) {
                (false, true) => return reply.error(libc::EISDIR),
                (true, false) => return reply.error(libc::ENOTDIR),
                (true, true) if !st.entries(t).map(|e| e.is_empty()).unwrap_or(true) => {
                    return reply.error(libc::ENOTEMPTY);
                }
                _ => {}
            }
        }
        st.entries_mut(parent).expect("checked").remove(name);
        st.entries_mut(newparent)
            .expect("checked")
            .insert(newname.to_owned(), ino);
        st.journal.push(MetaOp::Rename {
            from: parent,
            name: name.to_owned(),
            to: newparent,
            newname: newname.to_owned(),
        });
        st.touch(parent);
        st.touch(newparent);
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 24, 1 << 24, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(libc::EOPNOTSUPP);
        }
        let mut st = self.st();
        let end = (offset.max(0) + length.max(0)) as u64;
        let len = match st.file_mut(ino) {
            Ok(f) => f.data.len() as u64,
            Err(e) => return reply.error(e),
        };
        if end > len
            && let Err(e) = st.set_len(ino, end)
        {
            return reply.error(e);
        }
        reply.ok();
    }
}
