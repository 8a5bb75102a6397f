//! The Xet hashes: chunk hashes, the Merkle aggregate that names a xorb,
//! and the file hash (the file id a resolve answer gives as `X-Xet-Hash`).
//!
//! All are keyed blake3. A chunk's hash is blake3 of its bytes under the
//! data key; a group of (hash, length) pairs is hashed under the
//! internal-node key over lines `"{hex} : {len}\n"`; groups are cut where a
//! hash's last eight bytes, as a little-endian number, are divisible by 4
//! (at least 2 and at most 9 per group), level after level until one is
//! left. A file's hash is that root hashed once more under an all-zero key.
//!
//! The text form of a hash is not plain hex of its bytes: each 8-byte group
//! is written as a little-endian u64 in 16 hex digits (so `00 01 .. 07`
//! reads `0706050403020100`).

use std::fmt;

/// Key of chunk hashes.
const DATA_KEY: [u8; 32] = [
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16,
    155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
];

/// Key of the Merkle tree's inner nodes.
const NODE_KEY: [u8; 32] = [
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55,
    199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
];

/// Groups of the Merkle tree hold between these many children.
const MIN_GROUP: usize = 2;
const MAX_GROUP: usize = 9;

/// A 32-byte Xet hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct XetHash(pub [u8; 32]);

impl XetHash {
    /// Parses the text form (64 hex digits, any case).
    pub fn parse(s: &str) -> Option<XetHash> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for g in 0..4 {
            let text = std::str::from_utf8(&s[g * 16..g * 16 + 16]).ok()?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let v = u64::from_str_radix(text, 16).ok()?;
            out[g * 8..g * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Some(XetHash(out))
    }

    /// The text form: lowercase, each 8-byte group as a little-endian u64.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for g in 0..4 {
            s.push_str(&format!("{:016x}", self.word(g)));
        }
        s
    }

    fn word(&self, g: usize) -> u64 {
        u64::from_le_bytes(self.0[g * 8..g * 8 + 8].try_into().expect("8 bytes"))
    }

    /// Where the Merkle tree may end a group after this node.
    fn is_cut(&self) -> bool {
        self.word(3).is_multiple_of(4)
    }
}

impl fmt::Display for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for XetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XetHash({})", self.hex())
    }
}

/// The hash of one chunk's (uncompressed) bytes.
pub fn chunk_hash(data: &[u8]) -> XetHash {
    XetHash(*blake3::keyed_hash(&DATA_KEY, data).as_bytes())
}

/// One inner node: the hash of its children's `(hash, length)` lines.
fn node(children: &[(XetHash, u64)]) -> (XetHash, u64) {
    let mut text = String::with_capacity(children.len() * 90);
    let mut len = 0u64;
    for (h, n) in children {
        text.push_str(&h.hex());
        text.push_str(" : ");
        text.push_str(&n.to_string());
        text.push('\n');
        len += n;
    }
    (
        XetHash(*blake3::keyed_hash(&NODE_KEY, text.as_bytes()).as_bytes()),
        len,
    )
}

/// How many of `level`'s first nodes form the next group.
fn group_len(level: &[(XetHash, u64)]) -> usize {
    if level.len() <= MIN_GROUP {
        return level.len();
    }
    let end = MAX_GROUP.min(level.len());
    (MIN_GROUP..end)
        .find(|&i| level[i].0.is_cut())
        .map_or(end, |i| i + 1)
}

/// The root of the Merkle tree over `(chunk hash, chunk length)` pairs: a
/// xorb's hash when they are its chunks. Zero for no chunks.
pub fn merkle_root(chunks: &[(XetHash, u64)]) -> XetHash {
    if chunks.is_empty() {
        return XetHash::default();
    }
    let mut level = chunks.to_vec();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len() / 2 + 1);
        let mut at = 0;
        while at < level.len() {
            let n = group_len(&level[at..]);
            next.push(node(&level[at..at + n]));
            at += n;
        }
        level = next;
    }
    level[0].0
}

/// A file's hash (its Xet file id) from its chunks in file order.
pub fn file_hash(chunks: &[(XetHash, u64)]) -> XetHash {
    if chunks.is_empty() {
        return XetHash::default();
    }
    let root = merkle_root(chunks);
    XetHash(*blake3::keyed_hash(&[0u8; 32], &root.0).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reverses_each_eight_bytes() {
        let h = XetHash(std::array::from_fn(|i| i as u8));
        // The example of the protocol's documentation (whose text drops
        // the "10" of the third group).
        assert_eq!(
            h.hex(),
            "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
        );
        assert_eq!(XetHash::parse(&h.hex()), Some(h));
        assert_eq!(XetHash::parse(&h.hex().to_uppercase()), Some(h));
        assert_eq!(XetHash::parse("00"), None);
        assert_eq!(XetHash::parse(&"g".repeat(64)), None);
        assert_eq!(XetHash::parse(&"+1".repeat(32)), None);
    }

    /// The inner-node text for a node of four children, as the protocol's
    /// documentation spells it out, hashed by blake3 directly.
    #[test]
    fn an_inner_node_hashes_its_lines() {
        let kids: Vec<(XetHash, u64)> = [
            (
                "1f6a2b8e9d3c4075a2e8c5fd4f0b763e6f3c1d7a9b2e6487de3f91ab7c6d5401",
                10000,
            ),
            (
                "7c94fe2a38bdcf9b4d2a6f7e1e08ac35bc24a7903d6f5a0e7d1c2b93e5f748de",
                20000,
            ),
        ]
        .iter()
        .map(|(h, n)| (XetHash::parse(h).unwrap(), *n))
        .collect();
        let text = "1f6a2b8e9d3c4075a2e8c5fd4f0b763e6f3c1d7a9b2e6487de3f91ab7c6d5401 : 10000\n\
                    7c94fe2a38bdcf9b4d2a6f7e1e08ac35bc24a7903d6f5a0e7d1c2b93e5f748de : 20000\n";
        let want = blake3::keyed_hash(&NODE_KEY, text.as_bytes());
        assert_eq!(node(&kids), (XetHash(*want.as_bytes()), 30000));
        // Two children are one group: the root is that node.
        assert_eq!(merkle_root(&kids), XetHash(*want.as_bytes()));
    }

    #[test]
    fn groups_hold_two_to_nine_and_cut_on_the_hash() {
        let h = |last: u64| {
            let mut b = [0u8; 32];
            b[24..].copy_from_slice(&last.to_le_bytes());
            (XetHash(b), 1)
        };
        // A cut at index 0 or 1 is ignored: at least two per group.
        assert_eq!(group_len(&[h(0), h(0), h(1), h(1)]), 4);
        assert_eq!(group_len(&[h(1), h(1), h(4), h(1)]), 3);
        assert_eq!(group_len(&vec![h(1); 20]), 9);
        assert_eq!(group_len(&[h(1), h(1)]), 2);
        assert_eq!(group_len(&[h(1)]), 1);
    }

    #[test]
    fn a_single_chunk_is_its_own_root_and_the_file_hash_is_keyed_with_zeros() {
        let c = chunk_hash(b"hello");
        assert_eq!(c.0, *blake3::keyed_hash(&DATA_KEY, b"hello").as_bytes());
        assert_eq!(merkle_root(&[(c, 5)]), c);
        assert_eq!(
            file_hash(&[(c, 5)]).0,
            *blake3::keyed_hash(&[0; 32], &c.0).as_bytes()
        );
        assert_eq!(file_hash(&[]), XetHash::default());
    }
}
