//! What hfd says when something fails, in words a user can act on (and
//! hfd.sh's words where its users' scripts look for them).

use super::api::ApiError;
use super::endpoint::{DEFAULT_ENDPOINT, Endpoint, RepoType, hub_page};
use super::events::FileError;
use super::run::Options;
use crate::engine::Error;
use crate::storage::StorageError;
use crate::storage::control_file::ControlError;

pub fn gated_message(opts: &Options) -> String {
    format!(
        "{} is gated: the repository requires authentication. Pass --hf_token or set HF_TOKEN (a username is not needed), and accept the repo's terms with that account on {}. Tokens: {DEFAULT_ENDPOINT}/settings/tokens",
        opts.repo,
        hub_page(opts.repo_type, &opts.repo)
    )
}

/// One line for a failed repo-info call to `ep`.
pub fn info_error(opts: &Options, ep: &Endpoint, e: &ApiError) -> String {
    let ApiError::Status {
        url,
        status,
        code,
        message,
    } = e
    else {
        return match e {
            ApiError::GaveUp { detail, .. } => format!(
                "Cannot reach {}: {detail}. Check the network, the endpoint (HF_ENDPOINT, --endpoint) and the proxy settings.",
                ep.as_str()
            ),
            other => format!("Failed to fetch metadata: {other}"),
        };
    };
    let code = code.as_deref().unwrap_or("");
    let dataset_hint = if opts.repo_type == RepoType::Model {
        " (for a dataset, add --dataset)"
    } else {
        ""
    };
    match (*status, code) {
        (_, "RevisionNotFound") => format!(
            "Revision {:?} not found in {} {}.",
            opts.revision,
            opts.repo_type.name(),
            opts.repo
        ),
        (_, "GatedRepo") if opts.token.is_none() => gated_message(opts),
        (_, "GatedRepo") => format!(
            "{} is gated and this token has no access yet: accept the repo's terms on {} with the token's account.",
            opts.repo,
            hub_page(opts.repo_type, &opts.repo)
        ),
        (401, _) if message.contains("Invalid credentials in Authorization header") => format!(
            "The token was rejected by {}: check --hf_token / HF_TOKEN.",
            ep.as_str()
        ),
        (401 | 403 | 404, _) if opts.token.is_none() => format!(
            "Repository {} not found on {}{dataset_hint}. If it is private or gated, pass --hf_token or set HF_TOKEN.",
            opts.repo,
            ep.as_str()
        ),
        (401 | 403 | 404, _) => format!(
            "Repository {} not found on {}{dataset_hint}, or the token has no access to it.",
            opts.repo,
            ep.as_str()
        ),
        _ => format!(
            "Failed to fetch metadata from {url}. HTTP status code: {status}.{}",
            if message.is_empty() {
                String::new()
            } else {
                format!(" {message}")
            }
        ),
    }
}

/// What an engine error means for one file of the repo, fetched from
/// `endpoints` (in the order of the download's sources).
pub fn file_error(opts: &Options, e: &Error, endpoints: &[&Endpoint]) -> FileError {
    match e {
        Error::NotFound { status, url } => FileError::NotFound {
            endpoint: endpoints
                .get(url.index)
                .or(endpoints.first())
                .map_or_else(String::new, |ep| ep.as_str().to_string()),
            status: *status,
        },
        Error::Auth { status, .. } => FileError::Denied {
            status: *status,
            repo: opts.repo.to_string(),
            page: hub_page(opts.repo_type, &opts.repo),
        },
        Error::ChecksumMismatch { algo, .. } if opts.verify_origin.is_some() => FileError::Origin {
            algo,
            origin: opts
                .verify_origin
                .as_ref()
                .map_or_else(String::new, |o| o.as_str().to_string()),
        },
        Error::ChecksumMismatch { algo, .. } => FileError::Checksum {
            algo,
            attempts: super::file::ATTEMPTS_PER_FILE,
        },
        Error::Storage(StorageError::Control(ControlError::Locked { .. })) => FileError::Busy,
        other => FileError::Other(other.to_string()),
    }
}
