//! One unit of a Xet download: its presigned xorb range fetched, checked,
//! decoded chunk by chunk and written where its terms go.
//!
//! The request carries exactly the signed `Range` and no credentials at
//! all (the URL is the authorisation). The answer must be that range
//! (206, its `Content-Range`); its bytes are decoded as they arrive, so a
//! unit needs one chunk of memory, and a chunk is written only once it
//! decoded to the length its header and its term announce: a damaged range
//! is an error, never data. Bytes written by an attempt that then failed
//! are rewritten by the next attempt (writes are positional and the same).

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use url::Url;

use super::limit;
use super::xet::{Job, Work};
use crate::client::classify::{Failure, status_failure};
use crate::client::request::fetch as get;
use crate::client::{ByteRange, Credentials, FailureKind, Request, SafeUrl};
use crate::net::Conn;
use crate::net::http::{ContentRange, content_range};
use crate::sync::lock;
use crate::xet::recon::UnitDecoder;

/// How a unit's attempt ended.
pub enum Fetched {
    Done,
    Failed(UnitFailure),
}

/// A failed attempt.
pub struct UnitFailure {
    pub detail: String,
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub wait: Option<std::time::Duration>,
    /// The presigned URL was refused: plan the unit again.
    pub expired: bool,
    /// Bytes came before the failure: retry at once.
    pub delivered: bool,
}

impl UnitFailure {
    fn new(kind: FailureKind, detail: String) -> UnitFailure {
        UnitFailure {
            detail,
            kind,
            status: None,
            wait: None,
            expired: false,
            delivered: false,
        }
    }
}

/// Fetches and writes `job`; `conn` is kept for the next unit.
pub async fn fetch(work: &Work, job: &Job, conn: &mut Option<Conn>) -> Fetched {
    let unit = &job.unit;
    let url = match Url::parse(&unit.url) {
        Ok(u) => u,
        Err(e) => {
            return Fetched::Failed(UnitFailure {
                expired: true,
                ..UnitFailure::new(FailureKind::BadResponse, format!("a xorb URL: {e}"))
            });
        }
    };
    let named = SafeUrl::from(&url);
    let Ok(creds) = Credentials::new(&url, &HeaderMap::new()) else {
        return Fetched::Failed(UnitFailure::new(
            FailureKind::BadResponse,
            format!("{named}: not a usable URL"),
        ));
    };
    let req = Request {
        url: &url,
        credentials: &creds,
        range: Some(ByteRange {
            start: unit.bytes.start,
            end: Some(unit.bytes.end + 1),
        }),
        if_range: None,
        named: &named,
    };
    let f = match get(&work.ctx_net, req, conn).await {
        Ok(f) => f,
        Err(e) => return Fetched::Failed(from_failure(e)),
    };
    let status = f.response.status().as_u16();
    if status != 206 {
        let e = status_failure(f.response, &url, true, &named).await;
        return Fetched::Failed(from_failure(e));
    }
    let want = ContentRange::Bytes {
        first: unit.bytes.start,
        last: unit.bytes.end,
        total: None,
    };
    match content_range(f.response.headers()) {
        Some(ContentRange::Bytes { first, last, .. })
            if (first, last) == (unit.bytes.start, unit.bytes.end) => {}
        got => {
            *conn = None;
            return Fetched::Failed(UnitFailure::new(
                FailureKind::BadResponse,
                format!("{named}: answered {got:?} for {want:?}"),
            ));
        }
    }
    match receive(work, job, f.response.into_body()).await {
        Ok(()) => Fetched::Done,
        Err(e) => {
            *conn = None;
            Fetched::Failed(e)
        }
    }
}

/// Reads, decodes and writes the unit's bytes.
async fn receive(work: &Work, job: &Job, mut body: crate::net::Body) -> Result<(), UnitFailure> {
    let mut dec = UnitDecoder::new(&job.unit, job.want.clone());
    let mut writes: Vec<(u64, Bytes)> = Vec::new();
    let mut counted = 0u64;
    // Under a cap a frame's worth is booked before it is read (engine::limit).
    let piece = limit::piece(&work.limits).unwrap_or(0);
    let result = async {
        loop {
            limit::until(limit::book(&work.limits, piece)).await;
            let frame = tokio::time::timeout(work.timeout, body.frame())
                .await
                .map_err(|_| {
                    UnitFailure::new(
                        FailureKind::Timeout,
                        format!("no data for {} s", work.timeout.as_secs()),
                    )
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| UnitFailure::new(FailureKind::Network, e.to_string()))?;
            let Some(data) = frame.data_ref() else {
                limit::settle(&work.limits, piece, 0);
                continue;
            };
            limit::settle(&work.limits, piece, data.len());
            dec.push(data, &mut writes).map_err(|e| {
                UnitFailure::new(
                    FailureKind::BadResponse,
                    format!("a damaged xorb range: {e}"),
                )
            })?;
            for (at, bytes) in writes.drain(..) {
                let n = bytes.len() as u64;
                work.writer
                    .write(at, vec![bytes])
                    .await
                    .map_err(|e| UnitFailure::new(FailureKind::BadResponse, e.to_string()))?;
                work.progress.add_received(n);
                counted += n;
            }
        }
        dec.finish().map_err(|e| {
            UnitFailure::new(
                FailureKind::BadResponse,
                format!("a damaged xorb range: {e}"),
            )
        })?;
        let mut lens = lock(&work.lens);
        for &(i, n) in dec.seen() {
            lens.insert(&job.unit.xorb, i, n);
        }
        Ok::<(), UnitFailure>(())
    }
    .await;
    if let Err(mut e) = result {
        // Counted again when the next attempt writes them.
        work.progress.discard(counted);
        e.delivered = counted > 0;
        return Err(e);
    }
    Ok(())
}

fn from_failure(f: Failure) -> UnitFailure {
    match f {
        Failure::Retry {
            kind,
            detail,
            status,
            retry_after,
            ..
        } => UnitFailure {
            status,
            wait: retry_after,
            ..UnitFailure::new(kind, detail)
        },
        Failure::Expired { detail, status } => UnitFailure {
            status: Some(status),
            expired: true,
            ..UnitFailure::new(FailureKind::BadResponse, detail)
        },
        Failure::Fatal(e) => UnitFailure::new(FailureKind::BadResponse, e.to_string()),
    }
}
