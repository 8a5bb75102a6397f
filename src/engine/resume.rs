//! What a previous run left, and whether it can be continued.
//!
//! [`look`] runs before any network traffic: a control file whose data is
//! gone, a final file that is already complete, an existing file without
//! `-c`/`--allow-overwrite` (refused), a control file written for another
//! URL. [`reconcile`] runs after the probe, when the server's length and
//! validators are known: a file that changed is never continued.

use super::error::Error;
use super::finish;
use super::job::Ctx;
use super::shared::Validators;
use super::{DownloadSpec, Outcome};
use crate::extent::ExtentSet;
use crate::storage::control_file::{ControlFile, ControlState, url_hash};
use crate::storage::files::Found;

/// What the download continues from.
pub struct Start {
    /// The control file a previous run left (locked while we hold it).
    pub control: Option<ControlFile>,
    /// Its newest record, unless it cannot be used for this URL.
    pub state: Option<ControlState>,
    /// `-c`: the length of the existing file taken as a prefix.
    pub adopted: Option<u64>,
    /// What is done already: the record's ranges, or the adopted prefix.
    pub done: ExtentSet,
    /// Identifies the URL in the control file.
    pub url_id: [u8; 32],
}

/// The verdict of [`look`].
pub enum Look {
    /// Nothing to fetch.
    Complete(Outcome),
    Start(Start),
}

/// Reads what is on disk; see the module documentation.
pub async fn look(ctx: &Ctx<'_>) -> Result<Look, Error> {
    let (spec, files) = (ctx.spec, &ctx.files);
    let url_id = url_hash(spec.urls[0].as_str());
    let mut found = match files.inspect()? {
        Found::Control(c, s) => Some((c, s)),
        Found::Nothing => None,
        Found::Damaged { path, reason } => {
            tracing::warn!(
                "control file {} is unreadable ({reason}); starting over",
                path.display()
            );
            files.discard_control()?;
            files.discard_part()?;
            None
        }
    };
    if found.is_some() && files.part().is_none() {
        let (control, state) = found.take().expect("checked");
        drop(control);
        if let Some(done) = renamed_before_a_crash(ctx, &state).await {
            files.discard_control()?;
            return Ok(Look::Complete(done));
        }
        files.discard_control()?;
    }
    let adopted = match (&found, files.output()) {
        (None, Some(out)) if spec.continue_partial => Some(if out.is_file { out.len } else { 0 }),
        (None, Some(_)) if !spec.allow_overwrite => {
            return Err(Error::FileExists {
                path: spec.output.clone(),
            });
        }
        _ => None,
    };
    let (control, mut state) = match found {
        Some((c, s)) => (Some(c), Some(s)),
        None => (None, None),
    };
    if let Some(s) = &state
        && written_for_another_url(spec, s, &url_id)
    {
        if !spec.allow_restart {
            return Err(Error::CannotResume {
                path: files.part_path().to_path_buf(),
                reason: "its control file was written for another URL and the server gives no ETag to prove it is the same file; use --allow-restart to start over".into(),
            });
        }
        tracing::warn!("the control file was written for another URL; starting over");
        state = None;
    }
    if let Some(s) = &state
        && s.done.contains_range(0..s.total)
    {
        // Everything was written: no network is needed.
        let total = s.total;
        drop(control);
        ctx.progress.set_total(Some(total));
        ctx.progress.add_existing(total);
        finish::finalize(ctx, total).await?;
        let mut out = ctx.already_complete(total);
        out.resumed = total;
        return Ok(Look::Complete(out));
    }
    let done = match &state {
        Some(s) => s.done.clone(),
        None => ExtentSet::from_range(0..adopted.unwrap_or(0)),
    };
    Ok(Look::Start(Start {
        control,
        state,
        adopted,
        done,
        url_id,
    }))
}

/// A control file whose data file is gone: the run before crashed after the
/// final rename and before the control file's removal, if the final file is
/// whole (and, when a checksum is known, right). The file under the final
/// name may have been replaced since by another of the same size, so the
/// checksum has the last word.
async fn renamed_before_a_crash(ctx: &Ctx<'_>, state: &ControlState) -> Option<Outcome> {
    let spec = ctx.spec;
    let complete = state.done.contains_range(0..state.total)
        && ctx
            .files
            .output()
            .is_some_and(|o| o.is_file && o.len == state.total)
        && spec.expected_size.is_none_or(|want| want == state.total);
    if !complete {
        tracing::warn!(
            "{} has no data file; starting over",
            ctx.files.control_path().display()
        );
        return None;
    }
    if let Some(sum) = &spec.checksum
        && finish::verify_in_place(ctx.files.output_path(), sum)
            .await
            .is_err()
    {
        tracing::warn!(
            "{} does not match the checksum; its old control file {} is dropped",
            spec.output.display(),
            ctx.files.control_path().display()
        );
        return None;
    }
    Some(ctx.already_complete(state.total))
}

/// The record names another URL and no strong ETag proves it is the same file.
fn written_for_another_url(spec: &DownloadSpec, s: &ControlState, url_id: &[u8; 32]) -> bool {
    s.url_hash != *url_id
        && !spec.urls.iter().any(|u| url_hash(u.as_str()) == s.url_hash)
        && s.etag.is_none()
}

/// What the ranged download continues from, once the server's file is known.
pub struct Plan {
    pub control: Option<ControlFile>,
    pub done: ExtentSet,
    pub url_id: [u8; 32],
}

/// Holds `start` against the server's `v`: a changed file is refused (or,
/// with `--allow-restart`, started over); an adopted prefix becomes the
/// partial data; untracked partial data is thrown away.
pub fn reconcile(ctx: &Ctx<'_>, start: Start, v: &Validators) -> Result<Plan, Error> {
    let spec = ctx.spec;
    check_size(ctx, v.total)?;
    let Start {
        mut control,
        mut state,
        adopted,
        url_id,
        ..
    } = start;
    if let Some(s) = &state
        && let Some(why) = differs(s, v)
    {
        if !spec.allow_restart {
            return Err(Error::RemoteChanged {
                url: ctx.sources[0].ident(),
                detail: why,
            });
        }
        tracing::warn!("the file changed on the server ({why}); starting over");
        state = None;
    }
    let done = match (&state, adopted) {
        (Some(s), _) => s.done.clone(),
        (None, Some(len)) => adopt(ctx, len, v.total)?,
        (None, None) => {
            // Bytes of an untracked partial file cannot be trusted.
            control = None;
            ctx.files.discard_part()?;
            ExtentSet::new()
        }
    };
    Ok(Plan {
        control,
        done,
        url_id,
    })
}

/// `-c`: the existing file of `len` bytes becomes the partial data.
fn adopt(ctx: &Ctx<'_>, len: u64, total: u64) -> Result<ExtentSet, Error> {
    if len > total {
        return Err(Error::CannotResume {
            path: ctx.spec.output.clone(),
            reason: format!("it is {len} bytes long but the remote file has only {total}"),
        });
    }
    ctx.files.adopt_output()?;
    tracing::info!("-c: continuing after the {len} bytes of the existing file");
    Ok(ExtentSet::from_range(0..len))
}

/// Refuses a file whose size is not the one the caller expects.
pub fn check_size(ctx: &Ctx<'_>, total: u64) -> Result<(), Error> {
    match ctx.spec.expected_size {
        Some(want) if want != total => Err(Error::BadResponse {
            url: ctx.sources[0].ident(),
            detail: format!("the server's file is {total} bytes, but {want} were expected"),
        }),
        _ => Ok(()),
    }
}

/// How the server's file differs from the one the record was written for.
fn differs(s: &ControlState, v: &Validators) -> Option<String> {
    if s.total != v.total {
        return Some(format!("its size was {} bytes, now {}", s.total, v.total));
    }
    match (&s.etag, &v.etag) {
        (Some(a), Some(b)) if a != b => return Some(format!("its ETag was {a}, now {b}")),
        (Some(a), None) => return Some(format!("its ETag was {a}, now there is none")),
        _ => {}
    }
    match (&s.last_modified, &v.last_modified) {
        (Some(a), Some(b)) if a != b && s.etag.is_none() => {
            Some(format!("its Last-Modified was {a}, now {b}"))
        }
        _ => None,
    }
}
