//! What upstream says of a repo: its info at a revision (the commit, gated
//! or private, the raw document clients get) and a commit's file list
//! (sizes and hashes), fetched with the hub layer's API client (retries,
//! the token only to upstream's origin) and kept for the time-to-live.
//!
//! The client's `Authorization` is part of every key (as a sha256 of it,
//! never the token itself): a private repo's info fetched with one user's
//! token is never given to another.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, StatusCode};
use sha2::Digest as _;

use super::ttl::TtlMap;
use crate::hub::api::{Api, ApiError, MAX_FILES, RepoFile, RepoInfo};
use crate::hub::{RepoId, RepoType};
use crate::serve::cache::Kind;

/// The client's credentials, for one request: sent to upstream only.
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<HeaderValue>,
}

/// A sha256 of the `Authorization` header: what keys answers and access.
pub type AuthKey = Option<[u8; 32]>;

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.header.is_some() {
            "Auth(<redacted>)"
        } else {
            "Auth(none)"
        })
    }
}

impl Auth {
    /// The request's `Authorization` header, if any; `None` when it cannot
    /// be sent on (control characters).
    pub fn from_header(value: Option<&str>) -> Option<Auth> {
        let Some(v) = value.filter(|v| !v.is_empty()) else {
            return Some(Auth::default());
        };
        let mut h = HeaderValue::from_str(v).ok()?;
        h.set_sensitive(true);
        Some(Auth { header: Some(h) })
    }

    pub fn key(&self) -> AuthKey {
        self.header
            .as_ref()
            .map(|h| sha2::Sha256::digest(h.as_bytes()).into())
    }

    /// The headers for upstream (marked sensitive: never in debug output).
    pub fn headers(&self) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(h) = &self.header {
            m.insert(AUTHORIZATION, h.clone());
        }
        m
    }
}

/// Why upstream gave no answer to pass on.
#[derive(Clone, Debug)]
pub enum MetaError {
    /// An error status: given to the client as upstream worded it.
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Upstream could not be reached, or answered something unusable.
    Unreachable(String),
}

impl MetaError {
    pub fn from_api(e: ApiError) -> MetaError {
        match e {
            ApiError::Status {
                status,
                code,
                message,
                ..
            } => MetaError::Status {
                status,
                code,
                message,
            },
            ApiError::Interrupted => MetaError::Unreachable("the server is stopping".into()),
            other => MetaError::Unreachable(other.to_string()),
        }
    }
}

impl From<Kind> for RepoType {
    fn from(k: Kind) -> RepoType {
        match k {
            Kind::Model => RepoType::Model,
            Kind::Dataset => RepoType::Dataset,
        }
    }
}

type InfoKey = (Kind, String, String, AuthKey);
type ListKey = (Kind, String, String, AuthKey);

/// Upstream's metadata, kept for the time-to-live.
pub struct Meta {
    infos: TtlMap<InfoKey, Result<Arc<RepoInfo>, MetaError>>,
    lists: TtlMap<ListKey, Arc<Vec<RepoFile>>>,
}

impl Meta {
    pub fn new(ttl: std::time::Duration) -> Meta {
        Meta {
            infos: TtlMap::new(ttl),
            lists: TtlMap::new(ttl),
        }
    }

    /// Repo info at `rev`. Error statuses are kept too (a missing repo
    /// asked for by every client costs upstream one request per TTL).
    pub async fn info(
        &self,
        api: &Api,
        (kind, repo): (Kind, &RepoId),
        rev: &str,
        auth: &Auth,
    ) -> Result<Arc<RepoInfo>, MetaError> {
        let key = (kind, repo.to_string(), rev.to_string(), auth.key());
        if let Some(hit) = self.infos.get(&key) {
            return hit;
        }
        let got = api
            .info(kind.into(), repo, rev)
            .await
            .map(Arc::new)
            .map_err(MetaError::from_api);
        let got = got.and_then(|i| match i.sha.as_deref() {
            Some(c) if crate::serve::cache::is_commit(c) => Ok(i),
            _ => Err(MetaError::Unreachable(
                "upstream's repo info names no commit".into(),
            )),
        });
        if !matches!(got, Err(MetaError::Unreachable(_))) {
            self.infos.put(key, got.clone());
        }
        got
    }

    /// Every file of `commit` (the recursive tree, all pages).
    pub async fn files(
        &self,
        api: &Api,
        (kind, repo): (Kind, &RepoId),
        commit: &str,
        auth: &Auth,
    ) -> Result<Arc<Vec<RepoFile>>, MetaError> {
        let key = (kind, repo.to_string(), commit.to_string(), auth.key());
        if let Some(hit) = self.lists.get(&key) {
            return Ok(hit);
        }
        let files = api
            .tree(kind.into(), repo, commit, MAX_FILES, |_| {})
            .await
            .map(Arc::new)
            .map_err(MetaError::from_api)?;
        self.lists.put(key, files.clone());
        Ok(files)
    }
}

/// The answer a client gets for an upstream error status, in upstream's
/// words (so huggingface_hub raises what it would raise against it).
pub fn status_response(e: &MetaError) -> crate::serve::http::Response {
    use crate::serve::http::Response;
    match e {
        MetaError::Status {
            status,
            code,
            message,
        } => {
            let body = serde_json::json!({ "error": message }).to_string();
            let status = StatusCode::from_u16(*status).map_or(502, |s| s.as_u16());
            let mut r = Response::new(status, "application/json; charset=utf-8", body.into_bytes())
                .header("X-Error-Message", message.clone());
            if let Some(c) = code {
                r = r.header("X-Error-Code", c.clone());
            }
            if status == 401 {
                r = r.header(
                    "WWW-Authenticate",
                    "Bearer realm=\"Authentication required\", charset=\"UTF-8\"",
                );
            }
            r
        }
        MetaError::Unreachable(why) => {
            let msg = format!("upstream unreachable: {why}");
            let body = serde_json::json!({ "error": msg }).to_string();
            Response::new(502, "application/json; charset=utf-8", body.into_bytes())
        }
    }
}
