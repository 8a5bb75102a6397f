//! The engine against servers that misbehave, one knob at a time. Each test
//! either gets the right bytes or a clear error with its exit code, and
//! never a wrong file under the final name.

use std::time::{Duration, Instant};

use hfd::engine::Error;

use crate::support::*;

struct Case {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    server: TestServer,
    want: String,
}

fn case(file: FileSpec) -> Case {
    let server = TestServer::start();
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    Case {
        _dir: dir,
        out,
        server,
        want,
    }
}

impl Case {
    fn spec(&self, conns: usize) -> hfd::engine::DownloadSpec {
        let mut s = spec(&self.server.url("/f.bin"), &self.out);
        s.connections = conns;
        s.per_source = conns;
        s.min_split = 256 << 10;
        s
    }

    fn ok(&self, conns: usize) -> hfd::engine::Outcome {
        let o = download(&self.spec(conns)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sha256_file(&self.out), self.want);
        o
    }

    fn err(&self, conns: usize) -> Error {
        let e = download(&self.spec(conns)).expect_err("must fail");
        assert!(
            !self.out.exists(),
            "no file under the final name after: {e}"
        );
        e
    }
}

#[test]
fn range_ignored_gives_a_correct_single_stream() {
    let c = case(FileSpec::generated(1, 5 << 20).ignore_range());
    let o = c.ok(8);
    assert!(o.single_stream);
    assert_eq!(c.server.stats().peak_transfers, 1);
}

#[test]
fn a_single_stream_waits_out_retry_after() {
    // No ranges: the probe's 200 is the stream, and it is cut short. The
    // stream's next request is refused with 503 and Retry-After: 2 (tests
    // turn our own backoff off, so only the header can explain a wait).
    let fail = Fail::new(503, 1).retry_after("2").after(1);
    let file = FileSpec::generated(17, 2 << 20)
        .ignore_range()
        .truncate(300_000, 1)
        .fail(fail);
    let c = case(file);
    let o = c.ok(4);
    assert!(o.single_stream);
    let reqs = c.server.requests();
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 503, 200], "{statuses:?}");
    let gap = reqs[2].at.duration_since(reqs[1].at);
    assert!(gap >= Duration::from_millis(1950), "retried after {gap:?}");
}

#[test]
fn ctrl_c_ends_a_single_stream_waiting_out_retry_after() {
    // As above, but the refusal asks for 120 s: Ctrl-C (the caller's token)
    // must end the wait at once, and the stream asks for nothing more.
    let fail = Fail::new(503, 1).retry_after("120").after(1);
    let file = FileSpec::generated(18, 2 << 20)
        .ignore_range()
        .truncate(300_000, 1)
        .fail(fail);
    let c = case(file);
    let s = c.spec(4);
    let cancel = tokio_util::sync::CancellationToken::new();
    let net = hfd::net::Net::new(hfd::net::NetOptions::default());
    let progress = hfd::engine::Progress::new();
    let ended = runtime().block_on(async {
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { hfd::engine::download(&net, &s, progress, cancel).await }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.server.requests().iter().any(|r| r.status == 503) {
            assert!(Instant::now() < deadline, "no 503 was served");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        // Far shorter than the 120 s asked for.
        tokio::time::timeout(Duration::from_secs(15), task).await
    });
    let r = ended.expect("Ctrl-C did not end the wait within 15 s");
    let r = r.expect("the download task does not panic");
    assert!(matches!(r, Err(Error::Interrupted)), "{r:?}");
    assert_eq!(c.server.requests().len(), 2, "nothing asked after the 503");
    assert!(!c.out.exists());
}

#[test]
fn unknown_length_chunked_body() {
    let c = case(
        FileSpec::generated(2, (3 << 20) + 17)
            .ignore_range()
            .chunked(),
    );
    let o = c.ok(8);
    assert!(o.single_stream);
    assert_eq!(o.total, Some((3 << 20) + 17));
}

#[test]
fn connection_resets_are_retried() {
    let c = case(FileSpec::generated(3, 6 << 20).reset_after(100_000, 6));
    c.ok(4);
}

#[test]
fn truncated_bodies_are_retried() {
    let c = case(FileSpec::generated(4, 6 << 20).truncate(300_000, 5));
    c.ok(4);
}

#[test]
fn a_stalled_connection_is_replaced() {
    // One response stops forever in the middle of the file; the download must
    // still complete (the stall is detected relative to the other connections).
    let len = 8 << 20;
    let c = case(
        FileSpec::generated(5, len)
            .throttle(4 << 20)
            .stall(len / 2 + 12345, 1, None),
    );
    let started = Instant::now();
    c.ok(4);
    // Not a speed target: only proof that it did not wait for the 60 s timeout.
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[test]
fn drip_fed_connections_do_not_hold_the_file_back() {
    let len = 8 << 20;
    let c = case(FileSpec::generated(6, len).throttle(4 << 20).drip(2_000, 2));
    c.ok(4);
}

#[test]
fn retry_after_is_honoured_on_503_and_429() {
    for status in [503u16, 429] {
        let fail = Fail {
            status,
            times: 2,
            retry_after: Some("1".into()),
            headers: Vec::new(),
            after: 0,
        };
        let c = case(FileSpec::generated(7, 2 << 20).fail(fail));
        c.ok(2);
        let reqs = c.server.requests();
        let failed: Vec<_> = reqs.iter().filter(|r| r.status == status).collect();
        assert_eq!(failed.len(), 2);
        let next = reqs
            .iter()
            .find(|r| r.status == 206)
            .expect("a successful request");
        // Each retry came at least Retry-After (1 s) after the refusal, even
        // though tests turn our own backoff off.
        for (a, b) in [(failed[0], failed[1]), (failed[1], next)] {
            let gap = b.at.duration_since(a.at);
            assert!(
                gap >= Duration::from_millis(950),
                "{status}: retried after {gap:?}"
            );
        }
    }
}

#[test]
fn the_later_of_retry_after_and_ratelimit_reset_is_honoured() {
    // The Hub sends both; the shorter one alone would earn another 429.
    let fail = Fail {
        status: 429,
        times: 1,
        retry_after: Some("1".into()),
        headers: vec![("RateLimit".into(), "\"resolvers\";r=0;t=2".into())],
        after: 0,
    };
    let c = case(FileSpec::generated(7, 2 << 20).fail(fail));
    c.ok(1);
    let reqs = c.server.requests();
    let refused = reqs.iter().find(|r| r.status == 429).expect("a 429");
    let next = reqs.iter().find(|r| r.status == 206).expect("a 206");
    let gap = next.at.duration_since(refused.at);
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
}

#[test]
fn overload_lowers_the_connection_count() {
    // A server that refuses more than 2 concurrent connections with 503.
    let server = TestServer::start_with(ServerOptions {
        max_connections: Some(hfd_testserver::ConnLimit {
            max: 2,
            over: hfd_testserver::OverLimit::Respond503,
        }),
        ..ServerOptions::default()
    });
    let file = FileSpec::generated(8, 8 << 20).throttle(8 << 20);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url("/f.bin"), &out);
    s.connections = 8;
    s.per_source = 8;
    s.min_split = 256 << 10;
    download(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    let st = server.stats();
    assert!(st.refused_connections > 0, "{st:?}");
    // Far fewer refusals than a client that kept hammering with 8 connections.
    assert!(st.refused_connections < 40, "{st:?}");
}

#[test]
fn etag_change_midway_stops_or_restarts() {
    let len = 8 << 20;
    let file = FileSpec::generated(9, len)
        .throttle(8 << 20)
        .change_after(len / 2, 99);
    let c = case(file);
    let e = c.err(4);
    assert_eq!(e.exit_code().code(), 40, "{e}");
    assert!(e.to_string().contains("changed"), "{e}");
    // The partial data and control file are kept for the user to decide.
    assert!(c.out.with_extension("bin.part").exists());
    // --allow-restart: start over and get the new file.
    let mut s = c.spec(4);
    s.allow_restart = true;
    download(&s).unwrap();
    let new = hfd_testserver::Content::new(99, len).sha256_hex();
    assert_eq!(sha256_file(&c.out), new);
}

#[test]
fn wrong_content_range_is_never_written() {
    let c = case(FileSpec::generated(10, 6 << 20).wrong_content_range(4096, 3));
    c.ok(4);
}

#[test]
fn corrupted_body_fails_the_checksum_and_leaves_nothing() {
    // Every answer covering the byte is corrupt: which connection fetches
    // it, and how often (a steal or a reconnect on a busy machine fetches
    // it again), does not matter.
    let c = case(FileSpec::generated(11, 3 << 20).corrupt(1_000_000, u32::MAX));
    let mut s = c.spec(2);
    s.checksum = Some(hfd::engine::Checksum::sha256(&c.want).unwrap());
    let e = download(&s).unwrap_err();
    assert_eq!(e.exit_code().code(), 32, "{e}");
    assert!(!c.out.exists());
    assert!(
        listing(c.out.parent().unwrap()).is_empty(),
        "corrupt data is discarded"
    );
    // Once the server is mended, the next run fetches it again and gets
    // it right.
    c.server
        .add_file("/f.bin", FileSpec::generated(11, 3 << 20));
    download(&s).unwrap();
    assert_eq!(sha256_file(&c.out), c.want);
}

/// A file large enough to be hashed while it arrives (`engine::prefix_hash`
/// starts at 64 MiB): a corrupt byte in the part hashed on the way, or in
/// the part hashed at the end, fails the check all the same; mended, the
/// same download passes it.
#[test]
fn a_file_hashed_while_it_arrives_still_fails_on_a_corrupt_byte() {
    let len: u64 = 80 << 20;
    // Slow enough (4 × 32 MiB/s) that the thread hashes well past the first
    // corrupt byte before the last byte comes.
    for at in [1_000_000, len - 5_000_000] {
        let file = FileSpec::generated(13, len).throttle(32 << 20);
        let c = case(file.corrupt(at, u32::MAX));
        let mut s = c.spec(4);
        s.checksum = Some(hfd::engine::Checksum::sha256(&c.want).unwrap());
        s.expected_size = Some(len);
        let e = download(&s).unwrap_err();
        assert_eq!(e.exit_code().code(), 32, "corrupt at {at}: {e}");
        assert!(!c.out.exists());
        c.server.add_file("/f.bin", FileSpec::generated(13, len));
        download(&s).unwrap();
        assert_eq!(sha256_file(&c.out), c.want);
    }
}

#[test]
fn expiring_redirect_to_a_second_origin_is_resolved_again() {
    // The "hub" redirects to a "CDN" whose signed URLs live 1 s; the download
    // takes several seconds, so segments must re-resolve.
    let hub = TestServer::start();
    let cdn = TestServer::start();
    let len = 12 << 20;
    let file = FileSpec::generated(12, len).throttle(1 << 20);
    let want = file.sha256_hex();
    cdn.add_file("/blob", file);
    hub.add_redirect(
        "/f.bin",
        Redirect::found(cdn.url("/blob")).expiring(Duration::from_secs(1)),
    );
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&hub.url("/f.bin"), &out);
    s.connections = 4;
    s.per_source = 4;
    s.headers
        .insert("authorization", "Bearer secret-token".parse().unwrap());
    s.headers.insert("x-custom", "kept".parse().unwrap());
    download(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    let hub_reqs = hub.requests();
    assert!(
        hub_reqs.len() >= 2,
        "resolved again after expiry: {}",
        hub_reqs.len()
    );
    // One resolve per expiry, not one per connection or segment.
    let cdn_reqs = cdn.requests();
    assert!(
        hub_reqs.len() < cdn_reqs.len(),
        "{} hub / {} cdn",
        hub_reqs.len(),
        cdn_reqs.len()
    );
    assert!(
        hub_reqs
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer secret-token"))
    );
    for r in &cdn_reqs {
        assert_eq!(
            r.header("authorization"),
            None,
            "token leaked to the second origin"
        );
        assert_eq!(r.header("x-custom"), Some("kept"));
        assert_eq!(r.header("referer"), None);
        assert_eq!(r.header("accept-encoding"), Some("identity"));
    }
    assert!(
        cdn_reqs.iter().any(|r| r.status == 403),
        "the short-lived URL did expire"
    );
}

#[test]
fn not_found_and_too_many_redirects() {
    let server = TestServer::start();
    server.add_redirect("/loop", Redirect::found("/loop"));
    let dir = tempdir();
    let e = download(&spec(&server.url("/missing"), &dir.path().join("m"))).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    assert!(e.to_string().contains("404"), "{e}");
    let e = download(&spec(&server.url("/loop"), &dir.path().join("l"))).unwrap_err();
    assert_eq!(e.exit_code().code(), 23, "{e}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn giving_up_names_the_url_status_and_cause() {
    let fail = Fail {
        status: 500,
        times: 1000,
        retry_after: None,
        headers: Vec::new(),
        after: 0,
    };
    let c = case(FileSpec::generated(13, 1 << 20).fail(fail));
    let mut s = c.spec(2);
    s.retry.max_tries = 3;
    let e = download(&s).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code().code(), 6, "{msg}");
    assert!(
        msg.contains("/f.bin") && msg.contains("500") && msg.contains("3 failed attempts"),
        "{msg}"
    );
}

#[test]
fn unreachable_server_gives_up_with_network_error() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let dir = tempdir();
    let mut s = spec(&format!("http://127.0.0.1:{port}/f"), &dir.path().join("f"));
    s.retry.max_tries = 2;
    let e = download(&s).unwrap_err();
    assert_eq!(e.exit_code().code(), 6, "{e}");
    assert!(e.to_string().contains("connection refused"), "{e}");
}

#[test]
fn authorization_is_required_and_sent() {
    let c = case(FileSpec::generated(14, 1 << 20).require_header("authorization", "Bearer t"));
    let e = c.err(2);
    assert_eq!(e.exit_code().code(), 24, "{e}");
    let mut s = c.spec(2);
    s.headers
        .insert("authorization", "Bearer t".parse().unwrap());
    download(&s).unwrap();
    assert_eq!(sha256_file(&c.out), c.want);
}

#[test]
fn a_429_storm_with_retry_after_still_completes() {
    // The first 6 requests are refused with 429 and Retry-After: 1, as a
    // rate limiter in front of a mirror does; 10 tries are allowed.
    let c = case(FileSpec::generated(15, 6 << 20).fail(Fail::new(429, 6).retry_after("1")));
    let started = Instant::now();
    let mut s = c.spec(8);
    s.retry.max_tries = 10;
    download(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&c.out), c.want);
    let reqs = c.server.requests();
    assert_eq!(reqs.iter().filter(|r| r.status == 429).count(), 6);
    // Every retry waited for Retry-After: nothing came back within 1 s of
    // the first refusal, yet the storm did not stall the download for long.
    let first = reqs[0].at;
    let early = reqs
        .iter()
        .skip(1)
        .filter(|r| r.at.duration_since(first) < Duration::from_millis(900))
        .filter(|r| r.status != 429)
        .count();
    assert_eq!(early, 0, "a retry ignored Retry-After");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn an_endless_503_storm_gives_up_with_exit_29() {
    let c = case(FileSpec::generated(16, 2 << 20).fail(Fail::new(503, 1000).retry_after("0")));
    let mut s = c.spec(4);
    s.retry.max_tries = 3;
    let e = download(&s).unwrap_err();
    assert_eq!(e.exit_code().code(), 29, "{e}");
    assert!(e.to_string().contains("503"), "{e}");
    assert!(!c.out.exists());
    assert!(
        listing(c.out.parent().unwrap()).is_empty(),
        "nothing to resume"
    );
}

#[test]
fn random_resets_and_truncations_from_several_seeds() {
    // Reset and cut points drawn from a seed (printed, to replay a failure).
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..3u64 {
        let len = rng.u64((1 << 20)..(6 << 20));
        let file = FileSpec::generated(seed ^ round, len)
            .reset_after(rng.u64(1..len / 2), rng.u32(1..8))
            .truncate(rng.u64(1..len / 2), rng.u32(1..8));
        let c = case(file);
        let conns = rng.usize(1..9);
        let r = download(&c.spec(conns));
        assert!(r.is_ok(), "seed {seed} round {round}: {}", r.unwrap_err());
        assert_eq!(sha256_file(&c.out), c.want, "seed {seed} round {round}");
    }
}

#[test]
fn a_stall_on_every_try_times_out_with_exit_2_and_keeps_progress() {
    // Every response that reaches the middle of the file stops there for
    // good: the rest completes, the middle can never be fetched.
    let len = 4 << 20;
    let c = case(FileSpec::generated(17, len).stall(len / 2, 1000, None));
    let mut s = c.spec(2);
    s.timeout = Duration::from_millis(1500);
    s.retry.max_tries = 2;
    let e = download(&s).unwrap_err();
    assert_eq!(e.exit_code().code(), 2, "{e}");
    assert!(!c.out.exists());
    // What did arrive is kept for a later run.
    assert!(c.out.with_extension("bin.part.ctl").exists());
}
