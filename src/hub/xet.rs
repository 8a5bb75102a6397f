//! Whether a file is read natively from Xet storage, and with which token.
//!
//! The endpoint's Xet read-token route for the revision
//! (`{endpoint}/api/{models|datasets}/{repo}/xet-read-token/{rev}`) is
//! asked once per run: a token (and the CAS URL) means the endpoint serves
//! Xet; 404 or 501 (a mirror that does not) means the plain path for every
//! file, said once at `-v`, and no further request. With a token, an LFS
//! file's resolve URL is asked once *without following* its redirect: its
//! answer names the file's Xet id (`X-Xet-Hash`); a file without one takes
//! the plain path. Anything unexpected also means the plain path: it works
//! for every file under 50 GB, and reports errors in its own words.
//!
//! With several endpoints the listing's endpoint decides (its token, its
//! resolve answer's Xet id); every other endpoint whose token route grants
//! a token adds its CAS, and the file's pieces are shared among them
//! (`engine::xet`). An endpoint without Xet serves the file only if the
//! Xet path is given up for it (`hub::file`).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use tokio::sync::Mutex;
use url::Url;

use super::api::RepoFile;
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
    let auth = token_for(ctx, 0).await?;
    let file_id = tokio::select! {
        found = xet_hash(ctx, resolve) => found?,
        _ = ctx.cancel.cancelled() => return None,
    };
    // The other endpoints that grant a token share the file's xorb ranges.
    let mut mirrors = Vec::new();
    for i in 1..ctx.endpoints.len() {
        if let Some(a) = token_for(ctx, i).await {
            mirrors.push(a);
        }
    }
    tracing::info!(
        "{}: reading Xet storage natively ({} CAS)",
        f.path,
        1 + mirrors.len()
    );
    Some(XetSource {
        file_id,
        auth,
        mirrors,
        previous: None,
    })
}

/// The Xet id in `resolve`'s answer, not followed.
async fn xet_hash(ctx: &FileCtx, resolve: &Url) -> Option<XetHash> {
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
    answer
        .headers()
        .get(HeaderName::from_static("x-xet-hash"))
        .and_then(|v| v.to_str().ok())
        .and_then(XetHash::parse)
}

/// The token of endpoint `i` (its Xet read-token route): asked once per
/// run.
async fn token_for(ctx: &FileCtx, i: usize) -> Option<Arc<CasAuth>> {
    let ep = &ctx.endpoints[i];
    let route = ep
        .xet_token_url(ctx.opts.repo_type, &ctx.opts.repo, &ctx.url_rev)
        .ok()?;
    let mut cache = ctx.xet.by_route.lock().await;
    if let Some(known) = cache.get(&route) {
        return known.clone();
    }
    let endpoint = ep.url();
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
            tracing::info!("no Xet token ({e}); using the plain path");
            None
        }
    };
    cache.insert(route, auth.clone());
    auth
}
