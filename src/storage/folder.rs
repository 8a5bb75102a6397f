//! Folders held open, and files opened, renamed and removed by name inside
//! them, never through a symbolic link.
//!
//! Why: a download writes only inside the folder the user named. A link
//! planted there (`NAME.part -> ~/.bashrc`, `sub -> ../outside`) must not
//! turn a write into one somewhere else, and a check of the path followed by
//! an open of the same path leaves a window for the link to appear. So the
//! folder is opened once and every later step works relative to its handle:
//! sub-folders with `O_NOFOLLOW | O_DIRECTORY` one component at a time, files
//! with `O_NOFOLLOW`, renames with `renameat`. The folder the user named is
//! itself followed: it is theirs to point wherever they like.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::StorageError;

/// An open folder; cheap to clone (the handle is shared).
#[derive(Clone, Debug)]
pub struct Folder {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// How [`Folder::open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Read and write an existing file.
    Existing,
    /// Read and write, created when missing, never truncated.
    Keep,
    /// Write from empty: created when missing, truncated when present.
    Truncate,
}

impl Folder {
    /// The folder the user named, created when missing. A link here is
    /// followed: the user chose this path.
    pub fn open(path: &Path) -> Result<Folder, StorageError> {
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        std::fs::create_dir_all(path).map_err(|e| StorageError::io(path, "create", e))?;
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StorageError::io(path, "open", e.into()))?;
        Ok(Folder {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// The folder holding `file` (see [`Folder::open`]).
    pub fn parent_of(file: &Path) -> Result<Folder, StorageError> {
        Folder::open(file.parent().unwrap_or(Path::new("")))
    }

    /// The folder `rel` below this one, each missing component created. A
    /// component that is a symbolic link (or not a folder) is refused.
    pub fn sub(&self, rel: &Path) -> Result<Folder, StorageError> {
        let mut cur = self.clone();
        for c in rel.components() {
            let name = match c {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => {
                    return Err(StorageError::io(
                        self.path.join(rel),
                        "open",
                        io::Error::other("only plain names may follow the folder you named"),
                    ));
                }
            };
            cur = cur.child(name)?;
        }
        Ok(cur)
    }

    /// The folder `rel` below this one if it exists (nothing is created);
    /// `None` when a component is missing, not a folder, or a link.
    pub fn find(&self, rel: &Path) -> Option<Folder> {
        let mut cur = self.clone();
        for c in rel.components() {
            let Component::Normal(name) = c else {
                continue;
            };
            let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(cur.fd.as_fd(), name, flags, Mode::empty()).ok()?;
            cur = Folder {
                fd: Arc::new(fd),
                path: cur.path.join(name),
            };
        }
        Some(cur)
    }

    fn child(&self, name: &OsStr) -> Result<Folder, StorageError> {
        let path = self.path.join(name);
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let open = || rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::empty());
        let fd = match open() {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(self.fd.as_fd(), name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(StorageError::io(&path, "create", e.into())),
                }
                open()
            }
            other => other,
        };
        let fd = fd.map_err(|e| self.refusal(name, e, "open"))?;
        Ok(Folder {
            fd: Arc::new(fd),
            path,
        })
    }

    /// Opens the file `name` in this folder, never through a link.
    pub fn open_file(&self, name: &OsStr, how: Open) -> Result<File, StorageError> {
        let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match how {
            Open::Existing => {}
            Open::Keep => flags |= OFlags::CREATE,
            Open::Truncate => flags |= OFlags::CREATE | OFlags::TRUNC,
        }
        let action = if how == Open::Existing {
            "open"
        } else {
            "create"
        };
        rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::from_raw_mode(0o666))
            .map(File::from)
            .map_err(|e| self.refusal(name, e, action))
    }

    /// The error for `name`: a link (ELOOP from `O_NOFOLLOW`, ENOTDIR for a
    /// link where a folder was wanted) is named as such.
    fn refusal(&self, name: &OsStr, e: Errno, action: &'static str) -> StorageError {
        let path = self.path.join(name);
        let is_link = self.is_symlink(name);
        if is_link || e == Errno::LOOP {
            return StorageError::Symlink { path };
        }
        StorageError::io(path, action, e.into())
    }

    fn is_symlink(&self, name: &OsStr) -> bool {
        rustix::fs::statat(self.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink())
    }

    /// The metadata of `name` itself (a link is not followed); `None` when
    /// it does not exist.
    pub fn stat(&self, name: &OsStr) -> Option<Entry> {
        let st = rustix::fs::statat(self.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        Some(Entry {
            len: st.st_size as u64,
            is_file: kind.is_file(),
            is_dir: kind.is_dir(),
            is_link: kind.is_symlink(),
        })
    }

    /// Renames `from` here to `to` in `dest` (replacing it; a link there is
    /// replaced, not followed).
    pub fn rename(&self, from: &OsStr, dest: &Folder, to: &OsStr) -> Result<(), io::Error> {
        rustix::fs::renameat(self.fd.as_fd(), from, dest.fd.as_fd(), to).map_err(Into::into)
    }

    /// Removes the file `name`; a missing one is not an error.
    pub fn remove(&self, name: &OsStr) -> Result<(), StorageError> {
        match rustix::fs::unlinkat(self.fd.as_fd(), name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(StorageError::io(self.path.join(name), "remove", e.into())),
        }
    }

    /// Writes `name` whole through a temporary file, fsync and rename: a
    /// crash leaves the old version or the new one, never a torn file.
    pub fn write_atomic(&self, name: &OsStr, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write as _;
        let mut tmp = name.to_owned();
        tmp.push(".tmp");
        let res = (|| {
            let mut f = self.open_file(&tmp, Open::Truncate)?;
            let io = |e| StorageError::io(self.path_of(&tmp), "write", e);
            f.write_all(bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            self.rename(&tmp, self, name)
                .map_err(|e| StorageError::io(self.path_of(name), "rename into place", e))?;
            self.sync()
                .map_err(|e| StorageError::io(&self.path, "sync", e))
        })();
        if res.is_err() {
            let _ = self.remove(&tmp);
        }
        res
    }

    /// Writes `name` whole through a temporary file and a rename, without
    /// syncing: for small records whose loss costs only a recomputation
    /// (a reader never sees a torn file, but a power cut may lose it).
    pub fn write_replace(&self, name: &OsStr, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write as _;
        let mut tmp = name.to_owned();
        tmp.push(".tmp");
        let res = (|| {
            let mut f = self.open_file(&tmp, Open::Truncate)?;
            f.write_all(bytes)
                .map_err(|e| StorageError::io(self.path_of(&tmp), "write", e))?;
            self.rename(&tmp, self, name)
                .map_err(|e| StorageError::io(self.path_of(name), "rename into place", e))
        })();
        if res.is_err() {
            let _ = self.remove(&tmp);
        }
        res
    }

    /// The content of the regular file `name`, at most `max` bytes; `None`
    /// when it is missing, larger, or a link (not followed).
    pub fn read_small(&self, name: &OsStr, max: u64) -> Option<Vec<u8>> {
        use std::io::Read as _;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::empty()).ok()?;
        let mut f = File::from(fd);
        if f.metadata().ok()?.len() > max {
            return None;
        }
        let mut v = Vec::new();
        f.read_to_end(&mut v).ok()?;
        Some(v)
    }

    /// Where the link `name` points, as written in it (not followed);
    /// `None` when `name` is missing or not a link.
    pub fn read_link(&self, name: &OsStr) -> Option<PathBuf> {
        let t = rustix::fs::readlinkat(self.fd.as_fd(), name, Vec::new()).ok()?;
        let bytes: Vec<u8> = t.into_bytes();
        Some(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
        ))
    }

    /// Makes `name` a symbolic link to `target`, replacing whatever file or
    /// link had that name in one rename (a reader sees the old entry or the
    /// new link, never nothing). A folder of that name is not replaced.
    pub fn symlink(&self, target: &Path, name: &OsStr) -> Result<(), StorageError> {
        let mut tmp = name.to_owned();
        tmp.push(".hfd-link");
        let _ = self.remove(&tmp);
        rustix::fs::symlinkat(target, self.fd.as_fd(), &tmp)
            .map_err(|e| StorageError::io(self.path_of(name), "create a link", e.into()))?;
        self.rename(&tmp, self, name).map_err(|e| {
            let _ = self.remove(&tmp);
            StorageError::io(self.path_of(name), "create a link", e)
        })
    }

    /// Makes creates, renames and removals in this folder durable.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(self.fd.as_fd()).map_err(Into::into)
    }

    /// The path of `name` in this folder, for messages.
    pub fn path_of(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    // Read-only access, for a server that must never reach outside the
    // folder it was given (`serve`): nothing is created, links are read as
    // links, never followed.

    /// An existing folder the user named (followed if a link: theirs), or
    /// the reason it cannot be opened; nothing is created.
    pub fn open_existing(path: &Path) -> Result<Folder, StorageError> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())
            .map_err(|e| StorageError::io(path, "open", e.into()))?;
        Ok(Folder {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// Opens the file `name` here for reading only, never through a link.
    pub fn open_read(&self, name: &OsStr) -> Result<File, StorageError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::empty())
            .map(File::from)
            .map_err(|e| self.refusal(name, e, "open"))
    }

    /// The names in this folder with what [`Folder::stat`] says of each
    /// (links not followed), `.` and `..` left out, in no order.
    pub fn entries(&self) -> io::Result<Vec<(std::ffi::OsString, Entry)>> {
        use std::os::unix::ffi::OsStrExt as _;
        let mut out = Vec::new();
        // `read_from` reads through its own handle: ours keeps its offset.
        for e in rustix::fs::Dir::read_from(self.fd.as_fd())? {
            let e = e?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if let Some(st) = self.stat(name) {
                out.push((name.to_owned(), st));
            }
        }
        Ok(out)
    }
}

/// What [`Folder::stat`] tells of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub len: u64,
    pub is_file: bool,
    pub is_dir: bool,
    pub is_link: bool,
}

/// The file name of `path` (the last component); `path` itself when it has
/// none, so a caller's error names what it was given.
pub fn file_name(path: &Path) -> &OsStr {
    path.file_name().unwrap_or(path.as_os_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_refused_and_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep me").unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink("../outside", root.join("sub")).unwrap();
        symlink("../outside/victim", root.join("f.part")).unwrap();

        let f = Folder::open(&root).unwrap();
        let e = f.sub(Path::new("sub/deeper")).unwrap_err();
        assert!(
            matches!(e, StorageError::Symlink { ref path } if path.ends_with("sub")),
            "{e}"
        );
        for how in [Open::Existing, Open::Keep, Open::Truncate] {
            let e = f.open_file(OsStr::new("f.part"), how).unwrap_err();
            assert!(matches!(e, StorageError::Symlink { .. }), "{how:?}: {e}");
        }
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
        assert!(!outside.join("deeper").exists());

        // Plain folders are created on the way; files open and rename.
        let d = f.sub(Path::new("a/b")).unwrap();
        d.open_file(OsStr::new("x"), Open::Truncate).unwrap();
        d.rename(OsStr::new("x"), &f, OsStr::new("y")).unwrap();
        assert!(root.join("y").is_file());
        assert_eq!(f.stat(OsStr::new("y")).unwrap().len, 0);
        assert!(f.stat(OsStr::new("f.part")).is_some_and(|e| !e.is_file));
        f.remove(OsStr::new("y")).unwrap();
        f.remove(OsStr::new("y")).unwrap();
    }

    #[test]
    fn links_replace_entries_and_small_reads_do_not_follow() {
        let dir = tempfile::tempdir().unwrap();
        let f = Folder::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("blob"), b"data").unwrap();
        std::fs::write(dir.path().join("name"), b"a copy").unwrap();
        f.symlink(Path::new("blob"), OsStr::new("name")).unwrap();
        assert_eq!(
            f.read_link(OsStr::new("name")).unwrap(),
            PathBuf::from("blob")
        );
        assert_eq!(std::fs::read(dir.path().join("name")).unwrap(), b"data");
        assert!(f.read_link(OsStr::new("blob")).is_none());
        assert!(
            f.read_small(OsStr::new("name"), 100).is_none(),
            "a link was followed"
        );
        assert_eq!(f.read_small(OsStr::new("blob"), 100).unwrap(), b"data");
        assert!(f.read_small(OsStr::new("blob"), 3).is_none());
        f.write_replace(OsStr::new("rec"), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("rec")).unwrap(), b"x");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["blob", "name", "rec"],
            "temporary names left behind"
        );
    }
}
