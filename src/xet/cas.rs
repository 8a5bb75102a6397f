//! Asking the CAS for reconstructions, with the one retry driver.
//!
//! `GET {cas}/v2/reconstructions/{file_id}` first, as the official client
//! does, and `/v1/` from then on when the CAS answers 404 or 501 (older
//! deployments). The request carries the CAS token (`Bearer`, sent only to
//! the CAS's origin) and, for a part of the file, `Range: bytes=a-b`. A
//! 401 renews the token ([`CasAuth::refused`]); 429 and 503 are waited out
//! (`Retry-After` is a minimum); the other retried statuses and network
//! errors back off as every retry loop of hfd does.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::auth::{AuthError, CasAuth, Grant};
use super::hash::XetHash;
use super::recon::{ReconstructionV1, ReconstructionV2};
use crate::client::classify::{Failure, Verdict, server_wait, verdict};
use crate::client::request::{ReadError, error_snippet, fetch, read_body};
use crate::client::{Backoff, ByteRange, Credentials, Request, RetryPolicy, SafeUrl, Stop};
use crate::net::{Body, Conn, Net};

/// The largest reconstruction read: about a million terms.
const LIMIT: usize = 128 << 20;

/// Why a reconstruction could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CasError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{url}: HTTP {status}{snippet}")]
    Status {
        url: SafeUrl,
        status: u16,
        snippet: String,
    },
    #[error("{url}: gave up after {attempts} failed attempts: {last}")]
    GaveUp {
        url: SafeUrl,
        attempts: u32,
        last: String,
    },
    #[error("{url}: {detail}")]
    BadAnswer { url: SafeUrl, detail: String },
    #[error(transparent)]
    Plan(#[from] super::recon::PlanError),
    #[error("interrupted")]
    Interrupted,
}

/// The CAS of one file's download.
pub struct Cas {
    net: Net,
    auth: Arc<CasAuth>,
    retry: RetryPolicy,
    cancel: CancellationToken,
    conn: Mutex<Option<Conn>>,
}

/// One failed attempt that is worth another.
struct Again {
    detail: String,
    wait: Option<Duration>,
    status: Option<u16>,
}

impl Cas {
    pub fn new(net: Net, auth: Arc<CasAuth>, retry: RetryPolicy, cancel: CancellationToken) -> Cas {
        Cas {
            net,
            auth,
            retry,
            cancel,
            conn: Mutex::new(None),
        }
    }

    /// The reconstruction of bytes `range` of file `id` (`None`: the whole
    /// file).
    pub async fn reconstruction(
        &self,
        id: &XetHash,
        range: Option<Range<u64>>,
    ) -> Result<ReconstructionV1, CasError> {
        let mut backoff = Backoff::new(self.retry.clone(), self.cancel.clone());
        let mut grant = self.auth.grant().await?;
        loop {
            let v2 = !self.auth.v1_only.load(Relaxed);
            let url = endpoint(&grant.cas, v2, id)?;
            let attempt = self.once(&url, &grant, range.clone(), v2);
            let again = match backoff.attempt(attempt).await {
                Err(_) => return Err(CasError::Interrupted),
                Ok(Ok(Some(r))) => return Ok(r),
                Ok(Ok(None)) => {
                    tracing::debug!("the CAS has no /v2/ reconstructions; using /v1/");
                    self.auth.v1_only.store(true, Relaxed);
                    continue;
                }
                Ok(Err(Step::Final(e))) => return Err(e),
                Ok(Err(Step::Refused)) => {
                    self.auth.refused(&grant).await?;
                    Again {
                        detail: "HTTP 401: the CAS refused its token".into(),
                        wait: None,
                        status: Some(401),
                    }
                }
                Ok(Err(Step::Again(a))) => a,
            };
            *self.conn.lock().await = None;
            tracing::info!(
                "{}: {}; attempt {} failed",
                SafeUrl::from(&url),
                again.detail,
                backoff.failures() + 1
            );
            match backoff.failed(again.wait, again.status == Some(401)).await {
                Ok(()) => grant = self.auth.grant().await?,
                Err(Stop::Cancelled) => return Err(CasError::Interrupted),
                Err(Stop::Exhausted { attempts }) => {
                    return Err(CasError::GaveUp {
                        url: SafeUrl::from(&url),
                        attempts,
                        last: again.detail,
                    });
                }
            }
        }
    }

    /// One request; `Ok(None)` when `/v2/` is not served.
    async fn once(
        &self,
        url: &Url,
        grant: &Grant,
        range: Option<Range<u64>>,
        v2: bool,
    ) -> Result<Option<ReconstructionV1>, Step> {
        let named = SafeUrl::from(url);
        let creds = bearer(url, grant)?;
        let req = Request {
            url,
            credentials: &creds,
            range: range.as_ref().map(ByteRange::of),
            if_range: None,
            named: &named,
        };
        let mut conn = self.conn.lock().await;
        let f = fetch(&self.net, req, &mut conn)
            .await
            .map_err(|e| failed(url, e))?;
        let status = f.response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(Step::Refused);
        }
        if v2 && matches!(status.as_u16(), 404 | 501) {
            return Ok(None);
        }
        if verdict(status.as_u16()) != Verdict::Success {
            return Err(refused(named, f.response).await);
        }
        let idle = self.net.options().response_timeout;
        let body = read_body(f.response, LIMIT, idle)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(_) => Step::Final(bad(url, &e.to_string())),
                e => again(
                    format!("reading the reconstruction failed: {e}"),
                    None,
                    None,
                ),
            })?;
        let parsed = if v2 {
            serde_json::from_slice::<ReconstructionV2>(&body).map(ReconstructionV1::from)
        } else {
            serde_json::from_slice::<ReconstructionV1>(&body)
        };
        parsed
            .map(Some)
            .map_err(|e| Step::Final(bad(url, &format!("not a reconstruction: {e}"))))
    }
}

/// The CAS token as credentials for `url` (they go to its origin only).
fn bearer(url: &Url, grant: &Grant) -> Result<Credentials, Step> {
    let mut h = HeaderMap::new();
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", grant.token))
        .map_err(|_| Step::Final(bad(url, "the token is not a header value")))?;
    bearer.set_sensitive(true);
    h.insert(AUTHORIZATION, bearer);
    Credentials::new(url, &h).map_err(|e| Step::Final(bad(url, &e.to_string())))
}

/// A request that got no answer, as the client layer classified it.
fn failed(url: &Url, f: Failure) -> Step {
    match f {
        Failure::Fatal(e) => Step::Final(bad(url, &e.to_string())),
        Failure::Retry {
            detail,
            retry_after,
            status,
            ..
        } => again(detail, retry_after, status),
        Failure::Expired { detail, status } => again(detail, None, Some(status)),
    }
}

/// An answer other than success, 401 and a `/v2/` that is not served:
/// retried when the one classifier says so, else final.
async fn refused(url: SafeUrl, response: Response<Body>) -> Step {
    let wait = server_wait(response.headers());
    let code = response.status().as_u16();
    let snippet = error_snippet(response).await;
    if crate::client::classify::is_retried(code) {
        return again(format!("HTTP {code}: {snippet}"), wait, Some(code));
    }
    let snippet = if snippet.is_empty() {
        snippet
    } else {
        format!(": {snippet}")
    };
    Step::Final(CasError::Status {
        url,
        status: code,
        snippet,
    })
}

fn again(detail: String, wait: Option<Duration>, status: Option<u16>) -> Step {
    Step::Again(Again {
        detail,
        wait,
        status,
    })
}

/// How an attempt ended, when not with an answer.
enum Step {
    Final(CasError),
    /// 401: renew the token, then try again.
    Refused,
    Again(Again),
}

fn bad(url: &Url, detail: &str) -> CasError {
    CasError::BadAnswer {
        url: SafeUrl::from(url),
        detail: detail.to_string(),
    }
}

/// `{cas}/v{1,2}/reconstructions/{id}`, the CAS URL's own path kept.
fn endpoint(cas: &Url, v2: bool, id: &XetHash) -> Result<Url, CasError> {
    let base = cas.as_str().trim_end_matches('/');
    let v = if v2 { "v2" } else { "v1" };
    Url::parse(&format!("{base}/{v}/reconstructions/{}", id.hex())).map_err(|e| {
        CasError::BadAnswer {
            url: SafeUrl::from(cas),
            detail: format!("cannot build a URL on it: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_keeps_the_cas_path() {
        let id = XetHash([1; 32]);
        let u = endpoint(
            &Url::parse("https://cas.example/base/").unwrap(),
            false,
            &id,
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            format!("https://cas.example/base/v1/reconstructions/{}", id.hex())
        );
        let u = endpoint(&Url::parse("http://cas.example:8080").unwrap(), true, &id).unwrap();
        assert!(
            u.as_str()
                .starts_with("http://cas.example:8080/v2/reconstructions/")
        );
    }
}
