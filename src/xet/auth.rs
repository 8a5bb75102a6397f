//! CAS access tokens: asked of the Hub's token route with the user's Hub
//! token, used as `Bearer` at the CAS only, renewed before they expire.
//!
//! The route (`Link: <…>; rel="xet-auth"` in the resolve answer, normally
//! `{endpoint}/api/{models|datasets}/{repo}/xet-read-token/{rev}`) answers
//! `{accessToken, exp, casUrl}` (also as `X-Xet-*` headers). The user's
//! Hub token goes there only if the route is on the endpoint's own origin
//! ([`Credentials`]). A token is renewed when less than [`MARGIN`] of its
//! life is left, and after the CAS refused it (401), once per token however
//! many requests saw the refusal.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::client::document::{DocError, Documents};
use crate::client::{Credentials, RetryPolicy, SafeUrl};
use crate::net::Net;

/// Renew a token when it has less than this left (the protocol's advice).
pub const MARGIN: Duration = Duration::from_secs(30);

/// The largest token answer read (the protocol bounds each field to 64,000
/// characters).
const LIMIT: usize = 256 << 10;

/// A CAS access token and where it is good.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    pub token: String,
    /// Unix seconds.
    pub exp: u64,
    pub cas: Url,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Grant(cas {}, exp {}, token hidden)",
            SafeUrl::from(&self.cas),
            self.exp
        )
    }
}

/// Why no token was had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// 404 or 501: this endpoint does not serve Xet (a mirror): the plain
    /// path is the way.
    #[error("{url} grants no Xet token (HTTP {status})")]
    Unavailable { url: SafeUrl, status: u16 },
    #[error("{url}: the Xet token was refused (HTTP {status}){snippet}")]
    Refused {
        url: SafeUrl,
        status: u16,
        snippet: String,
    },
    #[error("{url}: {detail}")]
    Failed { url: SafeUrl, detail: String },
    #[error("interrupted")]
    Interrupted,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: Option<String>,
    exp: Option<f64>,
    cas_url: Option<String>,
}

/// The Hub's token route for one repo and revision.
pub struct TokenSource {
    docs: Documents,
    url: Url,
}

impl TokenSource {
    /// `hub`: the user's headers for the endpoint (its token among them),
    /// which go to `url` only when it is on `endpoint`'s origin.
    pub fn new(
        net: Net,
        url: Url,
        endpoint: &Url,
        hub: &HeaderMap,
        retry: RetryPolicy,
        cancel: CancellationToken,
    ) -> Result<TokenSource, AuthError> {
        let creds = Credentials::new(endpoint, hub).map_err(|e| AuthError::Failed {
            url: SafeUrl::from(&url),
            detail: e.to_string(),
        })?;
        Ok(TokenSource {
            docs: Documents::new(net, creds, retry, cancel),
            url,
        })
    }

    /// Asks for a fresh token.
    pub async fn fetch(&self) -> Result<Grant, AuthError> {
        let url = SafeUrl::from(&self.url);
        let a = match self.docs.get(&self.url, LIMIT).await {
            Ok(a) => a,
            Err(DocError::Status { status, .. }) if matches!(status, 404 | 501) => {
                return Err(AuthError::Unavailable { url, status });
            }
            Err(DocError::Status {
                status, snippet, ..
            }) => {
                let snippet = if snippet.is_empty() {
                    String::new()
                } else {
                    format!(": {snippet}")
                };
                return Err(AuthError::Refused {
                    url,
                    status,
                    snippet,
                });
            }
            Err(DocError::GaveUp { detail, .. } | DocError::BadAnswer { detail, .. }) => {
                return Err(AuthError::Failed { url, detail });
            }
            Err(DocError::Interrupted) => return Err(AuthError::Interrupted),
        };
        parse(&a.body, &a.headers, &a.url).map_err(|detail| AuthError::Failed { url, detail })
    }
}

/// The grant in a token answer: the JSON body, else the `X-Xet-*` headers.
fn parse(body: &[u8], headers: &HeaderMap, from: &Url) -> Result<Grant, String> {
    let json: Option<Answer> = serde_json::from_slice(body).ok();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (token, exp, cas) = match json {
        Some(Answer {
            access_token: Some(t),
            exp: Some(e),
            cas_url: Some(c),
        }) => (t, e, c),
        _ => (
            header("x-xet-access-token").ok_or("the answer has no accessToken")?,
            header("x-xet-token-expiration")
                .and_then(|e| e.parse().ok())
                .ok_or("the answer has no usable exp")?,
            header("x-xet-cas-url").ok_or("the answer has no casUrl")?,
        ),
    };
    let cas = from
        .join(&cas)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("casUrl {cas:?} is not an http(s) URL"))?;
    if token.is_empty() || token.len() > 64_000 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the accessToken is not a usable header value".into());
    }
    if !(exp.is_finite() && exp >= 0.0) {
        return Err("exp is not a time".into());
    }
    Ok(Grant {
        token,
        exp: exp as u64,
        cas,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The token in use for one download (or a run's files of one revision),
/// renewed as needed.
pub struct CasAuth {
    source: TokenSource,
    current: Mutex<Grant>,
    /// The CAS answered 404/501 to `/v2/`: every file of the run asks
    /// `/v1/` from then on.
    pub v1_only: std::sync::atomic::AtomicBool,
}

impl CasAuth {
    /// Gets the first token; fails as [`TokenSource::fetch`] does.
    pub async fn start(source: TokenSource) -> Result<Arc<CasAuth>, AuthError> {
        let first = source.fetch().await?;
        Ok(Arc::new(CasAuth {
            source,
            current: Mutex::new(first),
            v1_only: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// A token with more than [`MARGIN`] left.
    pub async fn grant(&self) -> Result<Grant, AuthError> {
        let mut g = self.current.lock().await;
        if g.exp <= now() + MARGIN.as_secs() {
            tracing::debug!("renewing the Xet token before it expires");
            *g = self.source.fetch().await?;
        }
        Ok(g.clone())
    }

    /// The CAS refused `seen`: renew it, unless another request did already.
    pub async fn refused(&self, seen: &Grant) -> Result<Grant, AuthError> {
        let mut g = self.current.lock().await;
        if g.token == seen.token {
            tracing::debug!("the CAS refused its token; renewing it");
            *g = self.source.fetch().await?;
        }
        Ok(g.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_comes_from_the_body_or_the_headers() {
        let from = Url::parse("http://hub.example/api/models/a/b/xet-read-token/main").unwrap();
        let g = parse(
            br#"{"accessToken":"xet_1","exp":1848535668,"casUrl":"https://cas.example"}"#,
            &HeaderMap::new(),
            &from,
        )
        .unwrap();
        assert_eq!((g.token.as_str(), g.exp), ("xet_1", 1848535668));
        assert_eq!(g.cas.as_str(), "https://cas.example/");
        let mut h = HeaderMap::new();
        h.insert("x-xet-access-token", "xet_2".parse().unwrap());
        h.insert("x-xet-token-expiration", "77".parse().unwrap());
        h.insert("x-xet-cas-url", "http://cas.example:9".parse().unwrap());
        let g = parse(b"", &h, &from).unwrap();
        assert_eq!((g.token.as_str(), g.exp), ("xet_2", 77));
        assert!(format!("{g:?}").contains("hidden") && !format!("{g:?}").contains("xet_2"));
        for bad in [
            r#"{"accessToken":"a b","exp":1,"casUrl":"https://c"}"#,
            r#"{"accessToken":"t","exp":-1,"casUrl":"https://c"}"#,
            r#"{"accessToken":"t","exp":1,"casUrl":"ftp://c"}"#,
            r#"{"exp":1}"#,
        ] {
            assert!(
                parse(bad.as_bytes(), &HeaderMap::new(), &from).is_err(),
                "{bad}"
            );
        }
    }
}
