//! Small whole answers (the Hub's JSON documents), fetched with retries.
//!
//! The same rules as a download's requests: redirects followed by hand,
//! credentials only for the origin they belong to, the one status table
//! and the one retry driver; bodies are capped and a server that goes
//! silent mid-answer is a failure after the response timeout.

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::classify::{Failure, Verdict, is_retried, server_wait, verdict};
use super::credentials::Credentials;
use super::request::{ReadError, Request, error_snippet, fetch, read_body};
use super::retry::{Backoff, RetryPolicy, Stop};
use super::url::SafeUrl;
use crate::net::{Conn, Net};

/// A successful answer.
pub struct Answer {
    /// Where the answer came from, after redirects.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a document could not be had.
#[derive(Debug, Clone)]
pub enum DocError {
    /// An error status that is final, or retried until retries ran out.
    Status {
        url: SafeUrl,
        status: u16,
        headers: HeaderMap,
        /// The first line of the body.
        snippet: String,
    },
    /// Network errors until the retries ran out, or a request that can
    /// never succeed (a bad URL, a refused certificate).
    GaveUp {
        url: SafeUrl,
        detail: String,
    },
    /// An answer we cannot use (larger than the limit).
    BadAnswer {
        url: SafeUrl,
        detail: String,
    },
    Interrupted,
}

/// Fetches documents from one place, reusing one connection between calls.
pub struct Documents {
    net: Net,
    credentials: Credentials,
    retry: RetryPolicy,
    cancel: CancellationToken,
    conn: Mutex<Option<Conn>>,
}

impl Documents {
    /// Documents with `credentials` (which send their secrets only to
    /// their own origin, whatever URL a caller asks for).
    pub fn new(
        net: Net,
        credentials: Credentials,
        retry: RetryPolicy,
        cancel: CancellationToken,
    ) -> Documents {
        Documents {
            net,
            credentials,
            retry,
            cancel,
            conn: Mutex::new(None),
        }
    }

    /// `GET url`, at most `limit` bytes, retried on network errors and on
    /// the statuses [`super::classify`] retries (after the server's reset
    /// time when it gives one).
    pub async fn get(&self, url: &Url, limit: usize) -> Result<Answer, DocError> {
        let named = SafeUrl::from(url);
        let req = Request {
            url,
            credentials: &self.credentials,
            range: None,
            if_range: None,
            named: &named,
        };
        let mut backoff = Backoff::new(self.retry.clone(), self.cancel.clone());
        let mut conn = self.conn.lock().await;
        loop {
            let failure = match backoff.attempt(self.once(req, limit, &mut conn)).await {
                Err(_) => return Err(DocError::Interrupted),
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(Attempt::Final(e))) => return Err(e),
                Ok(Err(Attempt::Again(f))) => f,
            };
            *conn = None;
            let (detail, wait) = match &failure {
                Again::Status {
                    status,
                    headers,
                    snippet,
                } => (format!("HTTP {status}: {snippet}"), server_wait(headers)),
                Again::Failure(detail, wait) => (detail.clone(), *wait),
            };
            tracing::info!(
                "{named}: {detail}; attempt {} failed",
                backoff.failures() + 1
            );
            match backoff.failed(wait, false).await {
                Ok(()) => {}
                Err(Stop::Cancelled) => return Err(DocError::Interrupted),
                Err(Stop::Exhausted { .. }) => {
                    return Err(match failure {
                        Again::Status {
                            status,
                            headers,
                            snippet,
                        } => DocError::Status {
                            url: named,
                            status,
                            headers,
                            snippet,
                        },
                        Again::Failure(detail, _) => DocError::GaveUp { url: named, detail },
                    });
                }
            }
        }
    }

    /// One attempt.
    async fn once(
        &self,
        req: Request<'_>,
        limit: usize,
        conn: &mut Option<Conn>,
    ) -> Result<Answer, Attempt> {
        let f = match fetch(&self.net, req, conn).await {
            Ok(f) => f,
            Err(Failure::Fatal(e)) => {
                return Err(Attempt::Final(DocError::GaveUp {
                    url: req.named.clone(),
                    detail: e.to_string(),
                }));
            }
            Err(Failure::Retry {
                detail,
                retry_after,
                ..
            }) => return Err(Attempt::Again(Again::Failure(detail, retry_after))),
            Err(Failure::Expired { detail, .. }) => {
                return Err(Attempt::Again(Again::Failure(detail, None)));
            }
        };
        let status = f.response.status().as_u16();
        let headers = f.response.headers().clone();
        if verdict(status) != Verdict::Success {
            let snippet = error_snippet(f.response).await;
            if status == 429 {
                tracing::warn!(
                    "rate limited by {} (HTTP 429{}); waiting as it asks",
                    SafeUrl::from(&f.url),
                    if snippet.is_empty() {
                        String::new()
                    } else {
                        format!(": {snippet}")
                    }
                );
            }
            if is_retried(status) {
                return Err(Attempt::Again(Again::Status {
                    status,
                    headers,
                    snippet,
                }));
            }
            return Err(Attempt::Final(DocError::Status {
                url: req.named.clone(),
                status,
                headers,
                snippet,
            }));
        }
        let idle = self.net.options().response_timeout;
        match read_body(f.response, limit, idle).await {
            Ok(body) => Ok(Answer {
                url: f.url,
                headers,
                body,
            }),
            Err(e @ ReadError::TooLarge(_)) => Err(Attempt::Final(DocError::BadAnswer {
                url: req.named.clone(),
                detail: e.to_string(),
            })),
            Err(e) => Err(Attempt::Again(Again::Failure(
                format!("reading the answer failed: {e}"),
                None,
            ))),
        }
    }
}

/// How one attempt ended, when not with an answer.
enum Attempt {
    Final(DocError),
    Again(Again),
}

/// A failure worth another attempt.
enum Again {
    Status {
        status: u16,
        headers: HeaderMap,
        snippet: String,
    },
    Failure(String, Option<std::time::Duration>),
}
