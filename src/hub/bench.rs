//! `hfd REPO --bench`: which Hub endpoint serves this repo fastest, now.
//!
//! Each endpoint lists the repo itself, because a mirror can lag behind the
//! Hub or lack the repo, and that belongs in its row. Its largest selected
//! file, resolved by the commit that endpoint names, is then measured the way
//! `hfget --bench` measures a URL ([`crate::mirrors`]): the bytes users wait
//! for are the big LFS files behind the CDN, not the API. Endpoints are
//! measured one after another so they do not share the link, and nothing is
//! written: no local dir, no `.hfd/`.

use http::HeaderMap;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::api::{Api, ApiError, RepoFile};
use super::endpoint::{DEFAULT_ENDPOINT, Endpoint};
use super::listing::list_files;
use super::messages::{gated_message, info_error};
use super::run::{Options, credentials};
use crate::engine::RetryPolicy;
use crate::mirrors::{self, BenchOptions, BenchReport, SourceReport};
use crate::net::Net;
use crate::ui::human;

/// The endpoints measured when `--endpoint` is not given: the one the user
/// set, the Hub, and the best-known public mirror.
pub const DEFAULT_BENCH_ENDPOINTS: [&str; 2] = [DEFAULT_ENDPOINT, "https://hf-mirror.com"];

/// An endpoint to measure, and whether it may have the token: only one the
/// user named (`--endpoint`, `HF_ENDPOINT`) or the Hub itself. A mirror on
/// the default list never sees it: its operator was never chosen by the user.
#[derive(Clone, Debug)]
pub struct BenchEndpoint {
    pub endpoint: Endpoint,
    pub trusted: bool,
}

/// A listing call that fails this often is reported rather than waited on:
/// the row says what went wrong, and the other endpoints get measured.
const LISTING_TRIES: u32 = 3;

/// What is measured on one endpoint.
pub struct Target {
    pub url: Url,
    pub file: RepoFile,
    /// The commit the endpoint names for the revision.
    pub commit: Option<String>,
}

/// Lists the repo on `ep` and picks its largest selected file (the first
/// in path order among equals). `creds` is empty for an endpoint the token
/// may not go to.
pub async fn target(
    opts: &Options,
    ep: &Endpoint,
    net: &Net,
    creds: &HeaderMap,
    cancel: &CancellationToken,
) -> Result<Target, String> {
    let retry = RetryPolicy {
        max_tries: LISTING_TRIES,
        ..opts.retry.clone()
    };
    let withheld = opts.token.is_some() && creds.is_empty();
    let refused = |what: &str| {
        format!(
            "{what} without a token, and hfd sends your token only to endpoints you name; to measure it with the token, name it: --endpoint {}",
            ep.as_str()
        )
    };
    // The Api sends `creds` to `ep`'s own origin only.
    let api = Api::new(
        net.clone(),
        ep.clone(),
        creds.clone(),
        retry,
        cancel.clone(),
    );
    let info = match api.info(opts.repo_type, &opts.repo, &opts.revision).await {
        Ok(i) => i,
        Err(ApiError::Status {
            status: 401 | 403 | 404,
            ..
        }) if withheld => {
            return Err(refused("the repo cannot be listed here"));
        }
        Err(e) => return Err(info_error(opts, ep, &e)),
    };
    if info.disabled {
        return Err(format!("{} is disabled on this endpoint", opts.repo));
    }
    if info.gated && withheld {
        return Err(refused("a gated repo cannot be measured here"));
    }
    if info.gated && opts.token.is_none() {
        return Err(gated_message(opts));
    }
    let files = list_files(opts, &api, &info, None)
        .await
        .map_err(|e: ApiError| format!("listing the files failed: {e}"))?;
    let file = files
        .into_iter()
        .filter(|f| opts.filter.selects(&f.path) && f.size > 0)
        .min_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)))
        .ok_or_else(|| "no selected file to measure (check --include/--exclude)".to_string())?;
    let rev = info.sha.as_deref().unwrap_or(&opts.revision);
    let url = ep.resolve_url(opts.repo_type, &opts.repo, rev, &file.path)?;
    Ok(Target {
        url,
        file,
        commit: info.sha.clone(),
    })
}

/// Measures every endpoint in turn. `announce` says on stderr what is being
/// measured (off for `--json` and `-q`).
pub async fn bench(
    opts: &Options,
    endpoints: &[BenchEndpoint],
    bench: &BenchOptions,
    net: &Net,
    announce: bool,
) -> Result<BenchReport, String> {
    let creds = credentials(opts.token.as_deref())?;
    let cancel = CancellationToken::new();
    let origin = origin_commit(opts, net, &creds, &cancel).await?;
    let mut rows = Vec::with_capacity(endpoints.len());
    for BenchEndpoint {
        endpoint: ep,
        trusted,
    } in endpoints
    {
        let label = ep.as_str();
        let creds = if *trusted {
            creds.clone()
        } else {
            HeaderMap::new()
        };
        let target = target(opts, ep, net, &creds, &cancel)
            .await
            .and_then(|t| same_commit(t, origin.as_ref()));
        match target {
            Ok(t) => {
                if announce {
                    crate::tell!("{label}: {} ({}) ...", t.file.path, human(t.file.size));
                }
                // The token goes only to the resolve URL's origin, which is
                // the endpoint's: never to the storage host it redirects to.
                let mut headers = bench.headers.clone();
                headers.extend(creds);
                let measure = BenchOptions {
                    headers,
                    ..bench.clone()
                };
                let mut row = mirrors::measure_one(net, label, &t.url, &measure).await;
                row.file = Some(t.file.path);
                rows.push(row);
            }
            Err(e) => {
                if announce {
                    crate::tell!("{label}: {e}");
                }
                rows.push(SourceReport::failed(label, e));
            }
        }
    }
    Ok(mirrors::report(rows))
}

/// With `--verify-origin`: the commit the origin names for the revision
/// (one repo-info call; the origin is named by the user, so it gets the
/// token). An endpoint serving another commit is not measured.
async fn origin_commit(
    opts: &Options,
    net: &Net,
    creds: &HeaderMap,
    cancel: &CancellationToken,
) -> Result<Option<(String, String)>, String> {
    let Some(origin) = &opts.verify_origin else {
        return Ok(None);
    };
    let api = Api::new(
        net.clone(),
        origin.clone(),
        creds.clone(),
        opts.retry.clone(),
        cancel.clone(),
    );
    let info = api
        .info(opts.repo_type, &opts.repo, &opts.revision)
        .await
        .map_err(|e| format!("--verify-origin: {}", info_error(opts, origin, &e)))?;
    let commit = info.sha.ok_or_else(|| {
        format!(
            "--verify-origin: {} names no commit for {} ({})",
            origin.as_str(),
            opts.repo,
            opts.revision
        )
    })?;
    Ok(Some((origin.as_str().to_string(), commit)))
}

/// `t`, unless its endpoint names another commit than the origin.
fn same_commit(t: Target, origin: Option<&(String, String)>) -> Result<Target, String> {
    match (origin, t.commit.as_deref()) {
        (Some((o, want)), Some(got)) if got != want => Err(format!(
            "serves commit {got}, but the origin {o} names {want}: not measured"
        )),
        _ => Ok(t),
    }
}
