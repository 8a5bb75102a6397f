//! A mock Xet CAS: the storage behind [`super::hub::MockHub`]'s Xet files.
//!
//! Built from the protocol's public description (hub-docs `docs/xet/`), and
//! checked against the official client (tests/it/xet.rs runs pip's
//! huggingface_hub + hf_xet against it): if they disagree, this is wrong.
//!
//! * Files are cut into chunks (8–48 KiB, at offsets that depend only on
//!   the file's length, so an edit in place keeps the other chunks), packed
//!   into xorbs of about [`XetStore::xorb_limit`] raw bytes; a chunk already
//!   stored (same hash) is referenced, not stored again, so two versions of
//!   a file share xorbs as on the Hub.
//! * Chunks are stored with 8-byte headers and, by index, no compression,
//!   LZ4 frames, or byte grouping by 4 then LZ4; hashes are keyed blake3
//!   (chunk, xorb Merkle root, file id), written here independently of hfd.
//! * The CAS (`/v1/reconstructions/{file_id}`, with `Range`) checks its
//!   Bearer token (issued by the hub's `xet-read-token` route, expiring
//!   after [`XetKnobs::token_ttl`]) and answers terms and `fetch_info` with
//!   presigned URLs on the transfer server; `/v2/` answers 404, as older CAS
//!   deployments do (clients fall back to v1).
//! * The transfer server serves `/xorbs/default/{hash}` only for the exact
//!   `Range` the URL was signed for, before it expires.
//! * Fault knobs: statuses for the next reconstructions (401, 429 with
//!   `Retry-After`, 503), corrupted xorb answers (a bad chunk header, bad
//!   LZ4), the token route off (404/501, a mirror without Xet).

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use super::semantics::{unix_millis, url_signature};
use super::{Reply, RequestInfo, ServerOptions, TestServer};
use crate::sync::lock;

const DATA_KEY: [u8; 32] = [
    102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16,
    155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41,
];
const NODE_KEY: [u8; 32] = [
    1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111, 55,
    199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63,
];

/// The text form of a hash: each 8 bytes as a little-endian u64 in hex.
pub fn hash_hex(h: &[u8; 32]) -> String {
    h.chunks(8)
        .map(|w| format!("{:016x}", u64::from_le_bytes(w.try_into().unwrap())))
        .collect()
}

fn merkle(items: &[([u8; 32], u64)]) -> [u8; 32] {
    if items.is_empty() {
        return [0; 32];
    }
    let mut level = items.to_vec();
    while level.len() > 1 {
        let mut next = Vec::new();
        let mut i = 0;
        while i < level.len() {
            let rest = &level[i..];
            let max = rest.len().min(9);
            let cut = |h: &[u8; 32]| u64::from_le_bytes(h[24..].try_into().unwrap()) % 4 == 0;
            let n = if rest.len() <= 2 {
                rest.len()
            } else {
                (2..max).find(|&k| cut(&rest[k].0)).map_or(max, |k| k + 1)
            };
            let mut text = String::new();
            let mut len = 0;
            for (h, l) in &rest[..n] {
                text += &format!("{} : {}\n", hash_hex(h), l);
                len += l;
            }
            next.push((
                *blake3::keyed_hash(&NODE_KEY, text.as_bytes()).as_bytes(),
                len,
            ));
            i += n;
        }
        level = next;
    }
    level[0].0
}

/// How a corrupted xorb answer is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The first chunk header's version byte.
    Header,
    /// The LZ4 frame magic of the first LZ4 chunk in the answer.
    Lz4,
}

/// The fault knobs and limits.
#[derive(Debug)]
pub struct XetKnobs {
    pub token_ttl: Duration,
    /// `Some(status)`: the token route answers that (404, 501).
    pub token_route_off: Option<u16>,
    /// Statuses (and `Retry-After` seconds) for the next reconstructions.
    pub recon_faults: VecDeque<(u16, Option<u64>)>,
    /// The next xorb answers are corrupted so.
    pub corrupt: VecDeque<Corruption>,
    pub url_ttl: Duration,
    /// Xorb answers are sent at this many bytes per second.
    pub pace: Option<u64>,
}

struct Xorb {
    hash: String,
    data: Bytes,
    /// Byte offset of each chunk's header, and the end.
    offsets: Vec<u64>,
}

/// One stored file: its terms (xorb index, chunks) and their lengths.
struct File {
    size: u64,
    terms: Vec<(usize, Range<u32>, u64)>,
}

/// The chunks, xorbs and files of the CAS.
pub struct XetStore {
    xorbs: Vec<Xorb>,
    by_hash: HashMap<String, usize>,
    /// Chunk hash → (xorb, index, raw length).
    chunks: HashMap<[u8; 32], (usize, u32, u64)>,
    files: HashMap<String, File>,
    pub xorb_limit: usize,
    chunks_made: u64,
}

/// Chunk lengths for a file of `len` bytes: depend on the length only.
fn cuts(len: usize) -> Vec<Range<usize>> {
    let mut rng = fastrand::Rng::with_seed(0x9e37 ^ len as u64);
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let n = rng.usize(8 << 10..48 << 10).min(len - at);
        out.push(at..at + n);
        at += n;
    }
    out
}

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A chunk as stored: header, then none / LZ4 / BG4+LZ4 by `scheme`.
fn serialize_chunk(data: &[u8], scheme: u8) -> Vec<u8> {
    let body = match scheme {
        1 => lz4(data),
        2 => {
            let mut g = Vec::with_capacity(data.len());
            for k in 0..4 {
                g.extend(data.iter().skip(k).step_by(4));
            }
            lz4(&g)
        }
        _ => data.to_vec(),
    };
    let mut out = Vec::with_capacity(8 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    out.push(scheme);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes()[..3]);
    out.extend(body);
    out
}

impl Default for XetStore {
    fn default() -> Self {
        XetStore {
            xorbs: Vec::new(),
            by_hash: HashMap::new(),
            chunks: HashMap::new(),
            files: HashMap::new(),
            xorb_limit: 1 << 20,
            chunks_made: 0,
        }
    }
}

impl XetStore {
    /// Stores `data`; returns its file id (text form).
    pub fn add(&mut self, data: &[u8]) -> String {
        // Every chunk of the file: its hash and where it is (or will be).
        let mut refs: Vec<([u8; 32], (usize, u32, u64))> = Vec::new();
        let mut fresh: HashMap<[u8; 32], (usize, u32, u64)> = HashMap::new();
        let mut new_xorbs: Vec<Vec<&[u8]>> = vec![Vec::new()];
        let mut pending_len = 0;
        for r in cuts(data.len()) {
            let c = &data[r];
            let h = *blake3::keyed_hash(&DATA_KEY, c).as_bytes();
            if let Some(&known) = self.chunks.get(&h).or(fresh.get(&h)) {
                refs.push((h, known));
                continue;
            }
            let last = new_xorbs.last().expect("one at least");
            if pending_len + c.len() > self.xorb_limit && !last.is_empty() {
                new_xorbs.push(Vec::new());
                pending_len = 0;
            }
            let x = self.xorbs.len() + new_xorbs.len() - 1;
            let cur = new_xorbs.last_mut().expect("one at least");
            let at = (x, cur.len() as u32, c.len() as u64);
            cur.push(c);
            pending_len += c.len();
            fresh.insert(h, at);
            refs.push((h, at));
        }
        for chunks in new_xorbs.into_iter().filter(|x| !x.is_empty()) {
            self.store_xorb(&chunks);
        }
        self.chunks.extend(fresh);
        let mut terms: Vec<(usize, Range<u32>, u64)> = Vec::new();
        for &(_, (x, i, n)) in &refs {
            match terms.last_mut() {
                Some((tx, tr, tl)) if *tx == x && tr.end == i => {
                    tr.end += 1;
                    *tl += n;
                }
                _ => terms.push((x, i..i + 1, n)),
            }
        }
        let all: Vec<([u8; 32], u64)> = refs.iter().map(|(h, r)| (*h, r.2)).collect();
        let id = if all.is_empty() {
            hash_hex(&[0; 32])
        } else {
            hash_hex(blake3::keyed_hash(&[0; 32], &merkle(&all)).as_bytes())
        };
        self.files.insert(
            id.clone(),
            File {
                size: data.len() as u64,
                terms,
            },
        );
        id
    }

    fn store_xorb(&mut self, chunks: &[&[u8]]) {
        let mut data = Vec::new();
        let mut offsets = vec![0u64];
        for c in chunks {
            let scheme = (self.chunks_made % 3) as u8;
            self.chunks_made += 1;
            data.extend(serialize_chunk(c, scheme));
            offsets.push(data.len() as u64);
        }
        let items: Vec<([u8; 32], u64)> = chunks
            .iter()
            .map(|c| (*blake3::keyed_hash(&DATA_KEY, c).as_bytes(), c.len() as u64))
            .collect();
        let hash = hash_hex(&merkle(&items));
        self.by_hash.insert(hash.clone(), self.xorbs.len());
        self.xorbs.push(Xorb {
            hash,
            data: Bytes::from(data),
            offsets,
        });
    }

    /// Number of xorbs stored.
    pub fn xorb_count(&self) -> usize {
        self.xorbs.len()
    }

    /// The reconstruction of bytes `[start, end)` of file `id` (v1 shape),
    /// URLs signed by `sign(xorb hash, first byte, last byte)`.
    fn reconstruction(
        &self,
        id: &str,
        range: Range<u64>,
        sign: &dyn Fn(&str, u64, u64) -> String,
    ) -> Option<Value> {
        let f = self.files.get(id)?;
        let end = range.end.min(f.size);
        let mut terms = Vec::new();
        let mut wanted: HashMap<usize, Vec<Range<u32>>> = HashMap::new();
        let mut offset_into_first = None;
        let mut at = 0u64;
        for (x, chunks, len) in &f.terms {
            let (t_start, t_end) = (at, at + len);
            at = t_end;
            if t_end <= range.start || t_start >= end {
                continue;
            }
            // Trim to the chunks that overlap.
            let xorb = &self.xorbs[*x];
            let mut pos = t_start;
            let (mut first, mut last) = (None, chunks.start);
            for i in chunks.clone() {
                let n = self.raw_len(*x, i);
                if pos + n > range.start && pos < end {
                    if first.is_none() {
                        first = Some(i);
                        offset_into_first.get_or_insert(range.start.saturating_sub(pos));
                    }
                    last = i + 1;
                }
                pos += n;
            }
            let first = first.expect("the term overlaps");
            let len: u64 = (first..last).map(|i| self.raw_len(*x, i)).sum();
            terms.push(json!({"hash": xorb.hash, "unpacked_length": len,
                              "range": {"start": first, "end": last}}));
            wanted.entry(*x).or_default().push(first..last);
        }
        let mut fetch_info = serde_json::Map::new();
        for (x, mut ranges) in wanted {
            ranges.sort_by_key(|r| r.start);
            let mut merged: Vec<Range<u32>> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
                    _ => merged.push(r),
                }
            }
            let xorb = &self.xorbs[x];
            let list: Vec<Value> = merged
                .iter()
                .map(|r| {
                    let (s, e) = (
                        xorb.offsets[r.start as usize],
                        xorb.offsets[r.end as usize] - 1,
                    );
                    json!({"range": {"start": r.start, "end": r.end},
                           "url": sign(&xorb.hash, s, e),
                           "url_range": {"start": s, "end": e}})
                })
                .collect();
            fetch_info.insert(xorb.hash.clone(), Value::Array(list));
        }
        Some(
            json!({"offset_into_first_range": offset_into_first.unwrap_or(0),
                    "terms": terms, "fetch_info": fetch_info}),
        )
    }

    /// The raw length of chunk `i` of xorb `x`.
    fn raw_len(&self, x: usize, i: u32) -> u64 {
        let at = self.xorbs[x].offsets[i as usize] as usize;
        let h = &self.xorbs[x].data[at..at + 8];
        u64::from(h[5]) | u64::from(h[6]) << 8 | u64::from(h[7]) << 16
    }

    fn size_of(&self, id: &str) -> Option<u64> {
        self.files.get(id).map(|f| f.size)
    }
}

/// The CAS and transfer servers and their state.
pub struct MockCas {
    cas: TestServer,
    transfer: TestServer,
    state: Arc<Mutex<CasState>>,
}

struct CasState {
    store: XetStore,
    knobs: XetKnobs,
    /// Issued tokens and their expiry (unix seconds).
    tokens: HashMap<String, u64>,
    issued: u64,
}

fn now_secs() -> u64 {
    unix_millis() / 1000
}

impl MockCas {
    /// Both servers on loopback, over plain HTTP.
    pub fn start() -> MockCas {
        MockCas::start_with(None)
    }

    /// Both servers on loopback, over HTTPS with `tls` when given (the
    /// `casUrl` and presigned URLs then say `https`).
    pub fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> MockCas {
        let server = || {
            TestServer::start_with(ServerOptions {
                tls: tls.clone(),
                ..ServerOptions::default()
            })
        };
        let (cas, transfer) = (server(), server());
        let state = Arc::new(Mutex::new(CasState {
            store: XetStore::default(),
            knobs: XetKnobs {
                token_ttl: Duration::from_secs(3600),
                token_route_off: None,
                recon_faults: VecDeque::new(),
                corrupt: VecDeque::new(),
                url_ttl: Duration::from_secs(3600),
                pace: None,
            },
            tokens: HashMap::new(),
            issued: 0,
        }));
        let (st, base) = (state.clone(), transfer.base_url());
        cas.add_handler_fn("/", move |req| cas_handle(&st, &base, req));
        let st = state.clone();
        transfer.add_handler_fn("/", move |req| transfer_handle(&st, req));
        MockCas {
            cas,
            transfer,
            state,
        }
    }

    /// The CAS server (reconstructions).
    pub fn cas(&self) -> &TestServer {
        &self.cas
    }

    /// The transfer server (xorb bytes behind presigned URLs).
    pub fn transfer(&self) -> &TestServer {
        &self.transfer
    }

    /// Stores a file; returns its file id.
    pub fn add(&self, data: &[u8]) -> String {
        lock(&self.state).store.add(data)
    }

    /// Changes the knobs.
    pub fn knobs(&self, f: impl FnOnce(&mut XetKnobs)) {
        f(&mut lock(&self.state).knobs)
    }

    /// Sets the raw bytes per new xorb.
    pub fn set_xorb_limit(&self, n: usize) {
        lock(&self.state).store.xorb_limit = n;
    }

    pub fn xorb_count(&self) -> usize {
        lock(&self.state).store.xorb_count()
    }

    /// The token route's answer: a fresh token, or the status it is
    /// switched off with.
    pub fn issue_token(&self) -> Reply {
        let mut st = lock(&self.state);
        if let Some(status) = st.knobs.token_route_off {
            return Reply::text(status, "Xet is not available here");
        }
        st.issued += 1;
        let token = format!("xet_mock_{}_{}", st.issued, fastrand::u64(..));
        let exp = now_secs() + st.knobs.token_ttl.as_secs();
        st.tokens.insert(token.clone(), exp);
        let url = self.cas.base_url();
        Reply::json(
            200,
            &json!({"accessToken": token, "exp": exp, "casUrl": url}),
        )
        .header("x-xet-cas-url", url)
        .header("x-xet-access-token", token)
        .header("x-xet-token-expiration", exp.to_string())
    }
}

fn parse_range(h: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = h.strip_prefix("bytes=")?.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse().ok()?)
    };
    Some((a, b))
}

fn cas_handle(state: &Mutex<CasState>, transfer: &str, req: &RequestInfo) -> Reply {
    let mut st = lock(state);
    if req.path.starts_with("/v2/") {
        return Reply::text(404, "Not Found");
    }
    let Some(id) = req.path.strip_prefix("/v1/reconstructions/") else {
        return Reply::text(404, "Not Found");
    };
    let ok = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t))
        .is_some_and(|&exp| exp > now_secs());
    if !ok {
        return Reply::text(401, "Unauthorized");
    }
    if let Some((status, after)) = st.knobs.recon_faults.pop_front() {
        let mut r = Reply::text(status, format!("mock fault {status}"));
        if let Some(s) = after {
            r = r.header("retry-after", s.to_string());
        }
        return r;
    }
    let Some(size) = st.store.size_of(id) else {
        return Reply::text(404, "Not Found");
    };
    let range = match req.header("range").map(parse_range) {
        None => 0..size,
        Some(None) => return Reply::text(400, "bad range"),
        Some(Some((a, b))) => a..b.map_or(size, |b| (b + 1).min(size)),
    };
    if range.start >= size && size > 0 {
        return Reply::text(416, "Range Not Satisfiable");
    }
    let ttl = st.knobs.url_ttl;
    let sign = |hash: &str, s: u64, e: u64| {
        let expires = unix_millis() + ttl.as_millis() as u64;
        let path = format!("/xorbs/default/{hash}");
        let sig = url_signature(&format!("{path} {s}-{e}"), expires);
        format!(
            "{transfer}{path}?X-Xet-Signed-Range=bytes%3D{s}-{e}&Expires={expires}&Signature={sig}"
        )
    };
    match st.store.reconstruction(id, range, &sign) {
        Some(v) => Reply::json(200, &v),
        None => Reply::text(404, "Not Found"),
    }
}

fn transfer_handle(state: &Mutex<CasState>, req: &RequestInfo) -> Reply {
    let mut st = lock(state);
    let Some(hash) = req.path.strip_prefix("/xorbs/default/") else {
        return Reply::text(404, "Not Found");
    };
    let signed = req
        .query_param("X-Xet-Signed-Range")
        .and_then(|r| parse_range(&r));
    let expires: Option<u64> = req.query_param("Expires").and_then(|e| e.parse().ok());
    let (Some((s, Some(e))), Some(expires)) = (signed, expires) else {
        return Reply::text(403, "AccessDenied: not signed");
    };
    let sig = url_signature(&format!("{} {s}-{e}", req.path), expires);
    if req.query_param("Signature").as_deref() != Some(sig.as_str()) || unix_millis() > expires {
        return Reply::text(403, "AccessDenied: bad or expired signature");
    }
    if req.header("authorization").is_some() {
        return Reply::text(400, "AccessDenied: a presigned URL takes no Authorization");
    }
    if req.header("range").map(parse_range) != Some(Some((s, Some(e)))) {
        return Reply::text(403, "AccessDenied: the Range is not the one signed");
    }
    let Some(&x) = st.store.by_hash.get(hash) else {
        return Reply::text(404, "Not Found");
    };
    let data = st.store.xorbs[x].data.clone();
    if e >= data.len() as u64 || s > e {
        return Reply::text(416, "Range Not Satisfiable");
    }
    let mut body = data.slice(s as usize..e as usize + 1).to_vec();
    if let Some(c) = st.knobs.corrupt.pop_front() {
        corrupt(&mut body, c);
    }
    let r = Reply::new(206)
        .header("content-range", format!("bytes {s}-{e}/{}", data.len()))
        .header("content-type", "application/octet-stream")
        .body(body);
    match st.knobs.pace {
        Some(rate) => r.paced(rate),
        None => r,
    }
}

/// Breaks an answer of whole chunks as `c` says.
fn corrupt(body: &mut [u8], c: Corruption) {
    match c {
        Corruption::Header => body[0] = 0x7f,
        Corruption::Lz4 => {
            let mut at = 0;
            while at + 8 <= body.len() {
                let stored =
                    u32::from_le_bytes([body[at + 1], body[at + 2], body[at + 3], 0]) as usize;
                if body[at + 4] != 0 {
                    body[at + 8] ^= 0xff;
                    return;
                }
                at += 8 + stored;
            }
            body[0] = 0x7f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_share_chunks_and_ranges_trim_terms() {
        let mut s = XetStore {
            xorb_limit: 100 << 10,
            ..XetStore::default()
        };
        let data: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let id = s.add(&data);
        let xorbs = s.xorb_count();
        assert!(xorbs >= 3);
        // The same bytes again store nothing new and get the same id.
        assert_eq!(s.add(&data), id);
        assert_eq!(s.xorb_count(), xorbs);
        // One byte changed: one new xorb holding the changed chunk.
        let mut d2 = data.clone();
        d2[200_000] ^= 1;
        s.add(&d2);
        assert_eq!(s.xorb_count(), xorbs + 1);
        let sign = |h: &str, a: u64, b: u64| format!("u/{h}/{a}-{b}");
        let v = s.reconstruction(&id, 100_000..100_010, &sign).unwrap();
        assert_eq!(v["terms"].as_array().unwrap().len(), 1);
        let r = &v["terms"][0]["range"];
        assert_eq!(r["end"].as_u64().unwrap(), r["start"].as_u64().unwrap() + 1);
        assert!(v["offset_into_first_range"].as_u64().unwrap() < 48 << 10);
        let full = s.reconstruction(&id, 0..u64::MAX, &sign).unwrap();
        let total: u64 = full["terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["unpacked_length"].as_u64().unwrap())
            .sum();
        assert_eq!(total, data.len() as u64);
    }
}
