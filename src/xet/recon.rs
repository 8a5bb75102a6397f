//! The reconstruction: what the CAS answers for a file (or a byte range of
//! it), and the work it turns into.
//!
//! The answer lists *terms* in file order (a xorb, a chunk range in it, and
//! the length those chunks decompress to) and, per xorb, *fetches*: a
//! presigned URL and the exact byte range (`url_range`, inclusive) to ask
//! it for, holding a chunk range that covers one or more terms. For a
//! ranged query the first term starts `offset_into_first_range` bytes
//! before the range asked for, and the last may run past its end.
//!
//! [`Plan::build`] checks the answer and turns it into [`Unit`]s, one per
//! fetch, each knowing where in the file every chunk it brings goes (a
//! chunk two terms share is fetched once and written twice). [`UnitDecoder`]
//! then turns a unit's bytes, as they arrive, into positioned writes,
//! clipped to the range asked for.
//!
//! Version 1 of the API gives one byte range per URL (`fetch_info`);
//! version 2 may sign several ranges of a xorb into one URL (`xorbs`). A
//! range alone is inside what the URL is signed for, so a version 2 answer
//! becomes one unit per range too, and no multipart answer is needed.

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::chunk::{ChunkStream, DecodeError, HEADER_LEN, MAX_CHUNK, MAX_STORED};

/// Chunks `[start, end)` of a xorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRange {
    pub start: u32,
    pub end: u32,
}

impl ChunkRange {
    fn len(&self) -> u64 {
        u64::from(self.end.saturating_sub(self.start))
    }

    fn holds(&self, other: &ChunkRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// Bytes `[start, end]` of a xorb, end included (as in `Range: bytes=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRange {
    pub start: u64,
    pub end: u64,
}

/// One term of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// The xorb's hash, in text form.
    pub hash: String,
    pub unpacked_length: u64,
    pub range: ChunkRange,
}

/// Version 1: one presigned URL for one byte range of a xorb.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchInfo {
    pub range: ChunkRange,
    pub url: String,
    pub url_range: HttpRange,
}

/// The answer of `GET /v1/reconstructions/{file_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconstructionV1 {
    pub offset_into_first_range: u64,
    pub terms: Vec<Term>,
    pub fetch_info: HashMap<String, Vec<FetchInfo>>,
}

/// Version 2: one range of a multi-range URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    pub chunks: ChunkRange,
    pub bytes: HttpRange,
}

/// Version 2: a URL signed for several ranges of a xorb.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiFetch {
    pub url: String,
    pub ranges: Vec<RangeDescriptor>,
}

/// The answer of `GET /v2/reconstructions/{file_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconstructionV2 {
    pub offset_into_first_range: u64,
    pub terms: Vec<Term>,
    pub xorbs: HashMap<String, Vec<MultiFetch>>,
}

impl From<ReconstructionV2> for ReconstructionV1 {
    fn from(v2: ReconstructionV2) -> ReconstructionV1 {
        let fetch_info = v2
            .xorbs
            .into_iter()
            .map(|(hash, fetches)| {
                let list = fetches
                    .into_iter()
                    .flat_map(|f| {
                        let url = f.url;
                        f.ranges.into_iter().map(move |r| FetchInfo {
                            range: r.chunks,
                            url: url.clone(),
                            url_range: r.bytes,
                        })
                    })
                    .collect();
                (hash, list)
            })
            .collect();
        ReconstructionV1 {
            offset_into_first_range: v2.offset_into_first_range,
            terms: v2.terms,
            fetch_info,
        }
    }
}

/// Where a term's chunks go: the chunks, and the file offset of the first
/// byte of the first one (before the range asked for, for a first term
/// that starts earlier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub chunks: ChunkRange,
    pub at: i128,
    pub len: u64,
}

/// One request: a xorb's byte range and where its chunks go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub xorb: String,
    pub url: String,
    /// Bytes to ask for, end included.
    pub bytes: HttpRange,
    pub chunks: ChunkRange,
    pub targets: Vec<Target>,
}

impl Unit {
    /// Bytes the request brings.
    pub fn fetch_len(&self) -> u64 {
        self.bytes.end + 1 - self.bytes.start
    }

    /// The file bytes this unit writes, within `want`.
    pub fn writes(&self, want: &Range<u64>) -> Vec<Range<u64>> {
        self.targets
            .iter()
            .filter_map(|t| clip(t.at, t.len, want))
            .collect()
    }
}

fn clip(at: i128, len: u64, want: &Range<u64>) -> Option<Range<u64>> {
    let s = at.max(want.start as i128);
    let e = (at + len as i128).min(want.end as i128);
    (s < e).then_some(s as u64..e as u64)
}

/// The work for a byte range of a file.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The file bytes this plan writes.
    pub want: Range<u64>,
    pub units: Vec<Unit>,
}

/// Why an answer cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unusable reconstruction: {0}")]
pub struct PlanError(pub String);

impl Plan {
    /// Checks `r`, the answer for file bytes `want`, and plans its units.
    pub fn build(r: ReconstructionV1, want: Range<u64>) -> Result<Plan, PlanError> {
        let bad = |s: String| Err(PlanError(s));
        let mut fetches: HashMap<String, Vec<(FetchInfo, Vec<Target>)>> = HashMap::new();
        for (hash, list) in r.fetch_info {
            for f in &list {
                check_fetch(&hash, f)?;
            }
            fetches.insert(hash, list.into_iter().map(|f| (f, Vec::new())).collect());
        }
        let mut at = want.start as i128 - r.offset_into_first_range as i128;
        for t in &r.terms {
            check_term(t)?;
            let Some(list) = fetches.get_mut(&t.hash) else {
                return bad(format!("no fetch for xorb {}", t.hash));
            };
            let Some((_, targets)) = list.iter_mut().find(|(f, _)| f.range.holds(&t.range)) else {
                return bad(format!(
                    "no fetch of xorb {} holds chunks {}..{}",
                    t.hash, t.range.start, t.range.end
                ));
            };
            targets.push(Target {
                chunks: t.range,
                at,
                len: t.unpacked_length,
            });
            at += t.unpacked_length as i128;
        }
        if at < want.end as i128 {
            return bad(format!(
                "its terms end at byte {at}, before the {} asked for",
                want.end
            ));
        }
        let mut units: Vec<Unit> = fetches
            .into_iter()
            .flat_map(|(xorb, list)| {
                list.into_iter()
                    .filter(|(_, targets)| !targets.is_empty())
                    .map(move |(f, targets)| Unit {
                        xorb: xorb.clone(),
                        url: f.url,
                        bytes: f.url_range,
                        chunks: f.range,
                        targets,
                    })
            })
            .filter(|u| !u.writes(&want).is_empty())
            .collect();
        units.sort_by_key(|u| u.targets.iter().map(|t| t.at).min());
        Ok(Plan { want, units })
    }
}

fn check_term(t: &Term) -> Result<(), PlanError> {
    let n = t.range.len();
    if n == 0 || t.unpacked_length > n * MAX_CHUNK as u64 {
        return Err(PlanError(format!(
            "a term of {n} chunks claims {} bytes",
            t.unpacked_length
        )));
    }
    Ok(())
}

fn check_fetch(hash: &str, f: &FetchInfo) -> Result<(), PlanError> {
    let n = f.range.len();
    let most = n * (HEADER_LEN + MAX_STORED) as u64;
    let ok = n > 0 && f.url_range.start <= f.url_range.end && {
        let len = f.url_range.end - f.url_range.start + 1;
        len >= n * HEADER_LEN as u64 && len <= most
    };
    if !ok {
        return Err(PlanError(format!(
            "xorb {hash}: bytes {}-{} cannot hold chunks {}..{}",
            f.url_range.start, f.url_range.end, f.range.start, f.range.end
        )));
    }
    Ok(())
}

/// Why a unit's bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(
        "a term of chunks {start}..{end} decompressed to {got} bytes, not the {want} announced"
    )]
    TermLength {
        start: u32,
        end: u32,
        want: u64,
        got: u64,
    },
}

/// Turns a unit's bytes into file writes as they arrive.
pub struct UnitDecoder {
    stream: ChunkStream,
    targets: Vec<Target>,
    /// Bytes each target has received.
    filled: Vec<u64>,
    want: Range<u64>,
    chunks: Vec<super::chunk::Chunk>,
    /// (index, raw length) of every chunk decoded.
    seen: Vec<(u32, u32)>,
}

impl UnitDecoder {
    pub fn new(unit: &Unit, want: Range<u64>) -> UnitDecoder {
        UnitDecoder {
            stream: ChunkStream::new(unit.chunks.start..unit.chunks.end),
            filled: vec![0; unit.targets.len()],
            targets: unit.targets.clone(),
            want,
            chunks: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Takes `data` and appends the writes (file offset, bytes) its
    /// complete chunks make to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<(u64, Bytes)>) -> Result<(), UnitError> {
        self.stream.push(data, &mut self.chunks)?;
        for c in self.chunks.drain(..) {
            self.seen.push((c.index, c.data.len() as u32));
            for (t, filled) in self.targets.iter().zip(self.filled.iter_mut()) {
                if c.index < t.chunks.start || c.index >= t.chunks.end {
                    continue;
                }
                let len = c.data.len() as u64;
                if *filled + len > t.len {
                    return Err(UnitError::TermLength {
                        start: t.chunks.start,
                        end: t.chunks.end,
                        want: t.len,
                        got: *filled + len,
                    });
                }
                let at = t.at + *filled as i128;
                *filled += len;
                if let Some(r) = clip(at, len, &self.want) {
                    let from = (r.start as i128 - at) as usize;
                    let to = from + (r.end - r.start) as usize;
                    out.push((r.start, c.data.slice(from..to)));
                }
            }
        }
        Ok(())
    }

    /// The (index, raw length) of each chunk decoded so far: where the
    /// chunks are, for a later update of the file ([`super::reuse`]).
    pub fn seen(&self) -> &[(u32, u32)] {
        &self.seen
    }

    /// All bytes are in: every chunk came and every term is whole.
    pub fn finish(&self) -> Result<(), UnitError> {
        self.stream.finish()?;
        for (t, &filled) in self.targets.iter().zip(&self.filled) {
            if filled != t.len {
                return Err(UnitError::TermLength {
                    start: t.chunks.start,
                    end: t.chunks.end,
                    want: t.len,
                    got: filled,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> &'static str {
        // The documentation's shape: xorb "a" serves terms 1 and 3 from
        // one fetch (chunk 3 twice), xorb "b" term 2.
        r#"{
          "offset_into_first_range": 0,
          "terms": [
            {"hash": "a", "unpacked_length": 30, "range": {"start": 1, "end": 4}},
            {"hash": "b", "unpacked_length": 20, "range": {"start": 0, "end": 2}},
            {"hash": "a", "unpacked_length": 20, "range": {"start": 3, "end": 5}}
          ],
          "fetch_info": {
            "a": [{"range": {"start": 1, "end": 5}, "url": "http://x/a", "url_range": {"start": 100, "end": 179}}],
            "b": [{"range": {"start": 0, "end": 2}, "url": "http://x/b", "url_range": {"start": 0, "end": 35}}]
          }
        }"#
    }

    /// Chunk `i` of xorb `a` is ten bytes of `i`, stored uncompressed (the
    /// header written by hand).
    fn raw_chunk(byte: u8, n: usize) -> Vec<u8> {
        let mut v = vec![0, n as u8, 0, 0, 0, n as u8, 0, 0];
        v.extend(std::iter::repeat_n(byte, n));
        v
    }

    fn run(unit: &Unit, want: Range<u64>, bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, UnitError> {
        let mut d = UnitDecoder::new(unit, want);
        let mut out = Vec::new();
        for p in bytes.chunks(3) {
            d.push(p, &mut out)?;
        }
        d.finish()?;
        Ok(out.into_iter().map(|(o, b)| (o, b.to_vec())).collect())
    }

    #[test]
    fn a_shared_chunk_is_written_twice_and_ranges_are_clipped() {
        let r: ReconstructionV1 = serde_json::from_str(json()).unwrap();
        let plan = Plan::build(r.clone(), 0..70).unwrap();
        assert_eq!(plan.units.len(), 2);
        let a = &plan.units[0];
        assert_eq!((a.xorb.as_str(), a.fetch_len()), ("a", 80));
        assert_eq!(a.writes(&plan.want), vec![0..30, 50..70]);
        let bytes: Vec<u8> = (1..5).flat_map(|i| raw_chunk(i, 10)).collect();
        let w = run(a, 0..70, &bytes).unwrap();
        let want: Vec<(u64, Vec<u8>)> = vec![
            (0, vec![1; 10]),
            (10, vec![2; 10]),
            (20, vec![3; 10]),
            (50, vec![3; 10]),
            (60, vec![4; 10]),
        ];
        assert_eq!(w, want);
        // A ranged answer: bytes 25..55 asked, the first term starts 25
        // before them.
        let mut r2 = r.clone();
        r2.offset_into_first_range = 25;
        let plan = Plan::build(r2, 25..55).unwrap();
        let a = plan.units.iter().find(|u| u.xorb == "a").unwrap();
        let w = run(a, 25..55, &bytes).unwrap();
        assert_eq!(w, vec![(25, vec![3; 5]), (50, vec![3; 5])]);
    }

    #[test]
    fn wrong_answers_are_refused() {
        let r: ReconstructionV1 = serde_json::from_str(json()).unwrap();
        // Terms end at 70: asking for more is an error.
        assert!(Plan::build(r.clone(), 0..71).is_err());
        let mut r2 = r.clone();
        r2.fetch_info.remove("b");
        assert!(Plan::build(r2, 0..70).is_err());
        let mut r3 = r.clone();
        r3.fetch_info.get_mut("a").unwrap()[0].range.end = 4;
        assert!(Plan::build(r3, 0..70).is_err());
        let mut r4 = r.clone();
        r4.terms[0].unpacked_length = 1 << 40;
        assert!(Plan::build(r4, 0..70).is_err());
        let mut r5 = r;
        r5.fetch_info.get_mut("b").unwrap()[0].url_range = HttpRange { start: 5, end: 4 };
        assert!(Plan::build(r5, 0..70).is_err());
    }

    #[test]
    fn a_term_of_the_wrong_length_is_an_error() {
        let r: ReconstructionV1 = serde_json::from_str(json()).unwrap();
        let plan = Plan::build(r, 0..70).unwrap();
        let a = &plan.units[0];
        let short: Vec<u8> = (1..5)
            .flat_map(|i| raw_chunk(i, if i == 2 { 9 } else { 10 }))
            .collect();
        assert!(matches!(
            run(a, 0..70, &short),
            Err(UnitError::TermLength { .. })
        ));
        let long: Vec<u8> = (1..5)
            .flat_map(|i| raw_chunk(i, if i == 2 { 11 } else { 10 }))
            .collect();
        assert!(matches!(
            run(a, 0..70, &long),
            Err(UnitError::TermLength { .. })
        ));
    }

    #[test]
    fn version_2_becomes_one_fetch_per_range() {
        let v2: ReconstructionV2 = serde_json::from_str(
            r#"{"offset_into_first_range": 0,
                "terms": [{"hash": "a", "unpacked_length": 10, "range": {"start": 0, "end": 1}},
                          {"hash": "a", "unpacked_length": 10, "range": {"start": 5, "end": 6}}],
                "xorbs": {"a": [{"url": "http://x/a?r", "ranges": [
                    {"chunks": {"start": 0, "end": 1}, "bytes": {"start": 0, "end": 17}},
                    {"chunks": {"start": 5, "end": 6}, "bytes": {"start": 90, "end": 107}}]}]}}"#,
        )
        .unwrap();
        let plan = Plan::build(v2.into(), 0..20).unwrap();
        let got: Vec<(u64, u64)> = plan
            .units
            .iter()
            .map(|u| (u.bytes.start, u.bytes.end))
            .collect();
        assert_eq!(got, vec![(0, 17), (90, 107)]);
        assert!(plan.units.iter().all(|u| u.url == "http://x/a?r"));
    }
}
