//! Creating the data file, reserving its space, and the fsync helpers.
//!
//! Space is reserved with `fallocate(2)` called directly. glibc's
//! `posix_fallocate` is avoided on purpose: where the file system lacks
//! fallocate it silently "emulates" it by writing a byte into every block,
//! which takes minutes on a 100 GB file over NFS and gains nothing. Instead a
//! file system that cannot fallocate is treated as sparse (`Trunc`), with a
//! free-space check standing in for the reservation.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::FallocateFlags;

use super::{Allocation, StorageError, is_disk_full};

/// Opens (or creates) the data file for reading and writing.
///
/// Never truncates: on resume the file holds the bytes the control file
/// vouches for, and a truncate here would silently destroy them.
pub fn open_data_file(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))
}

/// Sizes the data file for a download of `total` bytes as `mode` asks, and
/// returns the mode actually used (`Falloc` turns into `Trunc` on file systems
/// that cannot fallocate).
///
/// A file longer than `total` (left over from a different download under the
/// same name) is cut to `total` in every mode, because the bytes past the end
/// would otherwise survive into the finished file.
///
/// The free-space check counts only what is still missing (`total` minus the
/// blocks the file already owns), so resuming a preallocated download on a
/// nearly full disk does not fail for space it already has.
pub fn allocate(
    file: &File,
    path: &Path,
    total: u64,
    mode: Allocation,
) -> Result<Allocation, StorageError> {
    let len = file
        .metadata()
        .map_err(|e| StorageError::io(path, "inspect", e))?
        .len();
    if len > total {
        file.set_len(total)
            .map_err(|e| StorageError::io(path, "truncate", e))?;
    }
    match mode {
        Allocation::Falloc => {
            if total == 0 {
                return Ok(Allocation::Falloc);
            }
            match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, total) {
                Ok(()) => Ok(Allocation::Falloc),
                Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                    check_space(file, path, total)?;
                    set_len(file, path, total)?;
                    Ok(Allocation::Trunc)
                }
                Err(e) => {
                    let e = io::Error::from(e);
                    if is_disk_full(&e) {
                        // fallocate may keep part of the space it grabbed
                        // before failing, so measure what is missing now
                        // rather than reuse a figure from before the call.
                        Err(disk_full(file, path, total))
                    } else {
                        Err(StorageError::io(path, "reserve space for", e))
                    }
                }
            }
        }
        Allocation::Trunc => {
            check_space(file, path, total)?;
            set_len(file, path, total)?;
            Ok(Allocation::Trunc)
        }
        Allocation::None => {
            check_space(file, path, total)?;
            Ok(Allocation::None)
        }
    }
}

fn set_len(file: &File, path: &Path, total: u64) -> Result<(), StorageError> {
    file.set_len(total)
        .map_err(|e| StorageError::io(path, "resize", e))
}

/// What is still missing for `total` bytes, and what the file system has.
fn shortfall(file: &File, total: u64) -> (Option<u64>, Option<u64>) {
    let needed = allocated_bytes(file)
        .ok()
        .map(|have| total.saturating_sub(have));
    let available = fstatvfs_free(file).ok();
    (needed, available)
}

fn disk_full(file: &File, path: &Path, total: u64) -> StorageError {
    let (needed, available) = shortfall(file, total);
    StorageError::DiskFull {
        path: path.to_path_buf(),
        needed,
        available,
    }
}

/// Refuses up front when the file system plainly lacks the room, so a sparse
/// download does not run for an hour and then stop at 97%. It is only a
/// forecast (other writers share the disk), which is why the writer still
/// turns ENOSPC into a clean [`StorageError::DiskFull`].
pub fn check_space(file: &File, path: &Path, total: u64) -> Result<(), StorageError> {
    let have = allocated_bytes(file).map_err(|e| StorageError::io(path, "inspect", e))?;
    let needed = total.saturating_sub(have);
    if needed == 0 {
        return Ok(());
    }
    // statvfs of the file itself names the same file system as its folder,
    // without resolving a relative or empty parent path.
    let available =
        fstatvfs_free(file).map_err(|e| StorageError::io(path, "check free space for", e))?;
    if needed > available {
        return Err(StorageError::DiskFull {
            path: path.to_path_buf(),
            needed: Some(needed),
            available: Some(available),
        });
    }
    Ok(())
}

fn fstatvfs_free(file: &File) -> io::Result<u64> {
    let st = rustix::fs::fstatvfs(file)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes an unprivileged writer may still use on the file system holding
/// `dir` (`f_bavail`, not `f_bfree`: the root reserve is not ours to spend).
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes of disk the file owns (`st_blocks` is always in 512-byte units,
/// whatever the file system's block size).
pub fn allocated_bytes(file: &File) -> io::Result<u64> {
    let st = rustix::fs::fstat(file)?;
    Ok((st.st_blocks as u64).saturating_mul(512))
}

/// Makes a create, rename or unlink inside `dir` durable: without it, the
/// new name can vanish after a power cut even though the file's data was
/// synced.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Starts kernel writeback of the file's dirty pages without waiting for it.
///
/// Called every few tens of MiB so that dirty data trickles to disk while
/// the download runs. The periodic `fdatasync` of a checkpoint then finds
/// little left to write and stays short (in our measurement a 1 GiB window
/// went from ~360 ms to ~25 ms per checkpoint, see the engine notes §3.5).
pub fn start_writeback(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; the fd is
        // valid for the duration of the call because `file` is borrowed.
        let rc =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn open_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.part");
        std::fs::write(&p, b"hello").unwrap();
        let f = open_data_file(&p).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 5);
        f.write_all_at(b"J", 0).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"Jello");
    }

    #[test]
    fn falloc_reserves_and_resume_needs_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.part");
        let f = open_data_file(&p).unwrap();
        let total = 3 << 20;
        let used = allocate(&f, &p, total, Allocation::Falloc).unwrap();
        // tmpfs and ext4 both fallocate; elsewhere the fallback is fine too.
        assert!(matches!(used, Allocation::Falloc | Allocation::Trunc));
        assert_eq!(f.metadata().unwrap().len(), total);
        if used == Allocation::Falloc {
            assert!(allocated_bytes(&f).unwrap() >= total);
        }
        // A second allocate (a resume) succeeds and keeps the size.
        allocate(&f, &p, total, Allocation::Falloc).unwrap();
        assert_eq!(f.metadata().unwrap().len(), total);
    }

    #[test]
    fn trunc_makes_a_sparse_file_and_none_leaves_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.part");
        let f = open_data_file(&p).unwrap();
        assert_eq!(
            allocate(&f, &p, 1 << 20, Allocation::Trunc).unwrap(),
            Allocation::Trunc
        );
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        assert!(allocated_bytes(&f).unwrap() < 1 << 20);

        let p2 = dir.path().join("e.part");
        let g = open_data_file(&p2).unwrap();
        assert_eq!(
            allocate(&g, &p2, 1 << 20, Allocation::None).unwrap(),
            Allocation::None
        );
        assert_eq!(g.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_longer_stale_file_is_cut_to_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.part");
        std::fs::write(&p, vec![7u8; 5000]).unwrap();
        let f = open_data_file(&p).unwrap();
        allocate(&f, &p, 1000, Allocation::None).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1000);
    }

    #[test]
    fn an_impossible_size_is_disk_full_with_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.part");
        let f = open_data_file(&p).unwrap();
        let huge = 1u64 << 60;
        for mode in [Allocation::Trunc, Allocation::None] {
            match allocate(&f, &p, huge, mode) {
                Err(StorageError::DiskFull {
                    needed: Some(n),
                    available: Some(a),
                    ..
                }) => {
                    assert_eq!(n, huge);
                    assert!(a < huge);
                }
                other => panic!("{mode:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn helpers_work_on_real_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
        sync_dir(dir.path()).unwrap();
        let p = dir.path().join("d");
        let f = open_data_file(&p).unwrap();
        f.write_all_at(&[1u8; 1 << 16], 0).unwrap();
        start_writeback(&f).unwrap();
    }

    #[test]
    fn falloc_on_a_full_tmpfs_is_disk_full_with_numbers() {
        let Some(fs) = crate::storage::testutil::SmallTmpfs::mount("4m") else {
            return;
        };
        let p = fs.path().join("big.part");
        let f = open_data_file(&p).unwrap();
        match allocate(&f, &p, 64 << 20, Allocation::Falloc) {
            Err(StorageError::DiskFull {
                needed: Some(n),
                available: Some(a),
                ..
            }) => {
                assert!(n > 0 && n <= 64 << 20, "needed {n}");
                assert!(a <= 4 << 20, "available {a}");
                assert!(n > a);
            }
            other => panic!("{other:?}"),
        }
        // A download that fits is fine on the same file system.
        let q = fs.path().join("small.part");
        let g = open_data_file(&q).unwrap();
        assert_eq!(
            allocate(&g, &q, 1 << 20, Allocation::Falloc).unwrap(),
            Allocation::Falloc
        );
    }
}
