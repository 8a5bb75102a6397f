//! A download's files on disk, from first look to final name.
//!
//! Three names: the final file, the partial data (`NAME.part`) and the
//! control file (`NAME.part.ctl`). This module says what a previous run left
//! ([`DownloadFiles::inspect`]), takes over an existing file as a prefix
//! ([`DownloadFiles::adopt_output`]), throws away what cannot be trusted,
//! and gives complete data its final name ([`DownloadFiles::commit`]) in the
//! order that keeps a crash at any point safe. Every name is opened in its
//! folder by handle, never through a symbolic link ([`super::folder`]).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::StorageError;
use super::control_file::{ControlError, ControlFile, ControlState};
use super::folder::{Entry, Folder, Open, file_name};

/// Where a download's three files live.
#[derive(Clone, Debug)]
pub struct Layout {
    pub output: PathBuf,
    pub part: PathBuf,
    pub control: PathBuf,
    /// The folder the user named when the files lie deeper inside it (a
    /// repo's sub-folders, hfd's `.hfd/partial/`): no link below it is
    /// followed. `None`: each file's own folder is the one named.
    pub root: Option<PathBuf>,
}

/// The files of one download, their folders held open.
#[derive(Debug)]
pub struct DownloadFiles {
    out_dir: Folder,
    out_name: OsString,
    part_dir: Folder,
    part_name: OsString,
    ctl_dir: Folder,
    ctl_name: OsString,
    layout: Layout,
}

/// What a previous run left.
pub enum Found {
    /// A control file and its newest record (the data file may be gone).
    Control(ControlFile, ControlState),
    /// A control file that cannot be read: its data cannot be trusted.
    Damaged { path: PathBuf, reason: String },
    /// No control file.
    Nothing,
}

impl DownloadFiles {
    /// Opens (creating when missing) the folders of `layout`'s files. A
    /// link on the way below `layout.root` is refused.
    pub fn open(layout: &Layout) -> Result<DownloadFiles, StorageError> {
        let folder = |p: &Path| -> Result<Folder, StorageError> {
            let dir = p.parent().unwrap_or(Path::new(""));
            match &layout.root {
                None => Folder::open(dir),
                Some(root) => {
                    let rel = dir.strip_prefix(root).map_err(|_| {
                        StorageError::io(
                            p,
                            "place",
                            std::io::Error::other(format!("it is not inside {}", root.display())),
                        )
                    })?;
                    Folder::open(root)?.sub(rel)
                }
            }
        };
        Ok(DownloadFiles {
            out_dir: folder(&layout.output)?,
            out_name: file_name(&layout.output).to_owned(),
            part_dir: folder(&layout.part)?,
            part_name: file_name(&layout.part).to_owned(),
            ctl_dir: folder(&layout.control)?,
            ctl_name: file_name(&layout.control).to_owned(),
            layout: layout.clone(),
        })
    }

    pub fn output_path(&self) -> &Path {
        &self.layout.output
    }

    pub fn part_path(&self) -> &Path {
        &self.layout.part
    }

    pub fn control_path(&self) -> &Path {
        &self.layout.control
    }

    /// The final name as it is now (a link is not followed).
    pub fn output(&self) -> Option<Entry> {
        self.out_dir.stat(&self.out_name)
    }

    /// The partial data as it is now.
    pub fn part(&self) -> Option<Entry> {
        self.part_dir.stat(&self.part_name)
    }

    /// Reads the control file a previous run left, if any.
    pub fn inspect(&self) -> Result<Found, StorageError> {
        match ControlFile::open_in(&self.ctl_dir, &self.ctl_name) {
            Ok(Some((c, s))) => Ok(Found::Control(c, s)),
            Ok(None) => Ok(Found::Nothing),
            Err(StorageError::Control(ControlError::Damaged { path, reason })) => {
                Ok(Found::Damaged { path, reason })
            }
            Err(e) => Err(e),
        }
    }

    /// A fresh control file with `state` as its first record.
    pub fn create_control(&self, state: &ControlState) -> Result<ControlFile, StorageError> {
        ControlFile::create_in(&self.ctl_dir, &self.ctl_name, state)
    }

    /// Opens the partial data, creating it when missing; never truncated
    /// (on resume it holds the bytes the control file vouches for).
    pub fn open_part(&self) -> Result<File, StorageError> {
        self.part_dir.open_file(&self.part_name, Open::Keep)
    }

    /// The partial data, emptied: for a stream that starts from zero.
    pub fn create_part(&self) -> Result<File, StorageError> {
        self.part_dir.open_file(&self.part_name, Open::Truncate)
    }

    /// Removes the partial data. A link in its place is refused: it was
    /// planted, and the user should know.
    pub fn discard_part(&self) -> Result<(), StorageError> {
        remove_own(&self.part_dir, &self.part_name)
    }

    /// Removes the control file (a link in its place is refused).
    pub fn discard_control(&self) -> Result<(), StorageError> {
        remove_own(&self.ctl_dir, &self.ctl_name)
    }

    /// Both, for data that is worth nothing (a wrong size, a wrong checksum).
    pub fn discard(&self) {
        let _ = self.discard_part();
        let _ = self.discard_control();
    }

    /// Makes the existing file under the final name the partial data
    /// (`-c`: continue a prefix another tool left).
    pub fn adopt_output(&self) -> Result<(), StorageError> {
        self.out_dir
            .rename(&self.out_name, &self.part_dir, &self.part_name)
            .map_err(|e| {
                StorageError::io(&self.layout.output, "rename to the partial data file", e)
            })
    }

    /// Makes the names created so far survive a power cut.
    pub fn sync_part_dir(&self) -> Result<(), StorageError> {
        self.part_dir
            .sync()
            .map_err(|e| StorageError::io(self.part_dir.path(), "sync", e))
    }

    /// Gives complete data of `total` bytes its final name: the exact
    /// length, the rename, a sync of the folder, then the control file's
    /// removal and another sync. A crash at any point leaves either the
    /// partial data with its control file, or the final file (with at most
    /// a control file that the next run recognises as done).
    pub fn commit(&self, total: u64) -> Result<(), StorageError> {
        let part = &self.layout.part;
        if self.part().map(|e| e.len) != Some(total) {
            // A sparse or never-extended file must end exactly at the total.
            let f = self.part_dir.open_file(&self.part_name, Open::Existing)?;
            f.set_len(total)
                .and_then(|_| f.sync_all())
                .map_err(|e| StorageError::io(part, "size", e))?;
        }
        self.part_dir
            .rename(&self.part_name, &self.out_dir, &self.out_name)
            .map_err(|e| StorageError::io(&self.layout.output, "rename into place", e))?;
        self.out_dir
            .sync()
            .map_err(|e| StorageError::io(self.out_dir.path(), "sync", e))?;
        if self.ctl_dir.stat(&self.ctl_name).is_some() {
            self.discard_control()?;
            self.ctl_dir
                .sync()
                .map_err(|e| StorageError::io(self.ctl_dir.path(), "sync", e))?;
        }
        Ok(())
    }

    /// The final name, for a file that was complete already.
    pub fn output_name(&self) -> &OsStr {
        &self.out_name
    }
}

/// Removes a file of ours; a link where it should be is refused.
fn remove_own(dir: &Folder, name: &OsStr) -> Result<(), StorageError> {
    if dir.stat(name).is_some_and(|e| e.is_link) {
        return Err(StorageError::Symlink {
            path: dir.path_of(name),
        });
    }
    dir.remove(name)
}
