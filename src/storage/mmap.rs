//! The opt-in sink that copies into shared file mappings (`--write-mode=mmap`).
//!
//! On ext4 it is slower than [`super::pwrite::PwriteSink`] (docs/storage.md
//! has our numbers): every page costs a fault, and the first store into a
//! fallocated page converts an unwritten extent inside a journal transaction.
//! It exists for file systems and kernels where the syscall per write is the
//! dominant cost.
//!
//! # Why a SIGBUS cannot happen in normal operation
//!
//! A store into a mapping raises SIGBUS, not an error return, when the page
//! has no backing: past the end of the file, or in a hole the file system
//! cannot fill because the disk is full. [`MmapSink::new`] therefore demands
//! that the whole download is already backed by allocated blocks (the engine
//! fallocates first), and [`MmapSink`] never maps or touches a byte at or past
//! `total`; a write that would is refused as an io error. What remains is out
//! of our hands: another process truncating the file, or a media error while
//! the kernel reads a page in, still raise SIGBUS, as for any mmap user.

use std::fs::File;
use std::io;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use super::Sink;
use super::alloc::allocated_bytes;

/// Size and alignment of one mapping window.
///
/// 16 MiB is large enough that mapping and unmapping (a TLB shootdown each)
/// happen once per 64 writes of 256 KiB, which is noise next to the copying
/// and page faults those writes cost, and small enough that [`MAX_WINDOWS`]
/// of them bound the mapped span. It is a multiple of every page size Linux
/// uses (4 KiB, 16 KiB, 64 KiB, 2 MiB), as mmap offsets must be.
const WINDOW: u64 = 16 << 20;

/// Windows kept mapped at once; the least recently used one is unmapped
/// when another is needed.
///
/// Touched pages of a live mapping count as the process's RSS, which users
/// read as a leak (aria2 with mmap showed 2 GB). 16 windows bound that to
/// 256 MiB, while 16 interleaved segments each keep their own window live and
/// so never remap more than once per window filled. With more streams than
/// windows the LRU remaps more often, which costs CPU, not memory.
const MAX_WINDOWS: usize = 16;

struct Window {
    start: u64,
    map: MmapRaw,
    last_use: u64,
}

/// Copies writes into windowed `MAP_SHARED` mappings of the data file.
pub struct MmapSink {
    file: File,
    total: u64,
    windows: Vec<Window>,
    clock: u64,
}

impl MmapSink {
    /// Wraps `file`, which must already have all `total` bytes allocated.
    pub fn new(file: File, total: Option<u64>) -> io::Result<MmapSink> {
        let Some(total) = total else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mmap needs the download size known up front: use --write-mode=pwrite",
            ));
        };
        let len = file.metadata()?.len();
        let allocated = allocated_bytes(&file)?;
        if len < total || allocated < total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mmap needs the space reserved up front (--file-allocation=falloc): \
                     the file is {len} bytes long with {allocated} bytes allocated, \
                     the download is {total} bytes"
                ),
            ));
        }
        Ok(MmapSink {
            file,
            total,
            windows: Vec::with_capacity(MAX_WINDOWS),
            clock: 0,
        })
    }

    /// The live window holding `pos` (< total), mapping it if needed.
    fn window_for(&mut self, pos: u64) -> io::Result<&Window> {
        self.clock += 1;
        let start = pos - pos % WINDOW;
        if let Some(i) = self.windows.iter().position(|w| w.start == start) {
            self.windows[i].last_use = self.clock;
            return Ok(&self.windows[i]);
        }
        if self.windows.len() >= MAX_WINDOWS {
            let oldest = self
                .windows
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.last_use)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let w = self.windows.swap_remove(oldest);
            unmap(w)?;
        }
        // Never map past `total`: those pages may have no backing.
        let len = (self.total - start).min(WINDOW) as usize;
        let map = MmapOptions::new()
            .offset(start)
            .len(len)
            .map_raw(&self.file)?;
        self.windows.push(Window {
            start,
            map,
            last_use: self.clock,
        });
        Ok(self.windows.last().expect("just pushed"))
    }
}

/// Drops a window. Its dirty pages stay dirty in the page cache on Linux
/// (munmap does not lose them), so a later fdatasync still writes them.
fn unmap(w: Window) -> io::Result<()> {
    #[cfg(not(target_os = "linux"))]
    w.map.flush()?;
    drop(w);
    Ok(())
}

impl Sink for MmapSink {
    fn write_at(&mut self, offset: u64, bufs: &[Bytes]) -> io::Result<()> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.total) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a write of {len} bytes at offset {offset} goes past the end of the \
                     {}-byte download",
                    self.total
                ),
            ));
        }
        let mut pos = offset;
        for buf in bufs {
            let mut src: &[u8] = buf;
            while !src.is_empty() {
                let w = self.window_for(pos)?;
                let at = (pos - w.start) as usize;
                let n = src.len().min(w.map.len() - at);
                // SAFETY: `at + n <= w.map.len()`, so the destination lies
                // inside a live mapping that covers only bytes below `total`,
                // all of which `new` checked are allocated in the file: the
                // stores cannot fault for lack of backing. The source is a
                // Rust slice, which cannot overlap a mapping we created and
                // never hand out.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), w.map.as_mut_ptr().add(at), n);
                }
                src = &src[n..];
                pos += n as u64;
            }
        }
        Ok(())
    }

    /// On Linux there is nothing to push: a store into a shared mapping marks
    /// its page dirty in the page cache at the write fault, and `fdatasync`
    /// on any descriptor of the file writes every dirty page of it, mapped
    /// or not. `msync(MS_ASYNC)` is a no-op there since 2.6.19 and
    /// `msync(MS_SYNC)` is the same as that `fdatasync` restricted to a range,
    /// so calling either here would only repeat work the checkpoint does.
    /// Other systems may keep mapped dirt out of the file's cache until an
    /// msync, so there the live windows are synced.
    fn flush(&mut self) -> io::Result<()> {
        #[cfg(not(target_os = "linux"))]
        for w in &self.windows {
            w.map.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Allocation;
    use crate::storage::alloc::{allocate, open_data_file};
    use crate::storage::pwrite::tests::interleaved_model;

    #[test]
    fn interleaved_writes_equal_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let f = open_data_file(&p).unwrap();
        // Larger than several windows, not window-aligned, so that writes
        // cross window edges and the LRU evicts.
        let total = 5 * WINDOW + 12_345;
        assert_eq!(
            allocate(&f, &p, total, Allocation::Falloc).unwrap(),
            Allocation::Falloc
        );
        let mut sink = MmapSink::new(f, Some(total)).unwrap();
        let model = {
            // Fewer live windows than streams forces evictions.
            let mut rng = fastrand::Rng::with_seed(5);
            let mut model = vec![0u8; total as usize];
            for _ in 0..400 {
                let at = rng.u64(0..total);
                let len = rng.u64(1..=(300_000.min(total - at)));
                let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                model[at as usize..(at + len) as usize].copy_from_slice(&data);
                let cut = rng.usize(0..=data.len());
                let b = Bytes::from(data);
                sink.write_at(at, &[b.slice(..cut), b.slice(cut..)])
                    .unwrap();
                assert!(sink.windows.len() <= MAX_WINDOWS);
            }
            model
        };
        sink.flush().unwrap();
        drop(sink);
        assert!(std::fs::read(&p).unwrap() == model);

        let q = dir.path().join("e");
        let g = open_data_file(&q).unwrap();
        let total = 3_000_017;
        allocate(&g, &q, total, Allocation::Falloc).unwrap();
        let mut sink = MmapSink::new(g, Some(total)).unwrap();
        let model = interleaved_model(&mut sink, total, 3);
        drop(sink);
        assert!(std::fs::read(&q).unwrap() == model);
    }

    #[test]
    fn refuses_an_unreserved_or_unsized_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let f = open_data_file(&p).unwrap();
        allocate(&f, &p, 1 << 20, Allocation::Trunc).unwrap();
        let e = MmapSink::new(f.try_clone().unwrap(), Some(1 << 20))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--file-allocation=falloc"), "{e}");
        let e = MmapSink::new(f, None).err().unwrap();
        assert!(e.to_string().contains("size"), "{e}");
    }

    #[test]
    fn a_write_past_the_end_is_an_error_not_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let f = open_data_file(&p).unwrap();
        allocate(&f, &p, 10_000, Allocation::Falloc).unwrap();
        let mut sink = MmapSink::new(f, Some(10_000)).unwrap();
        let b = Bytes::from(vec![1u8; 100]);
        assert!(sink.write_at(9_950, std::slice::from_ref(&b)).is_err());
        assert!(
            sink.write_at(u64::MAX - 10, std::slice::from_ref(&b))
                .is_err()
        );
        sink.write_at(9_900, std::slice::from_ref(&b)).unwrap();
        // An empty sink of an empty download works too.
        let q = dir.path().join("e");
        let mut empty = MmapSink::new(open_data_file(&q).unwrap(), Some(0)).unwrap();
        empty.write_at(0, &[]).unwrap();
        assert!(empty.write_at(0, std::slice::from_ref(&b)).is_err());
    }
}
