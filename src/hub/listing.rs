//! The repo's files at one commit: which ones, with sizes and hashes.
//!
//! A re-run whose revision still names the same commit reuses the list it
//! kept (`.hfd/files.json`); otherwise `siblings` of the repo info when they
//! are complete (their sizes add up to the `treesize`), else the paginated
//! recursive tree.

use super::api::{Api, ApiError, MAX_FILES, RepoFile, RepoInfo};
use super::events::{Event, Events};
use super::run::Options;
use super::state::{Listing, LocalDir};

/// The complete file list of the revision; tells `events` what was listed.
pub async fn file_list(
    opts: &Options,
    api: &Api,
    local: &LocalDir,
    info: &RepoInfo,
    events: &dyn Events,
) -> Result<Listing, ApiError> {
    let t = opts.repo_type.name();
    // A kept list may have come from a mirror: --verify-origin lists anew.
    if opts.verify_origin.is_none()
        && let Some(sha) = &info.sha
        && let Some(l) = local.load_listing()
        && l.commit == *sha
        && l.repo == opts.repo.as_str()
        && l.repo_type == t
    {
        return Ok(l);
    }
    let files = list_files(opts, api, info, Some(events)).await?;
    let (n, bytes) = files
        .iter()
        .filter(|f| opts.filter.selects(&f.path))
        .fold((0usize, 0u64), |(n, b), f| {
            (n + 1, b.saturating_add(f.size))
        });
    events.event(Event::Listed { files: n, bytes });
    let listing = Listing::new(
        opts.repo.as_str(),
        t,
        info.sha.as_deref().unwrap_or(""),
        files,
    );
    if info.sha.is_some()
        && let Err(e) = local.save_listing(&listing)
    {
        events.event(Event::Warning(&e));
    }
    Ok(listing)
}

/// Every file of the revision on `api`'s endpoint: `siblings` when complete
/// (its sizes add up to the `treesize`), else the paginated tree, its
/// progress told to `events` when given.
pub async fn list_files(
    opts: &Options,
    api: &Api,
    info: &RepoInfo,
    events: Option<&dyn Events>,
) -> Result<Vec<RepoFile>, ApiError> {
    if info.siblings_detailed && !info.siblings.is_empty() {
        let sum = info
            .siblings
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size));
        let treesize = api
            .treesize(opts.repo_type, &opts.repo, &opts.revision)
            .await;
        if treesize == Some(sum) {
            return Ok(info.siblings.clone());
        }
    }
    let progress = |scanned| {
        if let Some(ev) = events {
            ev.event(Event::Listing { scanned });
        }
    };
    let r = api
        .tree(
            opts.repo_type,
            &opts.repo,
            &opts.revision,
            MAX_FILES,
            progress,
        )
        .await;
    if let Some(ev) = events {
        ev.event(Event::ListingEnded);
    }
    r
}
