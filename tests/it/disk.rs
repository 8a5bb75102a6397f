//! Disk problems on real, small file systems: a full disk (at the start with
//! fallocate, midway with a sparse file), a read-only folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A tmpfs mounted for one test, unmounted on drop. `None` (with the reason
/// printed) where this process may not mount.
struct Mount {
    target: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(opts: &str) -> Option<Mount> {
        let dir = tempdir();
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&target)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount { target, _dir: dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
    }
}

#[test]
fn disk_full_at_the_start_with_fallocate() {
    let Some(m) = Mount::tmpfs("size=4m") else {
        return;
    };
    let server = TestServer::start();
    server.add_file("/f.bin", FileSpec::generated(51, 16 << 20));
    let (code, _, err) = run(hfget(m.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 9, "{err}");
    assert!(
        err.contains("not enough disk space") && err.contains("free"),
        "{err}"
    );
    assert!(!m.path().join("f.bin").exists());
    // Nothing was fetched beyond the probe.
    assert!(
        server.stats().bytes_served <= 1 << 20,
        "{:?}",
        server.stats()
    );
}

#[test]
fn disk_full_midway_with_a_sparse_file_then_resume() {
    let Some(m) = Mount::tmpfs("size=12m") else {
        return;
    };
    let server = TestServer::start();
    let file = FileSpec::generated(52, 10 << 20).throttle(2 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let url = server.url("/f.bin");
    // A sparse file passes the up-front check; then something else fills the
    // disk while the download runs.
    let child = hfget(m.path())
        .args([
            &url,
            "-o",
            "f.bin",
            "--file-allocation",
            "none",
            "-x",
            "2",
            "-k",
            "1M",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let filler = m.path().join("filler");
    let chunk = vec![7u8; 1 << 20];
    if let Ok(mut f) = std::fs::File::create(&filler) {
        use std::io::Write;
        while f.write_all(&chunk).is_ok() {}
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{err}");
    assert!(err.contains("disk space"), "{err}");
    assert!(!m.path().join("f.bin").exists());
    assert!(m.path().join("f.bin.part.ctl").exists(), "progress is kept");
    // Free the space and run again: it resumes and completes.
    std::fs::remove_file(&filler).unwrap();
    let (code, _, err) =
        run(hfget(m.path()).args([&url, "-o", "f.bin", "--file-allocation", "none"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&m.path().join("f.bin")), want);
}

#[test]
fn read_only_folder() {
    let Some(m) = Mount::tmpfs("size=1m,ro") else {
        return;
    };
    let server = TestServer::start();
    server.add_file("/f.bin", FileSpec::generated(53, 1 << 20));
    let (code, _, err) = run(hfget(m.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert!(code == 16 || code == 17, "{code}: {err}");
    assert!(err.contains("Read-only"), "{err}");
}
