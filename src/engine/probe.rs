//! The probe: a ranged GET from the first missing byte.
//!
//! Never HEAD (pre-signed storage URLs refuse it). Its answer tells whether
//! ranges work, the file's length and validators, where redirects lead; and
//! its body is data, which the first slot reads on.

use std::ops::Range;

use http::StatusCode;

use super::error::Error;
use super::job::Ctx;
use super::resume::Start;
use super::shared::Validators;
use crate::client::classify::status_failure;
use crate::client::request::downgraded;
use crate::client::{Backoff, ByteRange, Failure, FailureKind, Fetched, Hop, Source, Stop, fetch};
use crate::net::Conn;
use crate::net::http::{ContentRange, content_length, content_range, last_modified, strong_etag};

/// A probe that found ranges working.
pub struct Ranged {
    pub fetched: Fetched,
    pub conn: Conn,
    /// The bytes its answer carries.
    pub range: Range<u64>,
    pub validators: Validators,
}

/// What the probe found.
pub enum Probe {
    Ranged(Ranged),
    /// The whole file in one stream (Range ignored or length unknown).
    /// `first` is `None` when the probe's answer cannot be used as the start
    /// of the file and the stream must be requested again.
    Single {
        first: Option<(Fetched, Conn)>,
        length: Option<u64>,
    },
    /// A zero-length file.
    Empty {
        hops: Vec<Hop>,
    },
    /// The probe asked from `total` (416): everything before it is all there is.
    AtEnd {
        total: u64,
    },
}

/// How much the probe asks for: one piece's worth, within bounds.
fn probe_len(min_split: u64) -> u64 {
    min_split.clamp(64 << 10, 16 << 20)
}

/// Sends the probe from the first byte `start` lacks, retried like any
/// other request.
pub async fn run(ctx: &Ctx<'_>, start: &Start) -> Result<Probe, Error> {
    let gap = start
        .done
        .gaps(0..u64::MAX)
        .into_iter()
        .next()
        .unwrap_or(0..u64::MAX);
    let want = gap.start
        ..gap
            .start
            .saturating_add(probe_len(ctx.spec.min_split))
            .min(gap.end);
    let source = &ctx.sources[0];
    let mut backoff = Backoff::new(ctx.spec.retry.clone(), ctx.cancel.clone());
    let mut conn: Option<Conn> = None;
    loop {
        let (url, generation) = source.current();
        let req = source.request(&url, Some(ByteRange::of(&want)), None);
        let fetched = backoff
            .attempt(fetch(ctx.net, req, &mut conn))
            .await
            .map_err(|_| Error::Interrupted)?;
        let failure = match fetched {
            Ok(f) => match answer(ctx, source, f, conn.take(), want.start).await {
                Ok(p) => return Ok(p),
                Err(f) => f,
            },
            Err(f) => f.map_fatal(|e| Error::from_client(e, source.ident())),
        };
        conn = None;
        again(source, &mut backoff, failure, generation).await?;
    }
}

/// After a failed request to `source` (made at resolve `generation`):
/// `Ok` to try again once the backoff has passed, `Err` to stop. An expired
/// or refused redirect target is resolved again, without counting.
pub(super) async fn again(
    source: &Source,
    backoff: &mut Backoff,
    failure: Failure<Error>,
    generation: u64,
) -> Result<(), Error> {
    match failure {
        Failure::Fatal(e) => Err(e),
        Failure::Expired { detail, status } if !source.expire(generation) => Err(Error::Auth {
            url: source.ident(),
            status,
            hint: format!(
                "; the redirect target refused every fresh URL: resolved again {} times in a row without receiving any data ({detail})",
                crate::client::source::MAX_FRUITLESS_RERESOLVES
            ),
        }),
        Failure::Expired { .. } => Ok(()),
        Failure::Retry {
            kind,
            detail,
            status,
            retry_after,
            ..
        } => {
            tracing::info!(
                "{}: {detail}; attempt {} failed",
                source.named(),
                backoff.failures() + 1
            );
            backoff
                .failed(retry_after, false)
                .await
                .map_err(|stop| match stop {
                    Stop::Cancelled => Error::Interrupted,
                    Stop::Exhausted { attempts } => Error::GaveUp {
                        url: source.ident(),
                        attempts,
                        status,
                        last: detail,
                        kind,
                    },
                })
        }
    }
}

/// Learns from a successful request: time to first byte, where redirects
/// led, the caller's identity check, an https → http downgrade; then what
/// the answer means.
async fn answer(
    ctx: &Ctx<'_>,
    source: &Source,
    f: Fetched,
    conn: Option<Conn>,
    start: u64,
) -> Result<Probe, Failure<Error>> {
    source.record_ttfb(f.ttfb);
    source.set_resolved(f.url.clone());
    if let Some(c) = &ctx.spec.source_check {
        c.verify(source, &f).map_err(Failure::Fatal)?;
    }
    if ctx.spec.checksum.is_none()
        && let Some(host) = downgraded(&f.hops, &f.url)
    {
        tracing::warn!(
            "{} redirects to unencrypted http at {host}: without a checksum (--checksum) nothing protects the bytes on the way",
            source.named()
        );
    }
    let redirected = f.url != source.original;
    classify(f, conn, start, source, redirected).await
}

async fn classify(
    fetched: Fetched,
    conn: Option<Conn>,
    start: u64,
    source: &Source,
    redirected: bool,
) -> Result<Probe, Failure<Error>> {
    let h = fetched.response.headers();
    let conn = conn.expect("fetch leaves the connection of its answer");
    match fetched.response.status() {
        StatusCode::PARTIAL_CONTENT => match content_range(h) {
            Some(ContentRange::Bytes {
                first,
                last,
                total: Some(total),
            }) if first == start => {
                let validators = Validators {
                    total,
                    etag: strong_etag(h),
                    last_modified: last_modified(h),
                };
                Ok(Probe::Ranged(Ranged {
                    range: first..last + 1,
                    fetched,
                    conn,
                    validators,
                }))
            }
            // Ranges work but the size is unknown: one stream from the start.
            Some(ContentRange::Bytes { total: None, .. }) => Ok(Probe::Single {
                first: None,
                length: None,
            }),
            other => Err(Failure::Retry {
                kind: FailureKind::BadResponse,
                detail: format!(
                    "asked for bytes from {start}, got Content-Range {other:?}; nothing of it was written"
                ),
                status: Some(206),
                retry_after: None,
                overloaded: false,
            }),
        },
        StatusCode::OK => {
            let length = content_length(h);
            if length == Some(0) {
                return Ok(Probe::Empty { hops: fetched.hops });
            }
            Ok(Probe::Single {
                length,
                first: Some((fetched, conn)),
            })
        }
        StatusCode::RANGE_NOT_SATISFIABLE => unsatisfiable(fetched, start, source),
        _ => {
            let url = fetched.url.clone();
            Err(
                status_failure(fetched.response, &url, redirected, source.named())
                    .await
                    .map_fatal(|e| Error::from_client(e, source.ident())),
            )
        }
    }
}

/// A 416 to the probe: an empty file, or one that ends where we asked.
fn unsatisfiable(fetched: Fetched, start: u64, source: &Source) -> Result<Probe, Failure<Error>> {
    let bad = |detail: String| {
        Err(Failure::Fatal(Error::BadResponse {
            url: source.ident(),
            detail,
        }))
    };
    match content_range(fetched.response.headers()) {
        Some(ContentRange::Unsatisfied { total: 0 }) => Ok(Probe::Empty { hops: fetched.hops }),
        Some(ContentRange::Unsatisfied { total }) if start >= total => Ok(Probe::AtEnd { total }),
        Some(ContentRange::Unsatisfied { total }) => {
            bad(format!("HTTP 416 for a range inside the {total}-byte file"))
        }
        _ => bad("HTTP 416 without the file size".into()),
    }
}
