//! Xet: the Hub's content-addressed storage, read natively.
//!
//! Why hfd speaks it: every file on the Hub is stored in Xet now, and the
//! plain path (the resolve URL's redirect to the "bridge") depends on a
//! service that re-assembles files for clients that cannot, is refused for
//! files over 50 GB, and gets no deduplication. The official client
//! (hf_xet) cannot resume, ignores the mirror the user named for its
//! storage traffic, and is the one users disable when downloads stall.
//! This module is the protocol, written from its public description; the
//! engine's Xet stage ([`crate::engine`]) runs it over hfd's own
//! connections, proxies, retries and crash-safe storage.
//!
//! The protocol in short (docs/xet.md has more):
//!
//! 1. the resolve answer, *not followed*, carries `X-Xet-Hash` (the file
//!    id) and a `Link: <…>; rel="xet-auth"` to the token endpoint;
//! 2. the token endpoint, asked with the user's Hub token, grants a short
//!    lived CAS token and the CAS URL ([`auth`]);
//! 3. the CAS, asked with that token, answers the file's reconstruction
//!    ([`recon`]): terms (xorb, chunk range) and presigned URLs with the
//!    exact byte range of a xorb to ask for;
//! 4. those ranges are chunks with 8-byte headers, stored plain, LZ4 or
//!    byte-grouped + LZ4 ([`chunk`]), decoded and written where their
//!    terms go.
//!
//! [`hash`] has the keyed-blake3 hashes that name chunks, xorbs and files.
//! [`cas`] asks the CAS for reconstructions with the one retry driver.
//! [`reuse`] finds what a new version shares with an older one on disk.

pub mod auth;
pub mod cas;
pub mod chunk;
pub mod hash;
pub mod recon;
pub mod reuse;

pub use hash::XetHash;

use std::sync::Arc;

/// A file to fetch natively: its Xet id and the token that opens its CAS.
#[derive(Clone)]
pub struct XetSource {
    pub file_id: XetHash,
    pub auth: Arc<auth::CasAuth>,
    /// The CAS tokens of other endpoints that serve the same file: its
    /// pieces are shared among them.
    pub mirrors: Vec<Arc<auth::CasAuth>>,
    /// An older version of the file on disk, whose shared terms are copied
    /// instead of fetched.
    pub previous: Option<Arc<reuse::Previous>>,
}

impl std::fmt::Debug for XetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XetSource({})", self.file_id)
    }
}
