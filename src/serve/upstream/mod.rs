//! `hfd serve --upstream URL`: what the cache lacks is fetched from an
//! upstream Hub (or mirror) and served while it arrives.
//!
//! - [`meta`]: repo info and commit file lists from upstream, kept for a
//!   short time-to-live ([`ttl`]) and keyed by a hash of the client's
//!   `Authorization`;
//! - [`remote`]: a file list in the shapes the routes page and answer;
//! - [`fetch`]: one upstream download per missing blob however many
//!   clients ask (single flight), by the engine, into the cache layout;
//! - [`gate`]: a gated or private repo's files only to clients whose token
//!   upstream accepts.
//!
//! Every request asks upstream (or the TTL cache) what the revision is:
//! a branch that moved upstream is followed. A file whose blob is in the
//! cache is served from it (no upstream byte); the others are fetched. If
//! upstream cannot be reached, the cache answers as `--offline` would,
//! except for repos known to be gated or private (refused with 502 rather
//! than given to anyone). The client's token goes to upstream's origin
//! only and is never written anywhere.

mod fetch;
mod gate;
mod meta;
mod remote;
mod restricted;
mod ttl;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cache::{FileMeta, Kind, valid_repo_id};
use super::error::ApiError;
use super::growing::{End, Growing};
use super::http::{Body, Request, Response};
use super::routes::{self, Ctx, Query};
use crate::client::RetryPolicy;
use crate::hub::api::{Api, RepoInfo};
use crate::hub::cache::RepoCache;
use crate::hub::{Endpoint, RepoId};
use crate::net::{Net, NetOptions};
use meta::{Auth, Meta, MetaError, status_response};
use remote::RemoteTree;

/// How to reach upstream, and how long to keep what it says.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    pub endpoint: Endpoint,
    pub net: NetOptions,
    pub retry: RetryPolicy,
    /// How long repo info, file lists and access verdicts are kept.
    pub ttl: Duration,
    /// Connections per file fetched.
    pub connections: usize,
    /// The longest a client waits for the next byte of a file arriving.
    pub wait: Duration,
}

impl UpstreamOptions {
    pub fn new(endpoint: Endpoint, net: NetOptions) -> UpstreamOptions {
        UpstreamOptions {
            endpoint,
            net,
            retry: RetryPolicy::default(),
            ttl: Duration::from_secs(30),
            connections: 8,
            wait: Duration::from_secs(60),
        }
    }
}

/// What the upstream side shares across requests and flights.
pub(crate) struct Inner {
    endpoint: Endpoint,
    net: Net,
    retry: RetryPolicy,
    connections: usize,
    wait: Duration,
    cache_dir: PathBuf,
    /// Cancelled when the server stops: flights save their progress.
    stop: CancellationToken,
    meta: Meta,
    gate: gate::Gate,
    flights: fetch::Flights,
    /// Repos upstream said were gated or private.
    restricted: restricted::Restricted,
}

/// The upstream side of a server.
pub struct Upstream(Arc<Inner>);

/// Why a request gets no answer from the upstream side.
enum Miss {
    /// The cache answers, as offline.
    Local,
    Answer(Response),
}

impl From<ApiError> for Miss {
    fn from(e: ApiError) -> Miss {
        Miss::Answer(e.response())
    }
}

type Step<T> = Result<T, Miss>;

impl Upstream {
    pub fn new(opts: UpstreamOptions, cache_dir: PathBuf) -> Upstream {
        Upstream(Arc::new(Inner {
            net: Net::new(opts.net),
            endpoint: opts.endpoint,
            retry: opts.retry,
            connections: opts.connections.clamp(1, crate::engine::MAX_CONNECTIONS),
            wait: opts.wait,
            stop: CancellationToken::new(),
            meta: Meta::new(opts.ttl),
            gate: gate::Gate::new(opts.ttl),
            flights: fetch::Flights::default(),
            restricted: restricted::Restricted::new(&cache_dir),
            cache_dir,
        }))
    }

    /// Stops the flights and waits (at most `limit`) for them to save
    /// what they received.
    pub async fn stop(&self, limit: Duration) {
        self.0.stop.cancel();
        self.0.flights.drain(limit).await;
    }

    /// Upstream file downloads started so far.
    pub fn fetches_started(&self) -> u64 {
        self.0.flights.started.load(Relaxed)
    }

    /// The answer to `req`, from upstream where the cache lacks it.
    pub async fn answer(&self, ctx: &Ctx<'_>, req: &Request) -> Response {
        match self.route(ctx, req).await {
            Ok(r) | Err(Miss::Answer(r)) => r,
            Err(Miss::Local) => routes::answer(ctx, req),
        }
    }

    async fn route(&self, ctx: &Ctx<'_>, req: &Request) -> Step<Response> {
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let path = path.strip_prefix('/').ok_or(Miss::Local)?;
        let segs = routes::decode_segments(path).map_err(|_| Miss::Local)?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let auth = Auth::from_header(req.header("authorization"))
            .ok_or(ApiError::BadRequest("Invalid Authorization header"))?;
        let q = Query::parse(query);
        if let ["api", plural, rest @ ..] = segs.as_slice()
            && let Some(kind) = Kind::from_plural(plural)
        {
            return self.api(ctx, req, (kind, rest), &q, &auth).await;
        }
        match segs.as_slice() {
            ["datasets", rest @ ..] => self.resolve(ctx, req, Kind::Dataset, rest, &auth).await,
            rest => self.resolve(ctx, req, Kind::Model, rest, &auth).await,
        }
    }

    fn api_client(&self, auth: &Auth) -> Api {
        let i = &self.0;
        Api::new(
            i.net.clone(),
            i.endpoint.clone(),
            auth.headers(),
            i.retry.clone(),
            i.stop.clone(),
        )
    }

    /// Repo info at `rev` from upstream; an error status is the answer,
    /// an unreachable upstream leaves it to the cache (unless the repo is
    /// known to be restricted).
    async fn info(&self, kind: Kind, repo: &RepoId, rev: &str, auth: &Auth) -> Step<Arc<RepoInfo>> {
        let api = self.api_client(auth);
        match self.0.meta.info(&api, (kind, repo), rev, auth).await {
            Ok(i) => {
                self.0.restricted.set(kind, repo, i.gated || i.private);
                Ok(i)
            }
            Err(e @ MetaError::Status { .. }) => Err(Miss::Answer(status_response(&e))),
            Err(e @ MetaError::Unreachable(_)) => {
                tracing::warn!("{repo}: {e:?}");
                if self.0.restricted.is(kind, repo) {
                    Err(Miss::Answer(status_response(&e)))
                } else {
                    Err(Miss::Local)
                }
            }
        }
    }

    async fn files(
        &self,
        kind: Kind,
        repo: &RepoId,
        commit: &str,
        auth: &Auth,
    ) -> Step<Arc<Vec<crate::hub::api::RepoFile>>> {
        let api = self.api_client(auth);
        self.0
            .meta
            .files(&api, (kind, repo), commit, auth)
            .await
            .map_err(|e| Miss::Answer(status_response(&e)))
    }

    async fn api(
        &self,
        ctx: &Ctx<'_>,
        req: &Request,
        (kind, segs): (Kind, &[&str]),
        q: &Query,
        auth: &Auth,
    ) -> Step<Response> {
        let (id, rest) = split_api_id(segs).ok_or(Miss::Local)?;
        let repo = parse_repo(&id)?;
        let post = rest.first() == Some(&"paths-info");
        if post != (req.method == "POST") || !matches!(req.method.as_str(), "GET" | "HEAD" | "POST")
        {
            return Err(Miss::Local);
        }
        let rev = match rest {
            [] => "main",
            ["revision" | "paths-info", rev] | ["tree" | "treesize", rev, ..] => rev,
            _ => return Err(Miss::Local),
        };
        let info = self.info(kind, &repo, rev, auth).await?;
        if rest.len() <= 2 && matches!(rest.first(), None | Some(&"revision")) {
            return Ok(Response::new(
                200,
                "application/json; charset=utf-8",
                info.raw.to_vec(),
            ));
        }
        let commit = info.sha.as_deref().unwrap_or_default();
        let files = self.files(kind, &repo, commit, auth).await?;
        let tree = RemoteTree::new(&files);
        match rest {
            ["tree", _, path @ ..] => {
                let under = path.join("/");
                let nodes = tree
                    .list(&under, q.flag("recursive"))
                    .ok_or(ApiError::EntryNotFound)?;
                Ok(routes::tree_page(ctx, (kind, &id), rev, &under, q, &nodes)?)
            }
            ["treesize", _, path @ ..] => {
                let under = path.join("/");
                let nodes = tree.list(&under, true).ok_or(ApiError::EntryNotFound)?;
                Ok(routes::treesize(&under, &nodes))
            }
            _ => {
                let paths = super::listing::paths_from_body(&req.body)?;
                Ok(routes::paths_info(&tree.paths_info(&paths)))
            }
        }
    }

    async fn resolve(
        &self,
        ctx: &Ctx<'_>,
        req: &Request,
        kind: Kind,
        segs: &[&str],
        auth: &Auth,
    ) -> Step<Response> {
        let t = Target::of(req, segs).ok_or(Miss::Local)?;
        let repo = parse_repo(&t.id)?;
        let info = self.info(kind, &repo, t.rev, auth).await?;
        let commit = info.sha.clone().unwrap_or_default();
        let url = self
            .0
            .endpoint
            .resolve_url(kind.into(), &repo, &commit, &t.path)
            .map_err(|_| Miss::Local)?;
        let restricted = info.gated || info.private;
        if restricted {
            let gate = &self.0.gate;
            if let Err(e) = gate.check(&self.0.net, (kind, &t.id), &url, auth).await {
                return Err(Miss::Answer(status_response(&e)));
            }
        }
        let listing = self.files(kind, &repo, &commit, auth).await?;
        let file = listing
            .iter()
            .find(|f| f.path == t.path)
            .cloned()
            .ok_or(ApiError::EntryNotFound)?;
        let meta = remote::meta_of(&file).ok_or_else(|| {
            Miss::Answer(status_response(&MetaError::Unreachable(
                "upstream lists no hash for this file; it cannot be cached".into(),
            )))
        })?;
        let cache = RepoCache::open(&self.0.cache_dir, kind.into(), &repo).map_err(internal)?;
        if restricted {
            self.0.restricted.set(kind, &repo, true);
        }
        if cache.has_blob(&meta.etag, meta.size) {
            fetch::link_existing(&cache, (t.rev, &commit), &t.path, &meta.etag);
            let snap = ctx
                .cache
                .repo(kind, &t.id)
                .and_then(|r| r.snapshot(&commit).ok());
            let blob = snap.and_then(|s| s.open(&t.path)).ok_or(Miss::Local)?;
            return Ok(routes::file_response(req, t.rev, &commit, blob)?);
        }
        let job = fetch::Job {
            repo_type: kind.into(),
            repo,
            rev: t.rev.to_string(),
            commit,
            blob: meta.etag.clone(),
            file,
            listing,
            auth: if restricted {
                auth.clone()
            } else {
                Auth::default()
            },
        };
        self.while_it_arrives(req, job, &meta).await
    }

    /// Answers from the one fetch of `job`'s file (started now or already
    /// under way), with the bytes as they are written.
    async fn while_it_arrives(
        &self,
        req: &Request,
        job: fetch::Job,
        meta: &FileMeta,
    ) -> Step<Response> {
        let (rev, commit) = (job.rev.clone(), job.commit.clone());
        let flight = self
            .0
            .flights
            .get_or_start(&self.0, job)
            .map_err(internal)?;
        let head = routes::file_head(req, &rev, &commit, meta, flight.started)?;
        let mut body = Growing {
            files: flight.files(),
            written: flight.written(),
            end: flight.end(),
            offset: head.start,
            len: head.count,
            wait: self.0.wait,
        };
        if let Err(why) = first_news(&mut body, self.0.wait).await {
            return Err(Miss::Answer(status_response(&MetaError::Unreachable(why))));
        }
        Ok(Response {
            body: Body::Growing(body),
            ..head.resp
        })
    }
}

/// The file a resolve request names:
/// `{repo}/resolve/{rev}/{path}`, where the repo id has one or two parts.
struct Target<'a> {
    id: String,
    rev: &'a str,
    path: String,
}

impl<'a> Target<'a> {
    /// `None` for anything this module does not answer (other methods,
    /// other routes, an empty path or an escaped `/` in one part).
    fn of(req: &Request, segs: &[&'a str]) -> Option<Target<'a>> {
        let at = match segs {
            [_, _, "resolve", ..] => 2,
            [_, "resolve", ..] => 1,
            _ => return None,
        };
        let [rev, path @ ..] = &segs[at + 1..] else {
            return None;
        };
        if !matches!(req.method.as_str(), "GET" | "HEAD")
            || path.is_empty()
            || path.iter().any(|p| p.contains('/'))
        {
            return None;
        }
        Some(Target {
            id: segs[..at].join("/"),
            rev,
            path: path.join("/"),
        })
    }
}

/// Waits (at most `wait`) until the flight has started writing or ended,
/// so a fetch that fails at once is an error status, not a cut body.
async fn first_news(g: &mut Growing, wait: Duration) -> Result<(), String> {
    let news = async {
        // Once the writer's side is gone only the end can bring news: a
        // closed channel answers at once, and must not be polled again.
        let mut writing = true;
        loop {
            if let End::Failed(why) = &*g.end.borrow() {
                return Err(why.clone());
            }
            if *g.end.borrow() == End::Done || g.written.borrow().generation > 0 {
                return Ok(());
            }
            tokio::select! {
                r = g.written.changed(), if writing => writing = r.is_ok(),
                r = g.end.changed() => if r.is_err() {
                    return Err("the upstream download went away".to_string());
                },
            }
        }
    };
    tokio::time::timeout(wait, news)
        .await
        .unwrap_or_else(|_| Err("upstream sent nothing in time".into()))
}

fn internal(e: String) -> Miss {
    tracing::warn!("{e}");
    Miss::Answer(status_response(&MetaError::Unreachable(e)))
}

fn parse_repo(id: &str) -> Step<RepoId> {
    if !valid_repo_id(id) {
        return Err(Miss::Answer(ApiError::RepoNotFound.response()));
    }
    RepoId::parse(id).map_err(|_| Miss::Answer(ApiError::RepoNotFound.response()))
}

/// The words after `/api/{models|datasets}/` that name a route.
const API_ROUTES: [&str; 4] = ["revision", "tree", "treesize", "paths-info"];

/// The repo id at the start of an API path and the rest: two parts
/// (`org/name`) unless the second word is a route and the third is not
/// (`gpt2/tree/main`).
fn split_api_id<'s>(segs: &'s [&'s str]) -> Option<(String, &'s [&'s str])> {
    match segs {
        [] => None,
        [one] => Some((one.to_string(), &[])),
        [a, b, rest @ ..] => {
            let one_part =
                API_ROUTES.contains(b) && rest.first().is_none_or(|c| !API_ROUTES.contains(c));
            if one_part {
                Some((a.to_string(), &segs[1..]))
            } else {
                Some((format!("{a}/{b}"), rest))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_split_into_id_and_route() {
        let s = |p: &'static str| {
            let v: Vec<&str> = p.split('/').collect();
            let (id, rest) = split_api_id(&v).unwrap();
            (id, rest.join("/"))
        };
        assert_eq!(s("org/name"), ("org/name".into(), String::new()));
        assert_eq!(s("gpt2"), ("gpt2".into(), String::new()));
        assert_eq!(s("gpt2/tree/main"), ("gpt2".into(), "tree/main".into()));
        assert_eq!(s("gpt2/revision/v1"), ("gpt2".into(), "revision/v1".into()));
        assert_eq!(
            s("org/name/tree/main/sub"),
            ("org/name".into(), "tree/main/sub".into())
        );
        assert_eq!(
            s("org/name/paths-info/main"),
            ("org/name".into(), "paths-info/main".into())
        );
    }
}
