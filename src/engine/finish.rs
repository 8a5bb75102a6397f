//! The last stage: size and checksum checked, then the final name, in the
//! order that keeps a crash at any point safe (see
//! [`crate::storage::files::DownloadFiles::commit`]). Wrong data is thrown
//! away: it is worth nothing, and must never be resumed.

use std::path::Path;

use super::error::Error;
use super::job::Ctx;
use super::verify::{self, Checksum};
use crate::storage::StorageError;

/// Checks and commits `total` complete bytes of partial data.
pub async fn finalize(ctx: &Ctx<'_>, total: u64) -> Result<(), Error> {
    let (spec, files) = (ctx.spec, &ctx.files);
    if let Some(want) = spec.expected_size
        && want != total
    {
        files.discard();
        return Err(Error::BadResponse {
            url: ctx.sources[0].ident(),
            detail: format!("the server sent {total} bytes, but {want} were expected"),
        });
    }
    if let Some(sum) = &spec.checksum
        && let Err(e) = verify_part(ctx, sum).await
    {
        return Err(match e {
            Error::ChecksumMismatch {
                algo,
                expected,
                actual,
                ..
            } => {
                files.discard();
                Error::ChecksumMismatch {
                    path: spec.output.clone(),
                    algo,
                    expected,
                    actual,
                }
            }
            other => other,
        });
    }
    files.commit(total)?;
    Ok(())
}

/// Hashes the file at `path` (a user's file: read, not mapped) and compares
/// with `sum`.
pub async fn verify_in_place(path: &Path, sum: &Checksum) -> Result<(), Error> {
    let (p, s) = (path.to_path_buf(), sum.clone());
    compare(path, sum, move || verify::digest_file(&p, &s)).await
}

/// Checks the partial data against `sum`, taking over what
/// [`Ctx::prefix`] hashed while it arrived.
async fn verify_part(ctx: &Ctx<'_>, sum: &Checksum) -> Result<(), Error> {
    let path = ctx.files.part_path();
    let prefix = crate::sync::lock(&ctx.prefix).take();
    let (p, s) = (path.to_path_buf(), sum.clone());
    compare(path, sum, move || match prefix {
        Some(h) => h.finish(&p),
        None => verify::digest_own_file(&p, &s),
    })
    .await
}

/// Runs `digest` (blocking) and compares its result with `sum`.
async fn compare(
    path: &Path,
    sum: &Checksum,
    digest: impl FnOnce() -> std::io::Result<String> + Send + 'static,
) -> Result<(), Error> {
    let actual = tokio::task::spawn_blocking(digest)
        .await
        .expect("hashing does not panic")
        .map_err(|e| Error::Storage(StorageError::io(path, "read back", e)))?;
    if actual.eq_ignore_ascii_case(sum.hex()) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            algo: sum.algorithm(),
            expected: sum.hex().to_string(),
            actual,
        })
    }
}

/// A zero-length file: created, synced, checked and committed.
pub async fn empty_file(ctx: &Ctx<'_>) -> Result<(), Error> {
    let part = ctx.files.part_path();
    let f = ctx.files.create_part()?;
    f.sync_all()
        .map_err(|e| Error::Storage(StorageError::io(part, "sync", e)))?;
    finalize(ctx, 0).await
}
