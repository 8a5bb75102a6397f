//! Whether an answer to a slot's range request carries the bytes asked for.
//!
//! Checked before a byte of it is written: the validators recorded at the
//! start (whatever the status: another ETag is another file), status 206, a
//! `Content-Range` that starts exactly where we asked, ends inside the
//! request and states the same total length.

use std::ops::Range;

use http::{HeaderMap, Response, StatusCode};

use super::error::Error;
use super::shared::Job;
use crate::client::{Failure, FailureKind, Source};
use crate::net::Body;
use crate::net::http::{ContentRange, any_etag, content_range, last_modified, strong_etag};

/// What is wrong with an answer.
pub enum Refusal {
    /// The answer is unusable for the reason given.
    Failed(Failure<Error>),
    /// An error status: the caller reads and classifies it.
    Status,
}

type Checked = Result<(), Refusal>;

fn changed(source: &Source, detail: String) -> Refusal {
    Refusal::Failed(Failure::Fatal(Error::RemoteChanged {
        url: source.ident(),
        detail,
    }))
}

fn bad(status: u16, detail: String) -> Refusal {
    Refusal::Failed(Failure::Retry {
        kind: FailureKind::BadResponse,
        detail,
        status: Some(status),
        retry_after: None,
        overloaded: false,
    })
}

/// Checks `response`, the answer from `source` to a request for `req`.
pub fn check(job: &Job, source: &Source, response: &Response<Body>, req: &Range<u64>) -> Checked {
    let h = response.headers();
    // With a source check each source answers for its own validators,
    // once a good answer has fixed them (below).
    if job.source_check.is_none() {
        same_validators(
            source,
            h,
            &job.validators.etag,
            &job.validators.last_modified,
        )?;
    } else if let Some((etag, lm)) = source.own_validators.get() {
        same_validators(source, h, etag, lm)?;
    }
    check_status(job.validators.total, source, response, req)?;
    check_range(job.validators.total, source, h, req)?;
    if job.source_check.is_some() && source.own_validators.get().is_none() {
        let (etag, lm) = source
            .own_validators
            .get_or_init(|| (strong_etag(h), last_modified(h)));
        same_validators(source, h, etag, lm)?;
    }
    Ok(())
}

/// A 206 is what a range request wants; a 200 means the file no longer
/// matches (ranges stopped working mid-download); a 416 with another size
/// is a file that changed.
fn check_status(
    total: u64,
    source: &Source,
    response: &Response<Body>,
    req: &Range<u64>,
) -> Checked {
    match response.status() {
        StatusCode::PARTIAL_CONTENT => Ok(()),
        StatusCode::OK => Err(changed(
            source,
            "a range request was answered with the whole file, so the file no longer matches what was started".into(),
        )),
        StatusCode::RANGE_NOT_SATISFIABLE => Err(match content_range(response.headers()) {
            Some(ContentRange::Unsatisfied { total: t }) if t != total => {
                changed(source, format!("its size was {total} bytes, now {t}"))
            }
            _ => bad(
                416,
                format!("HTTP 416 for bytes {}-{}", req.start, req.end - 1),
            ),
        }),
        _ => Err(Refusal::Status),
    }
}

/// The 206's `Content-Range`: the same total, starting exactly where we
/// asked and ending inside the request.
fn check_range(total: u64, source: &Source, h: &HeaderMap, req: &Range<u64>) -> Checked {
    let Some(ContentRange::Bytes {
        first,
        last,
        total: t,
    }) = content_range(h)
    else {
        return Err(bad(
            206,
            "a 206 answer without a valid Content-Range".into(),
        ));
    };
    if let Some(t) = t
        && t != total
    {
        return Err(changed(
            source,
            format!("its size was {total} bytes, now {t}"),
        ));
    }
    if first != req.start {
        return Err(bad(
            206,
            format!(
                "asked for bytes from {} but the answer starts at {first} (Content-Range {first}-{last}); nothing of it was written",
                req.start
            ),
        ));
    }
    if last >= req.end {
        return Err(bad(
            206,
            format!(
                "asked for bytes {}-{} but got {first}-{last}",
                req.start,
                req.end - 1
            ),
        ));
    }
    Ok(())
}

/// The answer's ETag (or, without one, its Last-Modified) is the one
/// recorded.
fn same_validators(
    source: &Source,
    h: &HeaderMap,
    etag: &Option<String>,
    lm: &Option<String>,
) -> Checked {
    if let (Some(want), Some(got)) = (etag, any_etag(h))
        && *want != got
    {
        return Err(changed(source, format!("its ETag was {want}, now {got}")));
    }
    if etag.is_none()
        && let (Some(want), Some(got)) = (lm, last_modified(h))
        && *want != got
    {
        return Err(changed(
            source,
            format!("its Last-Modified was {want}, now {got}"),
        ));
    }
    Ok(())
}
