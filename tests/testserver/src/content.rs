//! Deterministic file content: byte `i` of a file is a pure function of
//! `(seed, i)`, so tests can serve and verify multi-gigabyte files without
//! storing them anywhere.
//!
//! # Construction
//!
//! One process-wide 1 MiB pattern of pseudo-random bytes is generated once.
//! A file with seed `s` reads that pattern starting at a seed-dependent
//! rotation, and XORs every 1 MiB block `b` with a 64-bit key
//! `k(s, b)` repeated over the block:
//!
//! ```text
//! byte(s, i) = P[(i mod 1 MiB + r(s)) mod 1 MiB] ^ le_bytes(k(s, i / 1 MiB))[i mod 8]
//! ```
//!
//! Why this shape:
//! * **Speed.** Filling is a copy from the pattern XORed with a splatted
//!   `u64`, which the compiler vectorises; several GB/s on one core, so the
//!   generator never limits a loopback benchmark.
//! * **Memory.** The pattern is shared by every seed (a server with a
//!   thousand files still holds 2 MiB), and seeds differ by rotation and key.
//! * **Misplaced data is caught.** Within a block, bytes at different
//!   offsets come from unrelated pattern words; across blocks the per-block
//!   key changes, so there is no 1 MiB period either. A segment written at
//!   the wrong offset, or a block duplicated, changes the SHA-256.

use std::ops::Range;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// Length of the shared pattern, and of a keyed block.
const PATTERN_LEN: usize = 1 << 20;

/// The shared pattern, stored twice in a row so that any rotated window of
/// up to `PATTERN_LEN` bytes is one contiguous slice.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Box<[u8]>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut v = vec![0u8; 2 * PATTERN_LEN];
        // A fixed starting state (hex digits of pi) keeps the content stable
        // across runs and machines: recorded hashes stay valid.
        let mut state = 0x243F_6A88_85A3_08D3u64;
        for word in v[..PATTERN_LEN].chunks_exact_mut(8) {
            word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        v.copy_within(..PATTERN_LEN, PATTERN_LEN);
        v.into_boxed_slice()
    })
}

/// SplitMix64: a tiny, well-mixed generator; also used as a hash by feeding
/// it a state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// The SplitMix64 finaliser: a bijection on `u64`, so distinct inputs give
/// distinct outputs (distinct blocks of one seed get distinct keys).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generated file: `len` bytes, each a pure function of `(seed, offset)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Content {
    seed: u64,
    len: u64,
}

impl Content {
    /// A file of `len` bytes derived from `seed`.
    pub fn new(seed: u64, len: u64) -> Content {
        Content { seed, len }
    }

    /// The seed this content is derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The file length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where this seed starts reading the shared pattern (a multiple of 8,
    /// so the XOR key stays aligned with file offsets).
    fn rotation(&self) -> usize {
        (mix(self.seed ^ 0x5851_F42D_4C95_7F2D) as usize % (PATTERN_LEN / 8)) * 8
    }

    /// The XOR key of 1 MiB block `block`.
    fn block_key(&self, block: u64) -> u64 {
        mix(mix(self.seed ^ 0x2545_F491_4F6C_DD1D) ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Writes bytes `offset .. offset + buf.len()` into `buf`.
    ///
    /// The generator is defined for every offset, so this does not check
    /// `len()`; callers serving the file stay within it.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let pat = pattern();
        let rot = self.rotation();
        let mut pos = offset;
        let mut done = 0;
        while done < buf.len() {
            let within = (pos % PATTERN_LEN as u64) as usize;
            let n = (PATTERN_LEN - within).min(buf.len() - done);
            let src = &pat[within + rot..within + rot + n];
            // Rotate the key so that its byte 0 lines up with `buf[done]`:
            // file byte `pos` uses key byte `pos % 8`.
            let key = self
                .block_key(pos / PATTERN_LEN as u64)
                .rotate_right(8 * (pos % 8) as u32);
            xor_copy(&mut buf[done..done + n], src, key);
            done += n;
            pos += n as u64;
        }
    }

    /// The bytes of `range` as a fresh buffer.
    ///
    /// # Panics
    /// If the range ends beyond `len()` (a caller bug, never client input).
    pub fn bytes(&self, range: Range<u64>) -> Bytes {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} outside a {}-byte file",
            self.len
        );
        let mut buf = BytesMut::zeroed((range.end - range.start) as usize);
        self.fill(range.start, &mut buf);
        buf.freeze()
    }

    /// SHA-256 of the whole file, lowercase hex; streams in 1 MiB pieces.
    pub fn sha256_hex(&self) -> String {
        self.sha256_hex_of_range(0..self.len)
    }

    /// SHA-256 of `range` of the file, lowercase hex.
    ///
    /// # Panics
    /// If the range ends beyond `len()`.
    pub fn sha256_hex_of_range(&self, range: Range<u64>) -> String {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} outside a {}-byte file",
            self.len
        );
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; PATTERN_LEN];
        let mut pos = range.start;
        while pos < range.end {
            let n = ((range.end - pos) as usize).min(buf.len());
            self.fill(pos, &mut buf[..n]);
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        hex(&hasher.finalize())
    }
}

/// `dst = src ^ key` with `key` repeated every 8 bytes, byte 0 of the key
/// (little-endian) applying to `dst[0]`. Written as whole-word operations so
/// the optimiser turns it into vector code.
fn xor_copy(dst: &mut [u8], src: &[u8], key: u64) {
    debug_assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        d.copy_from_slice(&(u64::from_le_bytes(w) ^ key).to_le_bytes());
    }
    let kb = key.to_le_bytes();
    for ((d, s), k) in d.into_remainder().iter_mut().zip(s.remainder()).zip(kb) {
        *d = *s ^ k;
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn fill_at_any_offset_matches_the_whole() {
        let c = Content::new(7, 3 * MIB + 123);
        let whole = c.bytes(0..c.len());
        // Offsets around block boundaries, unaligned starts and lengths.
        for &(off, n) in &[
            (0u64, 1usize),
            (1, 7),
            (3, 17),
            (MIB - 5, 11),
            (MIB - 1, 1),
            (MIB, 8),
            (2 * MIB - 3, MIB as usize + 9),
            (12345, 999_999),
            (3 * MIB + 100, 23),
        ] {
            let mut buf = vec![0u8; n];
            c.fill(off, &mut buf);
            assert_eq!(
                &buf[..],
                &whole[off as usize..off as usize + n],
                "at {off}+{n}"
            );
        }
        // Concatenating odd-sized pieces rebuilds the file.
        let mut cat = Vec::new();
        let mut pos = 0;
        let mut step = 1;
        while pos < c.len() {
            let n = step.min(c.len() - pos);
            cat.extend_from_slice(&c.bytes(pos..pos + n));
            pos += n;
            step = step * 3 + 1;
        }
        assert_eq!(&cat[..], &whole[..]);
    }

    #[test]
    fn seeds_differ_and_content_is_stable() {
        let a = Content::new(1, 4096).bytes(0..4096);
        let b = Content::new(2, 4096).bytes(0..4096);
        let a2 = Content::new(1, 4096).bytes(0..4096);
        assert_eq!(a, a2);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 64, "{same} equal bytes out of 4096");
        // The length does not change the bytes, only where the file ends.
        assert_eq!(&Content::new(1, 10_000).bytes(0..4096)[..], &a[..]);
    }

    #[test]
    fn no_short_period_and_no_block_period() {
        let c = Content::new(42, 3 * MIB);
        let block0 = c.bytes(0..MIB);
        let block1 = c.bytes(MIB..2 * MIB);
        let same = block0.iter().zip(&block1).filter(|(x, y)| x == y).count();
        assert!(
            same < (MIB as usize) / 128,
            "{same} equal bytes between blocks"
        );
        // A shifted copy of a piece (a segment written at the wrong offset)
        // never matches, for small and word-sized shifts.
        let piece = c.bytes(1000..1000 + 4096);
        for shift in [1u64, 8, 64, 4096, 65536] {
            assert_ne!(
                piece,
                c.bytes(1000 + shift..1000 + shift + 4096),
                "shift {shift}"
            );
        }
    }

    #[test]
    fn sha256_streams_the_same_bytes() {
        let c = Content::new(9, MIB + 77);
        let direct = hex(&Sha256::digest(c.bytes(0..c.len())));
        assert_eq!(c.sha256_hex(), direct);
        let part = hex(&Sha256::digest(c.bytes(500..MIB + 3)));
        assert_eq!(c.sha256_hex_of_range(500..MIB + 3), part);
        // Known value of the empty input.
        assert_eq!(
            Content::new(1, 0).sha256_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// Fill throughput; meaningful only in release builds:
    /// `cargo test --release --lib fill_throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn fill_throughput() {
        let c = Content::new(3, 1 << 34);
        let mut buf = vec![0u8; 256 << 10];
        let t = std::time::Instant::now();
        let mut off = 12_345;
        let total = 8u64 << 30;
        while off < total {
            c.fill(off, &mut buf);
            off += buf.len() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("fill: {:.2} GB/s", total as f64 / secs / 1e9);
    }
}
