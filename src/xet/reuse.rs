//! Deduplicated updates: the bytes a new version of a file shares with an
//! older one already on disk, found from the two reconstructions.
//!
//! Xet storage is content-addressed: chunk `i` of xorb `X` is the same
//! bytes wherever it is referenced. So when the reconstruction of the old
//! file is known (hfd keeps it, as a [`Layout`], once a Xet file is
//! complete), every term of the new file whose chunks the old file also
//! holds can be copied from the old file instead of fetched.
//!
//! A term is found in the old file in one of two ways:
//! * the old file has a term of the same xorb and the same chunk range
//!   (its offset follows from the lengths of the terms before it), or
//! * the old file's layout knows where each of those chunks is: the raw
//!   length of every chunk is recorded as the chunks are decoded, so a
//!   term that covers only part of an old term (an edit in its middle
//!   splits it) is still found, chunk by chunk.
//!
//! Nothing here trusts the old file's bytes: the copy is checked with the
//! rest of the file against its sha256, and a mismatch means the file is
//! fetched again without copying (`hub::file`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::recon::Term;

/// One term of a file as laid out: the term, and the raw length of each of
/// its chunks when every one of them is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaidTerm {
    #[serde(flatten)]
    pub term: Term,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<u32>>,
}

/// A file's terms in file order (they start at byte 0 and follow each
/// other).
pub type Layout = Vec<LaidTerm>;

/// An older version of the file being fetched: where it is, and its layout.
#[derive(Clone, Debug)]
pub struct Previous {
    pub path: PathBuf,
    pub layout: Layout,
}

impl Previous {
    /// The old file's length, as its layout says.
    pub fn len(&self) -> u64 {
        self.layout.iter().map(|t| t.term.unpacked_length).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes `[from, from + len)` of the old file are bytes `[to, to + len)`
/// of the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    pub from: u64,
    pub to: u64,
    pub len: u64,
}

/// Raw chunk lengths by xorb and chunk index: what is known of the xorbs'
/// chunks, from decoding them or from a layout.
#[derive(Clone, Debug, Default)]
pub struct ChunkLens {
    by_xorb: HashMap<String, HashMap<u32, u32>>,
}

impl ChunkLens {
    /// Records that chunk `index` of `xorb` is `len` bytes raw.
    pub fn insert(&mut self, xorb: &str, index: u32, len: u32) {
        match self.by_xorb.get_mut(xorb) {
            Some(m) => {
                m.insert(index, len);
            }
            None => {
                self.by_xorb
                    .insert(xorb.to_string(), HashMap::from([(index, len)]));
            }
        }
    }

    /// Takes in every chunk length `layout` knows.
    pub fn learn(&mut self, layout: &[LaidTerm]) {
        for t in layout {
            let Some(lens) = checked_lens(t) else {
                continue;
            };
            for (i, &n) in (t.term.range.start..).zip(lens) {
                self.insert(&t.term.hash, i, n);
            }
        }
    }

    /// The layout of `terms`: each with its chunks' lengths where all are
    /// known and add up to the term's length.
    pub fn layout(&self, terms: &[Term]) -> Layout {
        terms
            .iter()
            .map(|t| LaidTerm {
                term: t.clone(),
                chunks: self.lens_of(t),
            })
            .collect()
    }

    fn lens_of(&self, t: &Term) -> Option<Vec<u32>> {
        let m = self.by_xorb.get(&t.hash)?;
        let lens: Vec<u32> = (t.range.start..t.range.end)
            .map(|i| m.get(&i).copied())
            .collect::<Option<_>>()?;
        let sum: u64 = lens.iter().map(|&n| u64::from(n)).sum();
        (sum == t.unpacked_length).then_some(lens)
    }
}

/// A term's chunk lengths, when they are consistent with the term.
fn checked_lens(t: &LaidTerm) -> Option<&[u32]> {
    let lens = t.chunks.as_deref()?;
    let sum: u64 = lens.iter().map(|&n| u64::from(n)).sum();
    (lens.len() as u64 == u64::from(t.term.range.end.saturating_sub(t.term.range.start))
        && sum == t.term.unpacked_length)
        .then_some(lens)
}

/// Where the old file's terms and chunks are.
struct OldIndex<'a> {
    /// (xorb, first chunk, end chunk, length) → offset in the old file.
    terms: HashMap<(&'a str, u32, u32, u64), u64>,
    /// (xorb, chunk) → (offset in the old file, raw length).
    chunks: HashMap<(&'a str, u32), (u64, u32)>,
}

impl<'a> OldIndex<'a> {
    fn new(old: &'a [LaidTerm]) -> OldIndex<'a> {
        let mut idx = OldIndex {
            terms: HashMap::new(),
            chunks: HashMap::new(),
        };
        let mut at = 0u64;
        for t in old {
            let (x, r) = (t.term.hash.as_str(), t.term.range);
            idx.terms
                .entry((x, r.start, r.end, t.term.unpacked_length))
                .or_insert(at);
            if let Some(lens) = checked_lens(t) {
                let mut pos = at;
                for (i, &n) in (r.start..).zip(lens) {
                    idx.chunks.entry((x, i)).or_insert((pos, n));
                    pos += u64::from(n);
                }
            }
            at += t.term.unpacked_length;
        }
        idx
    }

    /// Where the bytes of `t` are in the old file, as runs.
    fn find(&self, t: &Term) -> Option<Vec<(u64, u64)>> {
        let (x, r) = (t.hash.as_str(), t.range);
        if let Some(&from) = self.terms.get(&(x, r.start, r.end, t.unpacked_length)) {
            return Some(vec![(from, t.unpacked_length)]);
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in r.start..r.end {
            let &(from, n) = self.chunks.get(&(x, i))?;
            push_run(&mut runs, from, u64::from(n));
        }
        let sum: u64 = runs.iter().map(|r| r.1).sum();
        (sum == t.unpacked_length).then_some(runs)
    }
}

fn push_run(runs: &mut Vec<(u64, u64)>, from: u64, len: u64) {
    match runs.last_mut() {
        Some(last) if last.0 + last.1 == from => last.1 += len,
        _ => runs.push((from, len)),
    }
}

/// The copies that build as much of the new file (terms `new`, from byte
/// 0) as the old one (`old`) holds, in file order, neighbours merged.
pub fn copies(old: &[LaidTerm], new: &[Term]) -> Vec<Copy> {
    let idx = OldIndex::new(old);
    let mut out: Vec<Copy> = Vec::new();
    let mut at = 0u64;
    for t in new {
        if let Some(runs) = idx.find(t) {
            let mut to = at;
            for (from, len) in runs {
                match out.last_mut() {
                    Some(c) if c.from + c.len == from && c.to + c.len == to => c.len += len,
                    _ => out.push(Copy { from, to, len }),
                }
                to += len;
            }
        }
        at += t.unpacked_length;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xet::recon::ChunkRange;

    fn term(x: &str, start: u32, end: u32, len: u64) -> Term {
        Term {
            hash: x.into(),
            unpacked_length: len,
            range: ChunkRange { start, end },
        }
    }

    fn laid(t: Term, chunks: Option<Vec<u32>>) -> LaidTerm {
        LaidTerm { term: t, chunks }
    }

    #[test]
    fn a_term_in_both_versions_is_copied_from_where_it_was() {
        let old = vec![
            laid(term("a", 0, 2, 30), None),
            laid(term("b", 0, 3, 50), None),
        ];
        // b moved to the front, a new term in between, a unchanged.
        let new = vec![term("b", 0, 3, 50), term("c", 0, 1, 7), term("a", 0, 2, 30)];
        assert_eq!(
            copies(&old, &new),
            vec![
                Copy {
                    from: 30,
                    to: 0,
                    len: 50
                },
                Copy {
                    from: 0,
                    to: 57,
                    len: 30
                },
            ]
        );
        // Another length for the same chunks is not the same term.
        assert!(copies(&old, &[term("a", 0, 2, 31)]).is_empty());
    }

    #[test]
    fn an_edit_in_the_middle_is_found_chunk_by_chunk() {
        // Old: one term of five chunks of 10 bytes. New: chunk 2 replaced.
        let old = vec![laid(term("x", 0, 5, 50), Some(vec![10; 5]))];
        let new = vec![
            term("x", 0, 2, 20),
            term("y", 0, 1, 10),
            term("x", 3, 5, 20),
        ];
        assert_eq!(
            copies(&old, &new),
            vec![
                Copy {
                    from: 0,
                    to: 0,
                    len: 20
                },
                Copy {
                    from: 30,
                    to: 30,
                    len: 20
                },
            ]
        );
        // Without the chunk lengths only whole terms are found.
        let bare = vec![laid(term("x", 0, 5, 50), None)];
        assert!(copies(&bare, &new).is_empty());
        // Lengths that do not add up to the term are not believed.
        let wrong = vec![laid(term("x", 0, 5, 50), Some(vec![10, 10, 10, 10, 11]))];
        assert!(copies(&wrong, &new).is_empty());
    }

    #[test]
    fn chunk_lengths_learnt_make_a_layout() {
        let mut lens = ChunkLens::default();
        lens.learn(&[laid(term("x", 0, 2, 20), Some(vec![12, 8]))]);
        lens.insert("y", 4, 5);
        let l = lens.layout(&[term("x", 1, 2, 8), term("y", 4, 5, 5), term("y", 4, 6, 9)]);
        assert_eq!(l[0].chunks, Some(vec![8]));
        assert_eq!(l[1].chunks, Some(vec![5]));
        assert_eq!(l[2].chunks, None);
        let json = serde_json::to_string(&l[0]).unwrap();
        assert_eq!(
            json,
            r#"{"hash":"x","unpacked_length":8,"range":{"start":1,"end":2},"chunks":[8]}"#
        );
        let back: LaidTerm = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l[0]);
    }
}
