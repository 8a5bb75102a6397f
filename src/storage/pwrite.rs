//! Positional-write sink (stub; being written).
use super::Sink;
use bytes::Bytes;
use std::fs::File;
use std::io;

pub struct PwriteSink {
    file: File,
}

impl PwriteSink {
    pub fn new(file: File) -> Self {
        PwriteSink { file }
    }
}

impl Sink for PwriteSink {
    fn write_at(&mut self, offset: u64, bufs: &[Bytes]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut off = offset;
        for b in bufs {
            self.file.write_all_at(b, off)?;
            off += b.len() as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
