//! Xorb chunks: the 8-byte header, the three compressions, and a streaming
//! decoder that turns the bytes of a fetched xorb range into its chunks.
//!
//! A xorb is chunks back to back, each an 8-byte header then its stored
//! bytes. The header is: version (0), stored length (3 bytes, little
//! endian), compression (0 none, 1 LZ4, 2 byte-grouping-4 then LZ4),
//! length once decompressed (3 bytes, little endian). LZ4 here is the LZ4
//! *frame* format (magic, frame descriptor, blocks), as the reference
//! client writes it. Byte grouping stores the bytes at positions 0, 4, 8,
//! … first, then 1, 5, 9, …, then 2, … and 3, …; undoing it interleaves
//! them again.
//!
//! The decoder trusts nothing: a chunk is at most 128 KiB decompressed and
//! its stored form at most twice that, decompression stops at the length
//! the header states, and a chunk whose bytes do not come out at exactly
//! that length is an error, as is a range that ends mid-chunk or carries
//! bytes after its last chunk. Memory per decoder is one chunk.

use std::io::Read;

use bytes::Bytes;

/// Size of a chunk header.
pub const HEADER_LEN: usize = 8;
/// The largest chunk, decompressed.
pub const MAX_CHUNK: usize = 128 << 10;
/// The largest stored chunk: LZ4 of incompressible data is a little longer
/// than the data, and the reference client allows twice the chunk size.
pub const MAX_STORED: usize = 2 * MAX_CHUNK;

/// How a chunk's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    /// Byte grouping by 4, then LZ4.
    Bg4Lz4,
}

/// A chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub stored: usize,
    pub compression: Compression,
    pub raw: usize,
}

/// Why a xorb range cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("chunk {index}: bad header: {why}")]
    Header { index: u32, why: String },
    #[error("chunk {index}: bad LZ4 data: {why}")]
    Lz4 { index: u32, why: String },
    #[error("chunk {index}: decompressed to {got} bytes, its header says {want}")]
    Length { index: u32, want: usize, got: usize },
    #[error("the range ended inside chunk {index}")]
    Truncated { index: u32 },
    #[error("{extra} bytes after the last chunk ({index})")]
    Extra { index: u32, extra: usize },
}

fn le24(b: &[u8]) -> usize {
    b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16
}

impl Header {
    /// Parses and checks the 8 bytes of chunk `index`'s header.
    pub fn parse(b: &[u8; HEADER_LEN], index: u32) -> Result<Header, DecodeError> {
        let bad = |why: String| DecodeError::Header { index, why };
        if b[0] != 0 {
            return Err(bad(format!("version {} (only 0 is known)", b[0])));
        }
        let compression = match b[4] {
            0 => Compression::None,
            1 => Compression::Lz4,
            2 => Compression::Bg4Lz4,
            n => return Err(bad(format!("unknown compression {n}"))),
        };
        let (stored, raw) = (le24(&b[1..4]), le24(&b[5..8]));
        if raw > MAX_CHUNK {
            return Err(bad(format!("a chunk of {raw} bytes (at most {MAX_CHUNK})")));
        }
        if stored > MAX_STORED {
            return Err(bad(format!("{stored} stored bytes (at most {MAX_STORED})")));
        }
        if compression == Compression::None && stored != raw {
            return Err(bad(format!(
                "uncompressed, yet {stored} bytes stored for {raw}"
            )));
        }
        Ok(Header {
            stored,
            compression,
            raw,
        })
    }
}

/// Decompresses chunk `index`'s stored bytes per its header.
pub fn decode(h: &Header, stored: &[u8], index: u32) -> Result<Bytes, DecodeError> {
    let out = match h.compression {
        Compression::None => return Ok(Bytes::copy_from_slice(stored)),
        Compression::Lz4 => lz4_frame(stored, h.raw, index)?,
        Compression::Bg4Lz4 => bg4_join(&lz4_frame(stored, h.raw, index)?),
    };
    Ok(Bytes::from(out))
}

/// One LZ4 frame, which must decompress to exactly `raw` bytes.
fn lz4_frame(stored: &[u8], raw: usize, index: u32) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(raw);
    // One byte more than allowed shows a frame that runs long.
    let mut dec = lz4_flex::frame::FrameDecoder::new(stored).take(raw as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| DecodeError::Lz4 {
        index,
        why: e.to_string(),
    })?;
    if out.len() != raw {
        return Err(DecodeError::Length {
            index,
            want: raw,
            got: out.len(),
        });
    }
    Ok(out)
}

/// Undoes byte grouping: group `g` holds the bytes at positions `g`,
/// `g + 4`, … of the original, and the first `len % 4` groups are one
/// longer.
pub fn bg4_join(grouped: &[u8]) -> Vec<u8> {
    let n = grouped.len();
    let (q, r) = (n / 4, n % 4);
    let mut out = vec![0u8; n];
    let mut at = 0;
    for g in 0..4 {
        let len = q + usize::from(g < r);
        for (j, &b) in grouped[at..at + len].iter().enumerate() {
            out[4 * j + g] = b;
        }
        at += len;
    }
    out
}

/// A decoded chunk of a xorb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Its index in the xorb.
    pub index: u32,
    pub data: Bytes,
}

/// Decodes the bytes of a xorb range holding chunks `[first, end)` as they
/// arrive, in pieces of any size.
pub struct ChunkStream {
    next: u32,
    end: u32,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    at: usize,
}

impl ChunkStream {
    pub fn new(chunks: std::ops::Range<u32>) -> ChunkStream {
        ChunkStream {
            next: chunks.start,
            end: chunks.end,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// The index of the next chunk to come.
    pub fn next_index(&self) -> u32 {
        self.next
    }

    /// Takes `data` and appends every chunk it completes to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Chunk>) -> Result<(), DecodeError> {
        while !data.is_empty() {
            if self.next == self.end {
                return Err(DecodeError::Extra {
                    index: self.end.saturating_sub(1),
                    extra: data.len() + self.buf.len() - self.at,
                });
            }
            // Whole chunks straight from `data` when nothing is buffered.
            if self.buf.len() == self.at
                && let Some((h, len)) = self.whole_chunk(data)?
            {
                out.push(Chunk {
                    index: self.next,
                    data: decode(&h, &data[HEADER_LEN..len], self.next)?,
                });
                self.next += 1;
                data = &data[len..];
                continue;
            }
            let want = self.wanted()?;
            let have = self.buf.len() - self.at;
            let take = (want - have).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.drain(out)?;
        }
        Ok(())
    }

    /// Whether `data` starts with a whole chunk: its header and length.
    fn whole_chunk(&self, data: &[u8]) -> Result<Option<(Header, usize)>, DecodeError> {
        let Some(head) = data.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = Header::parse(head, self.next)?;
        let len = HEADER_LEN + h.stored;
        Ok((data.len() >= len).then_some((h, len)))
    }

    /// Bytes the buffer must hold for the next step: a header, or the
    /// chunk it announces.
    fn wanted(&self) -> Result<usize, DecodeError> {
        let have = &self.buf[self.at..];
        match have.first_chunk::<HEADER_LEN>() {
            None => Ok(HEADER_LEN),
            Some(head) => Ok(HEADER_LEN + Header::parse(head, self.next)?.stored),
        }
    }

    /// Decodes the buffered chunk when it is complete.
    fn drain(&mut self, out: &mut Vec<Chunk>) -> Result<(), DecodeError> {
        let have = &self.buf[self.at..];
        let Some(head) = have.first_chunk::<HEADER_LEN>() else {
            return Ok(());
        };
        let h = Header::parse(head, self.next)?;
        if have.len() < HEADER_LEN + h.stored {
            return Ok(());
        }
        let data = decode(&h, &have[HEADER_LEN..HEADER_LEN + h.stored], self.next)?;
        out.push(Chunk {
            index: self.next,
            data,
        });
        self.next += 1;
        self.buf.clear();
        self.at = 0;
        Ok(())
    }

    /// The range's bytes are all in: every chunk must have come, whole.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.next < self.end || self.buf.len() > self.at {
            return Err(DecodeError::Truncated { index: self.next });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A chunk built here by hand (header written byte by byte, LZ4 by
    /// lz4_flex's encoder, grouping by a loop), not by the decoder's code.
    fn stored(data: &[u8], compression: u8) -> Vec<u8> {
        let body = match compression {
            0 => data.to_vec(),
            1 => lz4(data),
            2 => {
                let mut g = Vec::new();
                for k in 0..4 {
                    g.extend(data.iter().skip(k).step_by(4));
                }
                lz4(&g)
            }
            _ => unreachable!(),
        };
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        out.push(compression);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes()[..3]);
        out.extend(body);
        out
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        // Compressible, with some structure for byte grouping.
        (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    rng.u8(..)
                } else {
                    (i / 97) as u8
                }
            })
            .collect()
    }

    fn decode_all(
        xorb: &[u8],
        chunks: std::ops::Range<u32>,
        piece: usize,
    ) -> Result<Vec<Chunk>, DecodeError> {
        let mut s = ChunkStream::new(chunks);
        let mut out = Vec::new();
        for p in xorb.chunks(piece.max(1)) {
            s.push(p, &mut out)?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn every_compression_and_every_cut_decodes_the_same() {
        let datas: Vec<Vec<u8>> = [0, 1, 3, 4, 5, 1000, 65_537, MAX_CHUNK]
            .iter()
            .enumerate()
            .map(|(i, &n)| sample(n, i as u64))
            .collect();
        for comp in 0..3u8 {
            let mut xorb = Vec::new();
            for d in &datas {
                xorb.extend(stored(d, comp));
            }
            for piece in [1, 7, 8, 9, 4096, 1 << 20] {
                let got = decode_all(&xorb, 5..5 + datas.len() as u32, piece).unwrap();
                assert_eq!(got.len(), datas.len());
                for (k, (c, d)) in got.iter().zip(&datas).enumerate() {
                    assert_eq!(c.index, 5 + k as u32);
                    assert_eq!(
                        &c.data[..],
                        &d[..],
                        "compression {comp}, piece {piece}, chunk {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn bg4_join_undoes_grouping_for_every_remainder() {
        for n in 0..13 {
            let d: Vec<u8> = (0..n as u8).collect();
            let mut g = Vec::new();
            for k in 0..4 {
                g.extend(d.iter().skip(k).step_by(4));
            }
            assert_eq!(bg4_join(&g), d, "{n}");
        }
    }

    #[test]
    fn damage_is_an_error_never_data() {
        let d = sample(5000, 9);
        let good = stored(&d, 1);
        // A wrong version, an unknown compression, absurd lengths.
        for (at, v) in [(0, 1u8), (4, 7), (7, 0xff), (3, 0xff)] {
            let mut x = good.clone();
            x[at] = v;
            assert!(
                matches!(decode_all(&x, 0..1, 64), Err(DecodeError::Header { .. })),
                "{at}"
            );
        }
        // LZ4 bytes flipped: an LZ4 error or a wrong length, never Ok.
        // (Flipped literals would pass: only the final checksum catches them.)
        for at in [HEADER_LEN, HEADER_LEN + 4, HEADER_LEN + 10, good.len() - 1] {
            let mut x = good.clone();
            x[at] ^= 0x5a;
            let r = decode_all(&x, 0..1, 64);
            assert!(
                matches!(r, Err(DecodeError::Lz4 { .. } | DecodeError::Length { .. })),
                "{at}: {r:?}"
            );
        }
        // A header promising more than the frame holds.
        let mut x = good.clone();
        x[5..8].copy_from_slice(&6000u32.to_le_bytes()[..3]);
        assert!(matches!(
            decode_all(&x, 0..1, 64),
            Err(DecodeError::Length { .. })
        ));
        // Cut short, too long, or fewer chunks than asked.
        assert_eq!(
            decode_all(&good[..good.len() - 1], 0..1, 64),
            Err(DecodeError::Truncated { index: 0 })
        );
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode_all(&long, 0..1, 64),
            Err(DecodeError::Extra { .. })
        ));
        assert_eq!(
            decode_all(&good, 0..2, 64),
            Err(DecodeError::Truncated { index: 1 })
        );
        // Uncompressed must store exactly its length.
        let mut x = stored(&d, 0);
        x[1..4].copy_from_slice(&4999u32.to_le_bytes()[..3]);
        assert!(matches!(
            decode_all(&x, 0..1, 64),
            Err(DecodeError::Header { .. })
        ));
    }
}
