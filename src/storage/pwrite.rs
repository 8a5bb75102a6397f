//! The default sink: vectored positional writes from the writer thread.
//!
//! The network hands us `Bytes` frames of a few KiB to a few hundred KiB.
//! `pwritev` passes them to the kernel in one system call without first
//! copying them into a contiguous buffer, so a 256 KiB batch of 16 KiB frames
//! costs one syscall and one copy (into the page cache), which is the least
//! any buffered write path can do.

use std::fs::File;
use std::io::{self, IoSlice};

use bytes::Bytes;

use super::Sink;

/// Linux's `IOV_MAX`: pwritev refuses more slices than this in one call.
const MAX_SLICES: usize = 1024;

pub struct PwriteSink {
    file: File,
    /// Cleared when the file system refuses spliced writes.
    splice: bool,
}

impl PwriteSink {
    pub fn new(file: File) -> Self {
        PwriteSink { file, splice: true }
    }
}

impl Sink for PwriteSink {
    fn write_at(&mut self, offset: u64, bufs: &[Bytes]) -> io::Result<()> {
        let mut storage: Vec<IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| IoSlice::new(b))
            .collect();
        let mut slices: &mut [IoSlice<'_>] = &mut storage;
        let mut pos = offset;
        while !slices.is_empty() {
            let n = slices.len().min(MAX_SLICES);
            match rustix::io::pwritev(&self.file, &slices[..n], pos) {
                // A zero-byte write of a non-empty request means the kernel
                // will not make progress; retrying would spin forever.
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("the file system accepted no bytes at offset {pos}"),
                    ));
                }
                Ok(written) => {
                    pos += written as u64;
                    IoSlice::advance_slices(&mut slices, written);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Splices pipe → file: the bytes never pass through user space.
    #[cfg(target_os = "linux")]
    fn write_from_pipe(
        &mut self,
        pipe: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        use std::os::fd::AsFd;
        if self.splice {
            match super::pipe::drain_to_file(pipe, self.file.as_fd(), offset, len) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => self.splice = false,
                r => return r,
            }
        }
        self.write_at(offset, &[super::pipe::read_bytes(pipe, len)?])
    }

    /// Nothing to do: pwrite puts the bytes in the page cache before it
    /// returns, where an `fdatasync` of any handle on the file finds them.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::Allocation;
    use crate::storage::alloc::{allocate, open_data_file};

    /// Writes 16 interleaved streams of random-sized, randomly split batches
    /// through `sink` and returns the expected file content.
    pub(crate) fn interleaved_model(sink: &mut dyn Sink, total: u64, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut model = vec![0u8; total as usize];
        let streams = 16u64;
        let region = total.div_ceil(streams);
        let mut next: Vec<u64> = (0..streams).map(|i| (i * region).min(total)).collect();
        let ends: Vec<u64> = (0..streams)
            .map(|i| ((i + 1) * region).min(total))
            .collect();
        loop {
            let live: Vec<usize> = (0..streams as usize)
                .filter(|&i| next[i] < ends[i])
                .collect();
            if live.is_empty() {
                break;
            }
            let i = live[rng.usize(..live.len())];
            let len = rng.u64(1..=(70_000.min(ends[i] - next[i])));
            let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            model[next[i] as usize..(next[i] + len) as usize].copy_from_slice(&data);
            // Split the batch into frames, some of them empty.
            let mut bufs = Vec::new();
            let mut rest = Bytes::from(data);
            while !rest.is_empty() {
                let cut = rng.usize(0..=rest.len().min(20_000));
                bufs.push(rest.split_to(cut));
            }
            sink.write_at(next[i], &bufs).unwrap();
            next[i] += len;
        }
        sink.flush().unwrap();
        model
    }

    #[test]
    fn interleaved_writes_equal_the_model() {
        let dir = tempfile::tempdir().unwrap();
        for (k, mode) in [Allocation::Falloc, Allocation::Trunc, Allocation::None]
            .into_iter()
            .enumerate()
        {
            let p = dir.path().join(format!("d{k}"));
            let f = open_data_file(&p).unwrap();
            let total = 3_000_017;
            allocate(&f, &p, total, mode).unwrap();
            let mut sink = PwriteSink::new(f);
            let model = interleaved_model(&mut sink, total, 11 + k as u64);
            assert!(std::fs::read(&p).unwrap() == model, "{mode:?}");
        }
    }

    #[test]
    fn more_slices_than_iov_max_are_written_in_several_calls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let mut sink = PwriteSink::new(open_data_file(&p).unwrap());
        let bufs: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 3]))
            .collect();
        sink.write_at(10, &bufs).unwrap();
        let got = std::fs::read(&p).unwrap();
        assert_eq!(got.len(), 10 + 9000);
        assert!(got[..10].iter().all(|b| *b == 0));
        for (i, chunk) in got[10..].chunks(3).enumerate() {
            assert_eq!(chunk, [(i % 251) as u8; 3]);
        }
    }

    #[test]
    fn a_write_to_a_read_only_handle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::write(&p, b"x").unwrap();
        let mut sink = PwriteSink::new(File::open(&p).unwrap());
        assert!(sink.write_at(0, &[Bytes::from_static(b"abc")]).is_err());
        // Nothing to write is not an error.
        sink.write_at(0, &[]).unwrap();
    }
}
