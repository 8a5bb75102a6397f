//! huggingface_hub's cache-wide store of Xet files (2.x, `_shared_blobs.py`).
//!
//! A Xet file that huggingface_hub downloads into a cache is kept once per
//! cache, as `CACHE/blobs/<h[..2]>/<h>` (`h`: the file's Xet hash), and the
//! repo's own `blobs/<etag>` becomes a relative link to it,
//! `../../blobs/<h[..2]>/<h>`. Such a link is as much a blob as a regular
//! file: a cache filled that way must be recognised, not downloaded again.
//!
//! Links are otherwise never followed below the cache, so this one shape is
//! matched exactly and its entry is opened by handle from the cache's own
//! folder, each component without following a link: a link that reads any
//! other way, or an entry that is not a regular file, is no blob.

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;

use super::folder::{Entry, Folder};

/// The store's folder below the cache dir, and its entries' names.
const STORE: &str = "blobs";

/// The store entry `(prefix, hash)` that a repo blob's link target names,
/// when it reads exactly `../../blobs/<h[..2]>/<h>` (byte for byte) with
/// `h` 64 lowercase hex digits.
pub fn store_entry(target: &Path) -> Option<(&str, &str)> {
    let rest = target.to_str()?.strip_prefix("../../")?;
    let rest = rest.strip_prefix(STORE)?.strip_prefix('/')?;
    let (prefix, hash) = rest.split_once('/')?;
    let hex = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (hex && hash.get(..2) == Some(prefix)).then_some((prefix, hash))
}

/// The store entry behind the link `name` in a repo's `blobs/` folder, as
/// [`Entry`] (a regular file); `None` when `name` is no such link.
pub fn stat_linked(cache: &Folder, blobs: &Folder, name: &OsStr) -> Option<Entry> {
    let (dir, hash) = entry_folder(cache, blobs, name)?;
    dir.stat(OsStr::new(&hash)).filter(|e| e.is_file)
}

/// The store entry behind the link `name`, opened for reading.
pub fn open_linked(cache: &Folder, blobs: &Folder, name: &OsStr) -> Option<File> {
    let (dir, hash) = entry_folder(cache, blobs, name)?;
    let file = dir.open_read(OsStr::new(&hash)).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// The blob `name` in `blobs/`, whole: a regular file, or a link into the
/// store whose entry is one.
pub fn stat_blob(cache: &Folder, blobs: &Folder, name: &OsStr) -> Option<Entry> {
    let e = blobs.stat(name)?;
    match (e.is_file, e.is_link) {
        (true, _) => Some(e),
        (_, true) => stat_linked(cache, blobs, name),
        _ => None,
    }
}

/// The blob `name` in `blobs/`, opened (see [`stat_blob`]).
pub fn open_blob(cache: &Folder, blobs: &Folder, name: &OsStr) -> Option<File> {
    if blobs.stat(name)?.is_link {
        return open_linked(cache, blobs, name);
    }
    let file = blobs.open_read(name).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// The store's prefix folder (opened by handle) and the entry's name.
fn entry_folder(cache: &Folder, blobs: &Folder, name: &OsStr) -> Option<(Folder, String)> {
    let target = blobs.read_link(name)?;
    let (prefix, hash) = store_entry(&target)?;
    let dir = cache.find(&Path::new(STORE).join(prefix))?;
    Some((dir, hash.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_the_exact_shape_names_an_entry() {
        let h = "ab".to_string() + &"0".repeat(62);
        let ok = format!("../../blobs/ab/{h}");
        assert_eq!(store_entry(Path::new(&ok)), Some(("ab", h.as_str())));
        for bad in [
            format!("../../blobs/ac/{h}"),
            format!("../blobs/ab/{h}"),
            format!("../../../blobs/ab/{h}"),
            format!("/c/blobs/ab/{h}"),
            format!("../../other/ab/{h}"),
            format!("../../blobs/ab/{}", h.to_uppercase()),
            format!("../../blobs/ab/{}", &h[..63]),
            format!("../../blobs/ab/./{h}"),
            "../../blobs/ab/..".to_string(),
        ] {
            assert_eq!(store_entry(Path::new(&bad)), None, "{bad}");
        }
    }

    #[test]
    fn a_link_into_the_store_is_a_blob_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let h = "cd".to_string() + &"1".repeat(62);
        std::fs::create_dir_all(root.join("blobs/cd")).unwrap();
        std::fs::write(root.join("blobs/cd").join(&h), b"weights").unwrap();
        let repo_blobs = root.join("models--o--n/blobs");
        std::fs::create_dir_all(&repo_blobs).unwrap();
        symlink(format!("../../blobs/cd/{h}"), repo_blobs.join("e1")).unwrap();
        symlink("/etc/hostname", repo_blobs.join("e2")).unwrap();
        std::fs::write(repo_blobs.join("e3"), b"plain").unwrap();
        // The right shape, but the store's prefix folder is a link.
        let h2 = "ef".to_string() + &"2".repeat(62);
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::fs::write(root.join("elsewhere").join(&h2), b"x").unwrap();
        symlink(root.join("elsewhere"), root.join("blobs/ef")).unwrap();
        symlink(format!("../../blobs/ef/{h2}"), repo_blobs.join("e4")).unwrap();

        let cache = Folder::open(root).unwrap();
        let blobs = Folder::open(&repo_blobs).unwrap();
        let stat = |n: &str| stat_blob(&cache, &blobs, OsStr::new(n)).map(|e| e.len);
        assert_eq!(stat("e1"), Some(7));
        assert_eq!(stat("e2"), None);
        assert_eq!(stat("e3"), Some(5));
        assert_eq!(stat("e4"), None);
        assert_eq!(stat("missing"), None);
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut open_blob(&cache, &blobs, OsStr::new("e1")).unwrap(),
            &mut s,
        )
        .unwrap();
        assert_eq!(s, "weights");
        assert!(open_blob(&cache, &blobs, OsStr::new("e2")).is_none());
        assert!(open_blob(&cache, &blobs, OsStr::new("e4")).is_none());
    }
}
