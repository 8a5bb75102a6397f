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
//! bytes after its last chunk. Memory per decoder is one chunk (two for a
//! byte-grouped one): LZ4 blocks are decoded straight into the chunk's
//! buffer, not through a frame reader's buffers.

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
    Decoder::default().decode(h, stored, index)
}

/// Decodes chunks one after another, reusing its scratch memory: a chunk
/// costs one buffer of its raw length (the one handed out) and no other
/// allocation.
#[derive(Default)]
pub struct Decoder {
    /// Byte-grouped data before it is interleaved again.
    grouped: Vec<u8>,
}

impl Decoder {
    /// Decompresses chunk `index`'s stored bytes per its header.
    pub fn decode(&mut self, h: &Header, stored: &[u8], index: u32) -> Result<Bytes, DecodeError> {
        if h.compression == Compression::None {
            return Ok(Bytes::copy_from_slice(stored));
        }
        let mut out = vec![0u8; h.raw];
        if h.compression == Compression::Lz4 {
            lz4_frame(stored, &mut out, index)?;
        } else {
            self.grouped.resize(h.raw, 0);
            lz4_frame(stored, &mut self.grouped, index)?;
            bg4_join_into(&self.grouped, &mut out);
        }
        Ok(Bytes::from(out))
    }
}

/// The LZ4 frame format's magic number and the flag bits read here.
const LZ4_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
const FLG_VERSION: u8 = 0b1100_0000;
const FLG_VERSION_1: u8 = 0b0100_0000;
const FLG_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
/// Linked blocks may refer this far back.
const LZ4_WINDOW: usize = 64 << 10;

/// One LZ4 frame, which must decompress to exactly `out.len()` bytes,
/// decoded straight into `out`: each block in place after the ones before
/// it (which linked blocks read as their dictionary), no copy, no buffer
/// of the decoder's own. A frame with checksums or a dictionary id (not
/// what the reference client writes) goes through lz4_flex's frame
/// decoder, which checks them.
fn lz4_frame(stored: &[u8], out: &mut [u8], index: u32) -> Result<(), DecodeError> {
    let bad = |why: &str| DecodeError::Lz4 {
        index,
        why: why.to_string(),
    };
    if stored.len() < 7 || stored[..4] != LZ4_MAGIC {
        return Err(bad("not an LZ4 frame"));
    }
    let (flg, bd) = (stored[4], stored[5]);
    if flg & FLG_VERSION != FLG_VERSION_1 || flg & FLG_RESERVED != 0 || bd & 0b1000_1111 != 0 {
        return Err(bad("an unknown LZ4 frame header"));
    }
    if flg & (FLG_BLOCK_CHECKSUM | FLG_CONTENT_CHECKSUM | FLG_DICT_ID) != 0 {
        return lz4_frame_checked(stored, out, index);
    }
    let mut at = 7 + if flg & FLG_CONTENT_SIZE != 0 { 8 } else { 0 };
    let (raw, mut pos) = (out.len(), 0usize);
    loop {
        let Some(size) = stored.get(at..at + 4) else {
            return Err(bad("the frame ends without its end mark"));
        };
        at += 4;
        let size = u32::from_le_bytes(size.try_into().expect("four bytes"));
        if size == 0 {
            break;
        }
        let len = (size & 0x7fff_ffff) as usize;
        let Some(block) = stored.get(at..at + len) else {
            return Err(bad("a block runs past the chunk"));
        };
        at += len;
        let (done, rest) = out.split_at_mut(pos);
        let n = if size & 0x8000_0000 != 0 {
            let Some(dst) = rest.get_mut(..len) else {
                return Err(DecodeError::Length {
                    index,
                    want: raw,
                    got: pos + len,
                });
            };
            dst.copy_from_slice(block);
            len
        } else if flg & FLG_INDEPENDENT != 0 {
            lz4_flex::block::decompress_into(block, rest).map_err(|e| bad(&e.to_string()))?
        } else {
            let dict = &done[done.len().saturating_sub(LZ4_WINDOW)..];
            lz4_flex::block::decompress_into_with_dict(block, rest, dict)
                .map_err(|e| bad(&e.to_string()))?
        };
        pos += n;
    }
    if at != stored.len() {
        return Err(bad("bytes after the end of the frame"));
    }
    if pos != raw {
        return Err(DecodeError::Length {
            index,
            want: raw,
            got: pos,
        });
    }
    Ok(())
}

/// The frame through lz4_flex's decoder (checksums checked).
fn lz4_frame_checked(stored: &[u8], out: &mut [u8], index: u32) -> Result<(), DecodeError> {
    let raw = out.len();
    let mut got = Vec::with_capacity(raw);
    let mut src = stored;
    // One byte more than allowed shows a frame that runs long.
    let mut dec = lz4_flex::frame::FrameDecoder::new(&mut src).take(raw as u64 + 1);
    dec.read_to_end(&mut got).map_err(|e| DecodeError::Lz4 {
        index,
        why: e.to_string(),
    })?;
    drop(dec);
    if !src.is_empty() {
        return Err(DecodeError::Lz4 {
            index,
            why: "bytes after the end of the frame".into(),
        });
    }
    if got.len() != raw {
        return Err(DecodeError::Length {
            index,
            want: raw,
            got: got.len(),
        });
    }
    out.copy_from_slice(&got);
    Ok(())
}

/// Undoes byte grouping: group `g` holds the bytes at positions `g`,
/// `g + 4`, … of the original, and the first `len % 4` groups are one
/// longer.
pub fn bg4_join(grouped: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; grouped.len()];
    bg4_join_into(grouped, &mut out);
    out
}

/// [`bg4_join`] into `out`, of the same length: four bytes at a time.
fn bg4_join_into(grouped: &[u8], out: &mut [u8]) {
    let n = grouped.len();
    let (q, r) = (n / 4, n % 4);
    let len = |g: usize| q + usize::from(g < r);
    let (g0, rest) = grouped.split_at(len(0));
    let (g1, rest) = rest.split_at(len(1));
    let (g2, g3) = rest.split_at(len(2));
    let columns = g0.iter().zip(g1).zip(g2.iter().zip(g3));
    for (w, ((&a, &b), (&c, &d))) in out.chunks_exact_mut(4).zip(columns) {
        w.copy_from_slice(&[a, b, c, d]);
    }
    let tail = &mut out[4 * q..];
    for (g, b) in tail.iter_mut().enumerate() {
        *b = [g0, g1, g2][g][q];
    }
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
    decoder: Decoder,
}

impl ChunkStream {
    pub fn new(chunks: std::ops::Range<u32>) -> ChunkStream {
        ChunkStream {
            next: chunks.start,
            end: chunks.end,
            buf: Vec::new(),
            at: 0,
            decoder: Decoder::default(),
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
                    data: self.decoder.decode(&h, &data[HEADER_LEN..len], self.next)?,
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
        let stored = &self.buf[self.at + HEADER_LEN..self.at + HEADER_LEN + h.stored];
        let data = self.decoder.decode(&h, stored, self.next)?;
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
    fn lz4_frames_of_every_kind_decode_and_wrong_lengths_do_not() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        // Compressible and 128 KiB: two 64 KiB blocks that refer back.
        let d: Vec<u8> = (0..MAX_CHUNK).map(|i| (i / 300 % 7) as u8).collect();
        let kinds = [
            (BlockMode::Independent, false, false, None),
            (BlockMode::Linked, false, false, None),
            (BlockMode::Linked, true, false, None),
            (BlockMode::Linked, false, true, None),
            (BlockMode::Independent, false, false, Some(d.len() as u64)),
        ];
        for (k, (mode, sums, block_sums, size)) in kinds.into_iter().enumerate() {
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(mode)
                .content_checksum(sums)
                .block_checksums(block_sums)
                .content_size(size);
            let mut e = FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(&d).unwrap();
            let f = e.finish().unwrap();
            let h = Header {
                stored: f.len(),
                compression: Compression::Lz4,
                raw: d.len(),
            };
            assert_eq!(&decode(&h, &f, 0).unwrap()[..], &d[..], "kind {k}");
            for raw in [d.len() - 1, d.len() + 1] {
                assert!(decode(&Header { raw, ..h }, &f, 0).is_err(), "kind {k}");
            }
            let mut extra = f.clone();
            extra.push(0);
            let h2 = Header {
                stored: extra.len(),
                ..h
            };
            assert!(decode(&h2, &extra, 0).is_err(), "kind {k}: bytes after");
        }
    }

    /// Damaged frames, compared with lz4_flex's frame reader: the block
    /// decoder never panics, and whatever it accepts, the frame reader
    /// reads the same way.
    #[test]
    fn damaged_frames_decode_as_the_frame_reader_reads_them() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let d = sample(3 * (MAX_CHUNK / 4), 5);
        let mut rng = fastrand::Rng::with_seed(77);
        let mut accepted = 0;
        for mode in [BlockMode::Independent, BlockMode::Linked] {
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(mode);
            let mut e = FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(&d).unwrap();
            let good = e.finish().unwrap();
            for _ in 0..3000 {
                let mut f = good.clone();
                for _ in 0..rng.usize(1..4) {
                    let at = rng.usize(..f.len());
                    f[at] = rng.u8(..);
                }
                let raw = if rng.bool() {
                    d.len()
                } else {
                    rng.usize(..MAX_CHUNK)
                };
                let h = Header {
                    stored: f.len(),
                    compression: Compression::Lz4,
                    raw,
                };
                let Ok(got) = decode(&h, &f, 0) else { continue };
                let mut want = Vec::new();
                let read = lz4_flex::frame::FrameDecoder::new(&f[..]).read_to_end(&mut want);
                assert!(read.is_ok(), "accepted what the frame reader refuses");
                assert_eq!(&got[..], &want[..]);
                accepted += 1;
            }
        }
        // Damaged literals decode (only the file's hash can tell).
        assert!(accepted > 100, "{accepted}");
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
