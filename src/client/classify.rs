//! What an answer or a network error means: retry, resolve again, or stop.
//!
//! One table ([`verdict`]) decides for every caller (the engine's probe and
//! slots, the Hub API, the bench) which statuses are worth another attempt,
//! so a mirror behind a CDN that answers 520 is retried the same way
//! whether it was asked for a file or for a listing.

use std::time::Duration;

use http::Response;
use url::Url;

use super::error::Error;
use super::request::error_snippet;
use super::url::SafeUrl;
use crate::net::{Body, NetError, http as headers};

/// Why retries ran out; decides the exit code of a give-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Network,
    Timeout,
    Dns,
    Overloaded,
    Proxy,
    Tls,
    BadResponse,
}

/// Why a request did not give usable data. `E` is the caller's error for
/// what cannot be retried (the engine adds its own, such as a file that
/// changed on the server).
#[derive(Debug)]
pub enum Failure<E = Error> {
    /// Try again later, on a new connection.
    Retry {
        kind: FailureKind,
        detail: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        /// 429/503: the server wants fewer connections.
        overloaded: bool,
    },
    /// The redirect target refused or expired: resolve again from the
    /// original URL.
    Expired { detail: String, status: u16 },
    /// Nothing to retry: this source cannot succeed.
    Fatal(E),
}

impl<E> Failure<E> {
    pub fn retry(kind: FailureKind, detail: impl Into<String>) -> Failure<E> {
        Failure::Retry {
            kind,
            detail: detail.into(),
            status: None,
            retry_after: None,
            overloaded: false,
        }
    }

    /// The same failure with the fatal error turned into the caller's.
    pub fn map_fatal<F>(self, f: impl FnOnce(E) -> F) -> Failure<F> {
        match self {
            Failure::Retry {
                kind,
                detail,
                status,
                retry_after,
                overloaded,
            } => Failure::Retry {
                kind,
                detail,
                status,
                retry_after,
                overloaded,
            },
            Failure::Expired { detail, status } => Failure::Expired { detail, status },
            Failure::Fatal(e) => Failure::Fatal(f(e)),
        }
    }
}

impl<E: From<Error>> Failure<E> {
    /// A network error: retried unless trying again cannot help (a bad URL,
    /// a rejected certificate, proxy credentials).
    pub fn from_net(e: NetError) -> Failure<E> {
        if !e.is_retryable() {
            return Failure::Fatal(Error::Net(e).into());
        }
        let kind = match &e {
            NetError::Dns { .. } => FailureKind::Dns,
            NetError::Proxy { .. } => FailureKind::Proxy,
            NetError::Tls { .. } => FailureKind::Tls,
            NetError::ResponseTimeout { .. } => FailureKind::Timeout,
            _ => FailureKind::Network,
        };
        Failure::retry(kind, e.to_string())
    }
}

/// What a status means, before the context (a redirect target's refusal is
/// an expiry) is taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Redirect,
    NotFound,
    Denied,
    /// 429 and 503: retry later, with fewer connections.
    Overloaded,
    /// Worth another attempt.
    Retry,
    /// Trying again cannot help.
    Fatal,
}

/// The one table of statuses. 501 (Not Implemented) and 505 (HTTP Version
/// Not Supported) are answers about the request itself, so they are final;
/// every other 5xx, 408 and 429 are passing states of the server.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        304 => Verdict::Fatal,
        300..=399 => Verdict::Redirect,
        404 | 410 => Verdict::NotFound,
        401 | 403 | 407 => Verdict::Denied,
        429 | 503 => Verdict::Overloaded,
        501 | 505 => Verdict::Fatal,
        408 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// Whether an answer with `status` is worth another attempt.
pub fn is_retried(status: u16) -> bool {
    matches!(verdict(status), Verdict::Retry | Verdict::Overloaded)
}

/// The wait a server asked for: `Retry-After` or the `RateLimit` reset,
/// whichever is later (obeying only the shorter one earns another 429).
pub fn server_wait(h: &http::HeaderMap) -> Option<Duration> {
    headers::retry_after(h).max(headers::ratelimit_reset(h))
}

/// What a non-success, non-redirect answer to a request for `url` means
/// (`url` was reached by redirect when `redirected`; `named` is the URL the
/// user gave, for messages). Reads a little of the body to quote it.
pub async fn status_failure(
    response: Response<Body>,
    url: &Url,
    redirected: bool,
    named: &SafeUrl,
) -> Failure {
    let status = response.status().as_u16();
    let retry_after = server_wait(response.headers());
    let snippet = error_snippet(response).await;
    let quoted = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {snippet}")
    };
    // A storage host behind a redirect that refuses has most likely seen
    // its signed URL expire: the source resolves again.
    if redirected && matches!(status, 400 | 401 | 403 | 410) {
        return Failure::Expired {
            detail: format!("HTTP {status} from {}{quoted}", SafeUrl::from(url)),
            status,
        };
    }
    let url = named.clone();
    match verdict(status) {
        Verdict::NotFound => Failure::Fatal(Error::NotFound { url, status }),
        Verdict::Denied => Failure::Fatal(Error::Auth {
            url,
            status,
            hint: if snippet.is_empty() {
                "; if the file needs a login, pass a token with --header 'Authorization: Bearer ...'".into()
            } else {
                quoted
            },
        }),
        v @ (Verdict::Overloaded | Verdict::Retry) => Failure::Retry {
            kind: if v == Verdict::Overloaded {
                FailureKind::Overloaded
            } else {
                FailureKind::Network
            },
            detail: format!("HTTP {status}{quoted}"),
            status: Some(status),
            retry_after,
            overloaded: v == Verdict::Overloaded,
        },
        _ => Failure::Fatal(Error::BadResponse {
            url,
            detail: format!("unexpected HTTP {status}{quoted}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status from 100 to 599 against the table written out by hand:
    /// a change to what is retried shows up here.
    #[test]
    fn the_retried_statuses() {
        let retried: Vec<u16> = (100..=599).filter(|&s| is_retried(s)).collect();
        let mut want = vec![408, 429, 500, 502, 503, 504];
        want.extend(506..=599);
        assert_eq!(retried, want);
        let overloaded: Vec<u16> = (100..=599)
            .filter(|&s| verdict(s) == Verdict::Overloaded)
            .collect();
        assert_eq!(overloaded, [429, 503]);
        for (s, v) in [
            (200, Verdict::Success),
            (206, Verdict::Success),
            (301, Verdict::Redirect),
            (302, Verdict::Redirect),
            (307, Verdict::Redirect),
            (308, Verdict::Redirect),
            (304, Verdict::Fatal),
            (400, Verdict::Fatal),
            (401, Verdict::Denied),
            (403, Verdict::Denied),
            (407, Verdict::Denied),
            (404, Verdict::NotFound),
            (410, Verdict::NotFound),
            (416, Verdict::Fatal),
            (501, Verdict::Fatal),
            (505, Verdict::Fatal),
            (520, Verdict::Retry),
        ] {
            assert_eq!(verdict(s), v, "{s}");
        }
    }
}
