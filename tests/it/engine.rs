//! The engine against a well-behaved server: sizes, connection counts, the
//! `-k` rule, the files left behind.

use std::time::Duration;

use crate::support::*;

fn fetch_and_check(len: u64, connections: usize, min_split: u64) -> hfd::engine::Outcome {
    let server = TestServer::start();
    let file = FileSpec::generated(len ^ 0x5eed, len);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url("/f.bin"), &out);
    s.connections = connections;
    s.per_source = connections;
    s.min_split = min_split;
    let o = download(&s).unwrap_or_else(|e| panic!("len {len}: {e}"));
    assert_eq!(
        sha256_file(&out),
        want,
        "len {len}, {connections} connections, k {min_split}"
    );
    assert_eq!(
        listing(dir.path()),
        vec!["f.bin"],
        "no .part or control file is left"
    );
    assert_eq!(o.total, Some(len));
    o
}

#[test]
fn sizes_around_split_boundaries() {
    let k = 64 * 1024;
    for len in [
        0,
        1,
        2,
        k - 1,
        k,
        k + 1,
        2 * k - 1,
        2 * k,
        2 * k + 1,
        16 * k - 1,
        16 * k + 7,
    ] {
        fetch_and_check(len, 16, k);
    }
    // A probe range (64 KiB minimum) longer than the pieces of a tiny -k.
    fetch_and_check(100_000, 8, 1024);
}

#[test]
fn a_few_hundred_mib() {
    let o = fetch_and_check(300 << 20, 16, 1 << 20);
    assert_eq!(o.received, 300 << 20);
}

#[test]
fn opens_the_requested_number_of_connections() {
    let server = TestServer::start();
    // Throttled so all connections overlap in time.
    let len = 8 << 20;
    let file = FileSpec::generated(1, len).throttle(2 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url("/f.bin"), &out);
    s.connections = 8;
    s.per_source = 8;
    s.min_split = 256 << 10;
    let o = download(&s).unwrap();
    assert_eq!(sha256_file(&out), want);
    let st = server.stats();
    assert_eq!(o.connections, 8);
    assert_eq!(st.peak_transfers, 8, "{st:?}");
    assert!(st.connections >= 8, "{st:?}");
    // Served bytes: the file once, plus at most what stolen requests left in flight.
    assert!(st.bytes_served < len + (len / 4), "{st:?}");
}

#[test]
fn min_split_size_limits_connections() {
    let server = TestServer::start();
    let k: u64 = 1 << 20;
    // Smaller than 2k: never split, whatever -x says.
    server.add_file(
        "/small.bin",
        FileSpec::generated(2, 2 * k - 1).throttle(4 << 20),
    );
    // 4k: at most 4 pieces.
    server.add_file("/four.bin", FileSpec::generated(3, 4 * k).throttle(1 << 20));
    let dir = tempdir();
    for (path, max) in [("/small.bin", 1), ("/four.bin", 4)] {
        server.reset_stats();
        let out = dir.path().join(&path[1..]);
        let mut s = spec(&server.url(path), &out);
        s.connections = 16;
        s.per_source = 16;
        s.min_split = k;
        let o = download(&s).unwrap();
        let st = server.stats();
        assert_eq!(o.connections, max, "{path}");
        assert!(st.connections <= max as u64, "{path}: {st:?}");
        assert_eq!(st.peak_transfers, max as u64, "{path}: {st:?}");
        // Every request is at least k long unless it ends the file or a region.
        for r in server.requests() {
            let range = r.range.unwrap_or_default();
            assert!(range.starts_with("bytes="), "{range}");
        }
    }
}

#[test]
fn resumes_from_a_partial_download_without_refetching() {
    // Stop a throttled download midway (the engine's Ctrl-C path), resume, and
    // count what the server sent in all.
    let server = TestServer::start();
    let len: u64 = 24 << 20;
    let file = FileSpec::generated(9, len).throttle(4 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url("/f.bin"), &out);
    s.connections = 4;
    s.per_source = 4;
    let r = cancel_after(&s, len / 3, Duration::ZERO).expect("the download did not stop");
    assert!(matches!(r, Err(hfd::engine::Error::Interrupted)), "{r:?}");
    assert_eq!(hfd::engine::Error::Interrupted.exit_code().code(), 7);
    assert!(!out.exists(), "an unfinished file never has the final name");
    let first = server.stats().bytes_served;
    let o = download(&s).unwrap();
    assert!(o.resumed >= len / 4, "resumed only {} bytes", o.resumed);
    assert_eq!(sha256_file(&out), want);
    let total = server.stats().bytes_served;
    // What the first run received but had not saved, plus requests in flight.
    assert!(
        total - len < first.saturating_sub(o.resumed) + (2 << 20),
        "served {total} for {len} (first run {first}, resumed {})",
        o.resumed
    );
}

#[test]
fn rerun_after_completion_and_existing_files() {
    let server = TestServer::start();
    server.add_file("/f.bin", FileSpec::generated(4, 3 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let s = spec(&server.url("/f.bin"), &out);
    download(&s).unwrap();
    // A second run does not silently overwrite the file.
    let e = download(&s).unwrap_err();
    assert_eq!(e.exit_code().code(), 13, "{e}");
    // --allow-overwrite replaces it.
    let mut s2 = s.clone();
    s2.allow_overwrite = true;
    download(&s2).unwrap();
    // -c on a complete file: nothing to fetch.
    let mut s3 = s.clone();
    s3.continue_partial = true;
    server.reset_stats();
    let o = download(&s3).unwrap();
    assert!(o.received <= 1 << 20, "{o:?}");
}

#[test]
fn continue_a_prefix_left_by_another_tool() {
    let server = TestServer::start();
    let len = 5 << 20;
    let file = FileSpec::generated(5, len);
    let want = file.sha256_hex();
    let prefix = hfd_testserver::Content::new(5, len).bytes(0..(2 << 20));
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    std::fs::write(&out, &prefix).unwrap();
    let mut s = spec(&server.url("/f.bin"), &out);
    s.continue_partial = true;
    let o = download(&s).unwrap();
    assert_eq!(o.resumed, 2 << 20);
    assert_eq!(sha256_file(&out), want);
}

#[test]
fn ctrl_c_stops_a_download_whose_server_went_silent() {
    // The only connection's answer stops at 1 MiB for good. Ctrl-C (the
    // caller's token) must stop the download at once, not after the stall
    // detector or a response timeout; before, it waited for the server.
    let server = TestServer::start();
    let len: u64 = 4 << 20;
    server.add_file(
        "/f.bin",
        FileSpec::generated(41, len).stall(1 << 20, u32::MAX, None),
    );
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url("/f.bin"), &out);
    s.connections = 1;
    s.per_source = 1;
    // The body is silent at 1 MiB; let the slot settle into waiting.
    let r = cancel_after(&s, 1 << 20, Duration::from_millis(300))
        .expect("Ctrl-C did not stop the download within 15 s");
    assert!(matches!(r, Err(hfd::engine::Error::Interrupted)), "{r:?}");
    assert!(!out.exists(), "an unfinished file never has the final name");
}

/// Runs `s` in-process and cancels it as Ctrl-C does, `settle` after `bytes`
/// are done; `None` when the download has not ended 15 s after the cancel
/// (far longer than a prompt stop, far shorter than the engine's own
/// timeouts: 30 s without a response, 60 s without any progress).
fn cancel_after(
    s: &hfd::engine::DownloadSpec,
    bytes: u64,
    settle: Duration,
) -> Option<Result<hfd::engine::Outcome, hfd::engine::Error>> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let progress = hfd::engine::Progress::new();
    let net = hfd::net::Net::new(hfd::net::NetOptions::default());
    let (c2, p2) = (cancel.clone(), progress.clone());
    runtime().block_on(async {
        let download = tokio::spawn({
            let s = s.clone();
            async move { hfd::engine::download(&net, &s, progress, cancel).await }
        });
        while p2.done() < bytes && !download.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(settle).await;
        c2.cancel();
        tokio::time::timeout(Duration::from_secs(15), download)
            .await
            .ok()
            .map(|joined| joined.expect("the download task does not panic"))
    })
}
