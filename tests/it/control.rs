//! What a re-run does with the control file it finds: damaged, truncated,
//! torn, from another URL, from a future version. Each case either completes
//! with the right bytes or stops with a clear message and its exit code.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// Downloads `url` into `out` through the engine and stops it once a third
/// is done, leaving `out.part` and `out.part.ctl` behind.
fn partial(url: &str, out: &Path, len: u64) {
    let mut s = spec(url, out);
    s.connections = 2;
    s.per_source = 2;
    s.checkpoint_interval = Duration::from_millis(200);
    let rt = runtime();
    let cancel = tokio_util::sync::CancellationToken::new();
    let progress = hfd::engine::Progress::new();
    let (c2, p2) = (cancel.clone(), progress.clone());
    let net = hfd::net::Net::new(hfd::net::NetOptions::default());
    let r = rt.block_on(async {
        tokio::spawn(async move {
            while p2.done() < len / 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Let a checkpoint or two record the progress.
            tokio::time::sleep(Duration::from_millis(500)).await;
            c2.cancel();
        });
        hfd::engine::download(&net, &s, progress, cancel).await
    });
    assert!(r.is_err(), "the partial download was not stopped");
    assert!(ctl(out).exists());
}

fn ctl(out: &Path) -> std::path::PathBuf {
    out.with_file_name(format!(
        "{}.part.ctl",
        out.file_name().unwrap().to_string_lossy()
    ))
}

fn server_with(file: FileSpec) -> (TestServer, String) {
    let s = TestServer::start();
    let sha = file.sha256_hex();
    s.add_file("/f.bin", file);
    (s, sha)
}

const LEN: u64 = 12 << 20;

#[test]
fn a_damaged_or_truncated_control_file_means_starting_over() {
    for damage in ["garbage", "truncated", "empty"] {
        let (server, want) = server_with(FileSpec::generated(71, LEN).throttle(2 << 20));
        let dir = tempdir();
        let out = dir.path().join("f.bin");
        partial(&server.url("/f.bin"), &out, LEN);
        let c = ctl(&out);
        match damage {
            "garbage" => {
                // Bit rot inside both slots: our magic, broken checksums.
                let mut bytes = std::fs::read(&c).unwrap();
                let slot = hfd::storage::control_file::SLOT;
                for base in [0, slot] {
                    for b in &mut bytes[base + 12..base + 60] {
                        *b ^= 0x5a;
                    }
                }
                std::fs::write(&c, bytes).unwrap();
            }
            "truncated" => {
                let f = std::fs::OpenOptions::new().write(true).open(&c).unwrap();
                f.set_len(100).unwrap();
            }
            _ => std::fs::write(&c, b"").unwrap(),
        }
        let (code, _, err) = run(hfget(dir.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
        assert_eq!(code, 0, "{damage}: {err}");
        assert!(
            err.contains("starting over"),
            "{damage}: the restart is announced: {err}"
        );
        assert_eq!(sha256_file(&out), want, "{damage}");
        assert_eq!(listing(dir.path()), vec!["f.bin"]);
    }
}

#[test]
fn a_foreign_file_in_the_control_files_place_is_not_touched() {
    let (server, _) = server_with(FileSpec::generated(78, LEN).throttle(2 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&server.url("/f.bin"), &out, LEN);
    let c = ctl(&out);
    std::fs::write(&c, vec![0x5a; 16384]).unwrap();
    let (code, _, err) = run(hfget(dir.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("not an hfget control file"), "{err}");
    assert_eq!(std::fs::read(&c).unwrap(), vec![0x5a; 16384]);
    assert!(!out.exists());
}

#[test]
fn a_torn_last_checkpoint_falls_back_to_the_previous_one() {
    let (server, want) = server_with(FileSpec::generated(72, LEN).throttle(2 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&server.url("/f.bin"), &out, LEN);
    // Tear the newest slot: overwrite the middle of whichever slot has the
    // higher generation (a write cut short by a power cut).
    let c = ctl(&out);
    let mut bytes = std::fs::read(&c).unwrap();
    let slot = hfd::storage::control_file::SLOT;
    let generation = |s: &[u8]| {
        hfd::storage::control_file::decode_slot(s)
            .map(|(g, _)| g)
            .unwrap_or(0)
    };
    let newest = if generation(&bytes[..slot]) > generation(&bytes[slot..]) {
        0
    } else {
        slot
    };
    for b in &mut bytes[newest + 40..newest + 200] {
        *b ^= 0xff;
    }
    std::fs::write(&c, &bytes).unwrap();
    let (code, out_text, err) = run(hfget(dir.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("starting over"),
        "the older record is used: {err}"
    );
    assert!(out_text.contains("resumed"), "{out_text}");
    assert_eq!(sha256_file(&out), want);
}

#[test]
fn a_control_file_from_another_url() {
    // Same file (same ETag) on another URL: a mirror, so resuming is right.
    let (a, want) = server_with(FileSpec::generated(73, LEN).throttle(2 << 20));
    let (b, _) = server_with(FileSpec::generated(73, LEN));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&a.url("/f.bin"), &out, LEN);
    let (code, text, err) = run(hfget(dir.path()).args([&b.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("resumed"), "{text}");
    assert_eq!(sha256_file(&out), want);

    // Another file (other ETag) under the same name: never spliced.
    let (c, _) = server_with(FileSpec::generated(74, LEN));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&a.url("/f.bin"), &out, LEN);
    let (code, _, err) = run(hfget(dir.path()).args([&c.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 40, "{err}");
    assert!(err.contains("--allow-restart"), "{err}");
    assert!(!out.exists());
    let (code, _, err) =
        run(hfget(dir.path()).args([&c.url("/f.bin"), "-o", "f.bin", "--allow-restart"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        sha256_file(&out),
        hfd_testserver::Content::new(74, LEN).sha256_hex()
    );

    // No ETag to prove it is the same file: refuse to guess.
    let (d, _) = server_with(FileSpec::generated(75, LEN).throttle(2 << 20).omit_etag());
    let (e, _) = server_with(FileSpec::generated(75, LEN).omit_etag());
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&d.url("/f.bin"), &out, LEN);
    let (code, _, err) = run(hfget(dir.path()).args([&e.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("another URL") && err.contains("--allow-restart"),
        "{err}"
    );
}

#[test]
fn a_control_file_from_a_future_version_is_left_alone() {
    let (server, _) = server_with(FileSpec::generated(76, LEN).throttle(2 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    partial(&server.url("/f.bin"), &out, LEN);
    let c = ctl(&out);
    let mut bytes = std::fs::read(&c).unwrap();
    // The version field follows the 8-byte magic in both slots.
    let slot = hfd::storage::control_file::SLOT;
    for base in [0, slot] {
        bytes[base + 8..base + 10].copy_from_slice(&7u16.to_le_bytes());
    }
    std::fs::write(&c, &bytes).unwrap();
    let (code, _, err) = run(hfget(dir.path()).args([&server.url("/f.bin"), "-o", "f.bin"]));
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("newer"), "{err}");
    // Nothing was destroyed: the newer tool can still resume it.
    assert_eq!(std::fs::read(&c).unwrap(), bytes);
    assert!(out.with_file_name("f.bin.part").exists());
}

#[test]
fn an_unresolvable_host_exits_19() {
    let dir = tempdir();
    let (code, _, err) =
        run(hfget(dir.path()).args(["http://no-such-host.invalid/f.bin", "-m", "2"]));
    assert_eq!(code, 19, "{err}");
    assert!(
        err.contains("cannot resolve host name no-such-host.invalid"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_server_that_closes_extra_connections() {
    let server = TestServer::start_with(ServerOptions {
        max_connections: Some(hfd_testserver::ConnLimit {
            max: 3,
            over: hfd_testserver::OverLimit::Close,
        }),
        ..ServerOptions::default()
    });
    let file = FileSpec::generated(77, 8 << 20).throttle(8 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let (code, _, err) =
        run(hfget(dir.path()).args([&server.url("/f.bin"), "-x", "8", "-k", "256K"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("f.bin")), want);
}
