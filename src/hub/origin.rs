//! `--verify-origin`: the bytes from a mirror, the commit and every hash
//! from the origin (huggingface.co unless named).
//!
//! Mirrors are run by third parties. Checking a file against the hash the
//! same mirror lists proves only that the mirror is consistent with itself;
//! a broken or compromised one passes. So the origin's API answers the repo
//! info and the file list (the commit, the sha256 of LFS files, the git
//! sha1 of the others) while the file requests go to the endpoints as
//! usual. The origin is asked nothing else: no resolve, no storage URL, so
//! its bandwidth is not what the user pays for. The token goes to it, as to
//! any endpoint the user named.

use super::api::{Api, ApiError, RepoInfo};
use super::endpoint::Endpoint;
use super::events::{Events, Verdict};
use super::messages::info_error;
use super::run::{Options, failed};

/// The origin's repo info, held against what the endpoint (`mirror`,
/// answering as `ep`) said: the run stops when the origin names no commit,
/// or another commit than the endpoint does for the same revision.
pub async fn info(
    opts: &Options,
    origin: &Endpoint,
    api: &Api,
    ep: &Endpoint,
    mirror: &RepoInfo,
    ev: &dyn Events,
) -> Result<RepoInfo, Verdict> {
    let info = match api.info(opts.repo_type, &opts.repo, &opts.revision).await {
        Ok(i) => i,
        Err(ApiError::Interrupted) => return Err(Verdict::Interrupted),
        Err(e) => {
            let why = info_error(opts, origin, &e);
            return Err(failed(ev, &format!("--verify-origin: {why}")));
        }
    };
    let Some(commit) = info.sha.as_deref() else {
        let msg = format!(
            "--verify-origin: {} names no commit for {} ({}), so it cannot vouch for the files; nothing was downloaded.",
            origin.as_str(),
            opts.repo,
            opts.revision
        );
        return Err(failed(ev, &msg));
    };
    if let Some(served) = mirror.sha.as_deref()
        && served != commit
    {
        let msg = format!(
            "{} serves commit {served} for {} ({}), but the origin {} names {commit}: the mirror is behind or altered. Nothing was downloaded; try again later, or without that endpoint.",
            ep.as_str(),
            opts.repo,
            opts.revision,
            origin.as_str()
        );
        return Err(failed(ev, &msg));
    }
    Ok(info)
}
