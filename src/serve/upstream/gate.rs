//! Gated and private repos: a client gets a file of such a repo (even one
//! already in the cache) only if upstream accepts its token for that repo.
//!
//! The check is the request a client would make: the first byte of the
//! file from upstream's `resolve` route with the client's `Authorization`,
//! not following the redirect (a 2xx or 3xx is access; 401, 403 and 404
//! are refusals, passed on in upstream's words). The verdict is kept for
//! the time-to-live under a sha256 of the header, in memory only; the
//! token itself goes nowhere but upstream's origin ([`Credentials`]).

use url::Url;

use super::meta::{Auth, MetaError};
use super::ttl::TtlMap;
use crate::client::request::{Request, send_once};
use crate::client::{ByteRange, Credentials, SafeUrl};
use crate::net::Net;
use crate::serve::cache::Kind;

type Key = (Kind, String, super::meta::AuthKey);

/// Verdicts on tokens, per repo.
pub struct Gate {
    verdicts: TtlMap<Key, Result<(), MetaError>>,
}

impl Gate {
    pub fn new(ttl: std::time::Duration) -> Gate {
        Gate {
            verdicts: TtlMap::new(ttl),
        }
    }

    /// Whether upstream lets `auth` read the repo `id`, asked with the
    /// file at `url` (a resolve URL of that repo).
    pub async fn check(
        &self,
        net: &Net,
        (kind, id): (Kind, &str),
        url: &Url,
        auth: &Auth,
    ) -> Result<(), MetaError> {
        let key = (kind, id.to_string(), auth.key());
        if let Some(v) = self.verdicts.get(&key) {
            return v;
        }
        let verdict = ask(net, url, auth).await;
        if !matches!(verdict, Err(MetaError::Unreachable(_))) {
            self.verdicts.put(key, verdict.clone());
        }
        verdict
    }
}

async fn ask(net: &Net, url: &Url, auth: &Auth) -> Result<(), MetaError> {
    let credentials = Credentials::new(url, &auth.headers())
        .map_err(|e| MetaError::Unreachable(e.to_string()))?;
    let named = SafeUrl::from(url);
    let req = Request {
        url,
        credentials: &credentials,
        range: Some(ByteRange::of(&(0..1))),
        if_range: None,
        named: &named,
    };
    let mut conn = None;
    let resp = send_once(net, req, &mut conn)
        .await
        .map_err(|e| MetaError::Unreachable(format!("{named}: {e:?}")))?;
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match status {
        200..=399 => Ok(()),
        401 | 403 | 404 => Err(MetaError::Status {
            status,
            code: header("x-error-code"),
            message: header("x-error-message").unwrap_or_else(|| {
                "Access to this repo is restricted: upstream refused the token".into()
            }),
        }),
        other => Err(MetaError::Unreachable(format!(
            "{named}: HTTP {other} to an access check"
        ))),
    }
}
