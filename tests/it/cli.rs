//! The `hfget` binary: options, output naming, messages and exit codes.

use crate::support::*;

#[test]
fn help_teaches_and_exits_zero() {
    let dir = tempdir();
    let (code, out, _) = run(hfget(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for needle in [
        "-x, --max-connection-per-server",
        "64",
        "aria2c caps this at 16",
        "--all-proxy",
        "Examples:",
        "Exit status:",
        "resume",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
    let (code, out, _) = run(hfget(dir.path()).arg("-h"));
    assert_eq!(code, 0);
    assert!(out.contains("Examples:"));
}

#[test]
fn bad_options_exit_28_with_a_reason() {
    let dir = tempdir();
    for (args, needle) in [
        (vec!["-x", "65", "http://127.0.0.1:1/f"], "65"),
        (vec!["-k", "big", "http://127.0.0.1:1/f"], "invalid size"),
        (vec!["ftp://example.invalid/f"], "unsupported URL scheme"),
        (vec!["not a url"], "invalid URL"),
        (vec![], "no URL"),
        (
            vec!["--checksum", "md5=00", "http://127.0.0.1:1/f"],
            "unsupported checksum",
        ),
        (
            vec![
                "--all-proxy",
                "socks4://127.0.0.1:1",
                "http://127.0.0.1:1/f",
            ],
            "unsupported proxy scheme",
        ),
    ] {
        let (code, _, err) = run(hfget(dir.path()).args(&args));
        assert_eq!(code, 28, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn downloads_with_default_name_summary_and_plain_progress() {
    let server = TestServer::start();
    let file = FileSpec::generated(31, 6 << 20).throttle(6 << 20);
    let want = file.sha256_hex();
    server.add_file("/models/my%20model.bin", file);
    let dir = tempdir();
    let (code, out, err) =
        run(hfget(dir.path()).args([&server.url("/models/my%20model.bin"), "-x", "4"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("my model.bin")), want);
    assert!(
        out.contains("my model.bin") && out.contains("average") && out.contains("4 connections"),
        "{out}"
    );
    // Not a terminal: no escape codes, no carriage-return redraws.
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
}

#[test]
fn dir_out_exists_overwrite_and_quiet() {
    let server = TestServer::start();
    server.add_file("/f.bin", FileSpec::generated(32, 1 << 20));
    let dir = tempdir();
    let url = server.url("/f.bin");
    let (code, _, err) = run(hfget(dir.path()).args([&url, "-d", "sub/dir", "-o", "x.bin", "-q"]));
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("sub/dir/x.bin").exists());
    let (code, out, err) = run(hfget(dir.path()).args([&url, "-d", "sub/dir", "-o", "x.bin"]));
    assert_eq!(code, 13, "{err}");
    assert!(
        err.contains("already exists") && err.contains("-c") && out.is_empty(),
        "{err}"
    );
    let (code, out, err) = run(hfget(dir.path()).args([
        &url,
        "-d",
        "sub/dir",
        "-o",
        "x.bin",
        "--allow-overwrite",
        "-q",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.is_empty() && err.is_empty(),
        "-q prints nothing: {out} {err}"
    );
    // The output path is a folder.
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    let (code, _, err) = run(hfget(dir.path()).args([&url, "-o", "folder"]));
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("folder"), "{err}");
}

#[test]
fn checksum_match_and_mismatch() {
    let server = TestServer::start();
    let file = FileSpec::generated(33, 2 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let url = server.url("/f.bin");
    let (code, _, err) = run(hfget(dir.path()).args([
        &url,
        "-o",
        "good.bin",
        "--checksum",
        &format!("sha-256={want}"),
    ]));
    assert_eq!(code, 0, "{err}");
    let wrong = "0".repeat(64);
    let (code, _, err) = run(hfget(dir.path()).args([
        &url,
        "-o",
        "bad.bin",
        "--checksum",
        &format!("sha-256={wrong}"),
    ]));
    assert_eq!(code, 32, "{err}");
    assert!(
        err.contains("checksum mismatch") && err.contains(&want),
        "{err}"
    );
    assert_eq!(listing(dir.path()), vec!["good.bin"]);
}

#[test]
fn input_file_with_options_and_mirrors() {
    let a = TestServer::start();
    let b = TestServer::start();
    let f1 = FileSpec::generated(34, 3 << 20);
    let f2 = FileSpec::generated(35, 1 << 20);
    let (w1, w2) = (f1.sha256_hex(), f2.sha256_hex());
    a.add_file("/one.bin", f1.clone());
    b.add_file("/one.bin", f1);
    a.add_file("/two.bin", f2.require_header("x-token", "t"));
    let dir = tempdir();
    let list = format!(
        "# two files\n{}\t{}\n  dir=first\n  split=2\n\n{}\n  out=second.bin\n  header=X-Token: t\n",
        a.url("/one.bin"),
        b.url("/one.bin"),
        a.url("/two.bin")
    );
    std::fs::write(dir.path().join("list.txt"), list).unwrap();
    let (code, _, err) = run(hfget(dir.path()).args(["-i", "list.txt", "-j", "2", "-k", "256K"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&dir.path().join("first/one.bin")), w1);
    assert_eq!(sha256_file(&dir.path().join("second.bin")), w2);
    // Both mirrors served part of the first file.
    assert!(a.stats().per_path["/one.bin"].bytes_served > 0);
    assert!(b.stats().per_path["/one.bin"].bytes_served > 0);
}

#[test]
fn not_found_exit_3_and_message() {
    let server = TestServer::start();
    let dir = tempdir();
    let (code, _, err) = run(hfget(dir.path()).arg(server.url("/nothing.bin")));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not found") && err.contains("/nothing.bin"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn closed_stdout_and_stderr_do_not_turn_success_into_a_panic() {
    // `hfget URL | head -0` and `2>&-`-like cases: the reader is gone before
    // the summary line is printed.
    let server = TestServer::start();
    let file = FileSpec::generated(77, 1 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let mut child = hfget(dir.path())
        .arg(server.url("/f.bin"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(sha256_file(&dir.path().join("f.bin")), want);
}

/// Plain http goes through the spliced path by default and through hyper
/// with `--no-splice`; both give the same file, throttled so that
/// connections finish at different times and take over each other's tails.
#[test]
fn spliced_and_hyper_bodies_give_the_same_file() {
    let server = TestServer::start();
    let file = FileSpec::generated(33, 12 << 20).throttle(4 << 20);
    let want = file.sha256_hex();
    server.add_file("/s.bin", file);
    for (flag, proto) in [
        (None, "HTTP/1.1 (spliced)"),
        (Some("--no-splice"), "), HTTP/1.1\n"),
    ] {
        let dir = tempdir();
        let mut cmd = hfget(dir.path());
        cmd.args([&server.url("/s.bin"), "-x", "6", "-k", "1M", "-v"]);
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let (code, _, err) = run(&mut cmd);
        assert_eq!(code, 0, "{flag:?}: {err}");
        assert!(
            err.contains(proto),
            "{flag:?} should connect with {proto}: {err}"
        );
        if flag.is_some() {
            assert!(!err.contains("spliced"), "{err}");
        }
        assert_eq!(sha256_file(&dir.path().join("s.bin")), want, "{flag:?}");
    }
}
