//! Whether a file is read natively from Xet storage, and with which token.
//!
//! For an LFS file (Xet files are LFS files to the listing), the resolve
//! URL is asked once *without following* its redirect: the answer names the
//! file's Xet id (`X-Xet-Hash`) and the token route (`Link: <…>;
//! rel="xet-auth"`, or `X-Xet-Refresh-Route`). The route is asked for a
//! CAS token once per run and route (a token serves a repo's revision); a
//! route that answers 404 or 501 (a mirror that does not serve Xet) means
//! the plain path, said once at `-v`. Anything unexpected also means the
//! plain path: it works for every file under 50 GB, and reports errors in
//! its own words.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use http::header::HeaderValue;
use tokio::sync::Mutex;
use url::Url;

use super::api::{RepoFile, link_rel};
use super::file::FileCtx;
use crate::client::request::send_once;
use crate::client::{ByteRange, Credentials, Request, SafeUrl};
use crate::xet::XetSource;
use crate::xet::auth::{AuthError, CasAuth, TokenSource};
use crate::xet::hash::XetHash;

/// Tokens by route: `None` once the route refused.
#[derive(Default)]
pub struct XetTokens {
    by_route: Mutex<HashMap<Url, Option<Arc<CasAuth>>>>,
}

/// The Xet source for `f`, when its endpoint offers one.
pub async fn choose(ctx: &FileCtx, f: &RepoFile, resolve: &Url) -> Option<XetSource> {
    if !ctx.opts.xet || !f.lfs || f.size == 0 {
        return None;
    }
    let (file_id, route) = tokio::select! {
        found = xet_headers(ctx, resolve) => found?,
        _ = ctx.cancel.cancelled() => return None,
    };
    let auth = token_for(ctx, route).await?;
    tracing::info!("{}: reading Xet storage natively", f.path);
    Some(XetSource { file_id, auth })
}

/// The Xet id and token route in `resolve`'s answer, not followed.
async fn xet_headers(ctx: &FileCtx, resolve: &Url) -> Option<(XetHash, Url)> {
    let creds = Credentials::new(resolve, &ctx.creds).ok()?;
    let named = SafeUrl::from(resolve);
    let req = Request {
        url: resolve,
        credentials: &creds,
        // A server that sends the file itself sends one byte of it.
        range: Some(ByteRange {
            start: 0,
            end: Some(1),
        }),
        if_range: None,
        named: &named,
    };
    let mut conn = None;
    let answer = send_once(&ctx.net, req, &mut conn).await.ok()?;
    let h = answer.headers();
    let id = h
        .get(HeaderName::from_static("x-xet-hash"))
        .and_then(|v| v.to_str().ok())
        .and_then(XetHash::parse)?;
    let route = link_rel(h, resolve, "xet-auth").or_else(|| {
        h.get(HeaderName::from_static("x-xet-refresh-route"))
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|r| resolve.join(r).ok())
    })?;
    Some((id, route))
}

/// The token for `route`: asked once per run.
async fn token_for(ctx: &FileCtx, route: Url) -> Option<Arc<CasAuth>> {
    let mut cache = ctx.xet.by_route.lock().await;
    if let Some(known) = cache.get(&route) {
        return known.clone();
    }
    let endpoint = ctx.endpoints[0].url();
    let got = match TokenSource::new(
        ctx.net.clone(),
        route.clone(),
        endpoint,
        &ctx.creds,
        ctx.retry.clone(),
        ctx.cancel.clone(),
    ) {
        Ok(source) => CasAuth::start(source).await,
        Err(e) => Err(e),
    };
    let auth = match got {
        Ok(a) => Some(a),
        Err(AuthError::Interrupted) => return None,
        Err(e @ AuthError::Unavailable { .. }) => {
            tracing::info!("{e}; using the plain path");
            None
        }
        Err(e) => {
            tracing::warn!("no Xet token ({e}); using the plain path");
            None
        }
    };
    cache.insert(route, auth.clone());
    auth
}
