//! End-to-end tests of the server over real loopback sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::test_client::{Client, End, get};
use super::*;

fn content(seed: u64, len: u64) -> Vec<u8> {
    Content::new(seed, len).bytes(0..len).to_vec()
}

#[test]
fn full_get_has_all_headers_and_bytes() {
    let s = TestServer::start();
    s.add_file("/f.bin", FileSpec::generated(5, 100_000));
    let r = get(s.addr(), "/f.bin", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.end, End::Complete);
    assert_eq!(r.body, content(5, 100_000));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("etag"), Some("\"5-100000\""));
    assert_eq!(r.header("last-modified"), Some(DEFAULT_LAST_MODIFIED));
    assert_eq!(r.header("content-length"), Some("100000"));
    assert!(s.url("/f.bin").starts_with("http://127.0.0.1:"));

    let r = get(s.addr(), "/missing", &[]);
    assert_eq!(r.status, 404);
    let mut c = Client::connect(s.addr());
    assert_eq!(c.request("DELETE", "/f.bin", &[]).status, 405);
}

#[test]
fn range_forms_and_content_range() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(1, 1000));
    let all = content(1, 1000);
    let mut c = Client::connect(s.addr());
    for (range, start, end) in [
        ("bytes=0-9", 0usize, 9usize),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),
        ("bytes=500-5000", 500, 999),
        ("bytes=-5000", 0, 999),
    ] {
        let r = c.request("GET", "/f", &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(&*format!("bytes {start}-{end}/1000"))
        );
        assert_eq!(
            r.header("content-length"),
            Some(&*(end - start + 1).to_string())
        );
        assert_eq!(r.body, &all[start..=end], "{range}");
    }
    for range in ["bytes=1000-", "bytes=-0", "bytes=7-3", "bytes=x"] {
        let r = c.request("GET", "/f", &[("Range", range)]);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.header("content-range"), Some("bytes */1000"));
    }
    // Several ranges, or another unit: the whole file.
    for range in ["bytes=0-1,5-6", "items=0-1"] {
        let r = c.request("GET", "/f", &[("Range", range)]);
        assert_eq!((r.status, r.body.len()), (200, 1000), "{range}");
    }
}

#[test]
fn empty_file_ranges() {
    let s = TestServer::start();
    s.add_file("/e", FileSpec::bytes(&b""[..]));
    s.add_file(
        "/n",
        FileSpec::bytes(&b""[..]).empty_range(EmptyRange::Nginx),
    );
    let r = get(s.addr(), "/e", &[("Range", "bytes=0-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */0"));
    let r = get(s.addr(), "/e", &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("0")));
    let r = get(s.addr(), "/n", &[("Range", "bytes=0-")]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = get(s.addr(), "/n", &[("Range", "bytes=5-")]);
    assert_eq!(r.status, 416);
}

#[test]
fn if_range_strong_etag_and_date() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(2, 100));
    let mut c = Client::connect(s.addr());
    let range = ("Range", "bytes=10-19");
    let r = c.request("GET", "/f", &[range, ("If-Range", "\"2-100\"")]);
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = c.request("GET", "/f", &[range, ("If-Range", "\"other\"")]);
    assert_eq!((r.status, r.body.len()), (200, 100));
    let r = c.request("GET", "/f", &[range, ("If-Range", "W/\"2-100\"")]);
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/f", &[range, ("If-Range", DEFAULT_LAST_MODIFIED)]);
    assert_eq!(r.status, 206);
    let r = c.request(
        "GET",
        "/f",
        &[range, ("If-Range", "Tue, 02 Jan 2024 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    // Without an ETag on the file, only the date can match.
    s.add_file("/g", FileSpec::generated(2, 100).omit_etag());
    let r = c.request("GET", "/g", &[range, ("If-Range", "\"2-100\"")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), None);
}

#[test]
fn head_answers_headers_only() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(3, 5000));
    let mut c = Client::connect(s.addr());
    let r = c.request("HEAD", "/f", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5000"));
    assert_eq!(r.header("etag"), Some("\"3-5000\""));
    let r = c.request("HEAD", "/f", &[("Range", "bytes=100-")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), Some("4900"));
    assert_eq!(r.header("content-range"), Some("bytes 100-4999/5000"));
    // The connection is still in sync: a GET after two HEADs works.
    let r = c.request("GET", "/f", &[("Range", "bytes=0-1")]);
    assert_eq!(r.body, &content(3, 5000)[..2]);
    assert_eq!(s.stats().bytes_served, 2);
}

#[test]
fn ignore_range_and_chunked() {
    let s = TestServer::start();
    s.add_file("/ir", FileSpec::generated(4, 3000).ignore_range());
    s.add_file(
        "/ch",
        FileSpec::generated(4, 300_000).ignore_range().chunked(),
    );
    let r = get(s.addr(), "/ir", &[("Range", "bytes=10-20")]);
    assert_eq!((r.status, r.body.len()), (200, 3000));
    assert_eq!(r.header("accept-ranges"), None);
    let r = get(s.addr(), "/ch", &[("Range", "bytes=10-20")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.end, End::Complete);
    assert_eq!(r.body, content(4, 300_000));
}

#[test]
fn throttle_is_accurate() {
    let s = TestServer::start();
    let rate = 2_000_000;
    s.add_file("/t", FileSpec::generated(6, 2_000_000).throttle(rate));
    let mut c = Client::connect(s.addr());
    // A warm-up request, so the measured one shares the connection's
    // bucket with earlier traffic (it must not get a fresh burst).
    let r = c.request("GET", "/t", &[("Range", "bytes=0-99999")]);
    assert_eq!(r.body.len(), 100_000);
    let t = Instant::now();
    let r = c.request("GET", "/t", &[]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.end, End::Complete);
    let measured = r.body.len() as f64 / secs;
    // Never faster than the limit (tests rely on slow connections being
    // slow); slower only by what a busy machine can explain.
    assert!(
        measured < rate as f64 * 1.10 && measured > rate as f64 * 0.2,
        "measured {measured:.0} B/s for {rate} B/s"
    );
}

#[test]
fn slow_connections_are_picked_by_serial() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(7, 20_000).slow_connections(2, 100_000),
    );
    let t = Instant::now();
    assert_eq!(get(s.addr(), "/f", &[]).body.len(), 20_000); // serial 0: fast
    let fast = t.elapsed();
    let t = Instant::now();
    assert_eq!(get(s.addr(), "/f", &[]).body.len(), 20_000); // serial 1: slow
    let slow = t.elapsed();
    // The slow one cannot beat its throttle; the fast one is only compared
    // with it, since a busy machine can delay any request by 100 ms.
    assert!(slow >= Duration::from_millis(180), "{slow:?}");
    assert!(fast < slow / 2, "fast {fast:?}, slow {slow:?}");
    assert_eq!(
        s.requests().iter().map(|r| r.conn).collect::<Vec<_>>(),
        [0, 1]
    );
}

#[test]
fn reset_cuts_after_exact_bytes_then_recovers() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(8, 1_000_000).reset_after(300_000, 1),
    );
    let r = get(s.addr(), "/f", &[]);
    assert_eq!(r.end, End::Reset);
    assert_eq!(r.body.len(), 300_000);
    assert_eq!(r.body, &content(8, 1_000_000)[..300_000]);
    // A small request is not eligible and did not use up the count; the
    // second full request is fine because the count was 1.
    let r = get(s.addr(), "/f", &[]);
    assert_eq!((r.end, r.body.len()), (End::Complete, 1_000_000));
    let r = get(s.addr(), "/f", &[("Range", "bytes=0-99")]);
    assert_eq!(r.body.len(), 100);
}

#[test]
fn truncate_ends_with_clean_eof() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(9, 500_000).truncate(123_457, 1));
    let r = get(s.addr(), "/f", &[("Range", "bytes=1000-")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.end, End::Eof);
    assert_eq!(r.body, &content(9, 500_000)[1000..1000 + 123_457]);
    let r = get(s.addr(), "/f", &[]);
    assert_eq!(r.end, End::Complete);
}

#[test]
fn stall_stops_at_offset() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(10, 200_000).stall(150_000, 1, None),
    );
    // A range not covering the offset is not stalled and keeps the count.
    assert_eq!(
        get(s.addr(), "/f", &[("Range", "bytes=0-999")]).end,
        End::Complete
    );
    let mut c = Client::connect(s.addr());
    c.set_read_timeout(Duration::from_millis(300));
    let r = c.request("GET", "/f", &[("Range", "bytes=100000-")]);
    assert_eq!(r.end, End::Timeout);
    assert_eq!(r.body, &content(10, 200_000)[100_000..150_000]);
    assert_eq!(
        s.stats().current_transfers,
        0,
        "a stalled-forever body is not a transfer"
    );
    assert_eq!(get(s.addr(), "/f", &[]).end, End::Complete);

    // A timed stall resumes.
    s.add_file(
        "/g",
        FileSpec::generated(10, 200_000).stall(1000, 1, Some(Duration::from_millis(200))),
    );
    let t = Instant::now();
    let r = get(s.addr(), "/g", &[]);
    assert_eq!(r.end, End::Complete);
    assert_eq!(r.body, content(10, 200_000));
    assert!(t.elapsed() >= Duration::from_millis(190));
}

#[test]
fn drip_is_slow_then_normal() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(11, 300).drip(1000, 1));
    let t = Instant::now();
    let r = get(s.addr(), "/f", &[]);
    let dripped = t.elapsed();
    assert_eq!(r.body, content(11, 300));
    assert!(dripped >= Duration::from_millis(250), "{dripped:?}");
    let t = Instant::now();
    get(s.addr(), "/f", &[]);
    let normal = t.elapsed();
    assert!(
        normal < dripped / 2,
        "{normal:?} after a drip of {dripped:?}"
    );
}

#[test]
fn fail_then_succeed() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(12, 10)
            .fail(Fail::new(503, 2).retry_after("1").header("x-why", "busy")),
    );
    let mut c = Client::connect(s.addr());
    for _ in 0..2 {
        let r = c.request("GET", "/f", &[]);
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("x-why"), Some("busy"));
    }
    assert_eq!(c.request("GET", "/f", &[]).status, 200);
}

#[test]
fn wrong_content_range_shifts_claim_and_bytes() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(13, 10_000).wrong_content_range(100, 1),
    );
    let all = content(13, 10_000);
    let r = get(s.addr(), "/f", &[("Range", "bytes=1000-1999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 1100-2099/10000"));
    assert_eq!(r.body, &all[1100..2100]);
    let r = get(s.addr(), "/f", &[("Range", "bytes=1000-1999")]);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/10000"));
    // Shifted past the end: clamped, same length.
    s.add_file(
        "/g",
        FileSpec::generated(13, 10_000).wrong_content_range(500, 1),
    );
    let r = get(s.addr(), "/g", &[("Range", "bytes=9000-")]);
    assert_eq!(r.header("content-range"), Some("bytes 9000-9999/10000"));
}

#[test]
fn corrupt_flips_exactly_one_byte() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(14, 600_000).corrupt(300_001, 1));
    let all = content(14, 600_000);
    let r = get(s.addr(), "/f", &[]);
    let diffs: Vec<usize> = (0..all.len()).filter(|&i| r.body[i] != all[i]).collect();
    assert_eq!(diffs, [300_001]);
    assert_eq!(r.body[300_001], all[300_001] ^ 0xFF);
    assert_eq!(get(s.addr(), "/f", &[]).body, all);
}

#[test]
fn change_after_switches_etag_and_bytes() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(15, 8000).change_after(10_000, 99));
    let mut c = Client::connect(s.addr());
    let r1 = c.request("GET", "/f", &[]);
    assert_eq!(r1.body, content(15, 8000));
    let r2 = c.request("GET", "/f", &[]); // crosses 10 000 bytes: still old
    assert_eq!(r2.body, content(15, 8000));
    assert_eq!(r2.header("etag"), Some("\"15-8000\""));
    assert!(s.file("/f").unwrap().changed);
    let old_etag = r1.header("etag").unwrap().to_owned();
    let r3 = c.request(
        "GET",
        "/f",
        &[("Range", "bytes=0-99"), ("If-Range", &old_etag)],
    );
    assert_eq!(r3.status, 200, "the old ETag no longer matches");
    assert_eq!(r3.header("etag"), Some("\"99-8000\""));
    assert_ne!(r3.header("last-modified"), Some(DEFAULT_LAST_MODIFIED));
    assert_eq!(r3.body, content(99, 8000));
    let view = s.file("/f").unwrap();
    assert!(view.changed);
    assert_eq!(view.body, Body::Generated(Content::new(99, 8000)));
}

#[test]
fn redirects_relative_and_absolute() {
    let cdn = TestServer::start();
    cdn.add_file("/blob", FileSpec::generated(16, 50));
    let s = TestServer::start();
    s.add_file("/target", FileSpec::generated(17, 50));
    s.add_redirect("/rel", Redirect::found("/target"));
    s.add_redirect("/abs", Redirect::new(cdn.url("/blob"), 307));
    let r = get(s.addr(), "/rel", &[]);
    assert_eq!((r.status, r.header("location")), (302, Some("/target")));
    assert_eq!(
        get(s.addr(), r.header("location").unwrap(), &[]).body,
        content(17, 50)
    );
    let r = get(s.addr(), "/abs", &[]);
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some(&*cdn.url("/blob")));
}

#[test]
fn redirect_targets_signed_for_a_number_of_uses() {
    let cdn = TestServer::start();
    cdn.add_file("/blob", FileSpec::generated(23, 100));
    let hub = TestServer::start();
    hub.add_redirect("/once", Redirect::found(cdn.url("/blob")).expiring_after(1));
    hub.add_redirect(
        "/never",
        Redirect::found(cdn.url("/blob")).expiring_after(0),
    );
    let path_of = |route: &str| {
        let loc = get(hub.addr(), route, &[])
            .header("location")
            .unwrap()
            .to_owned();
        loc[cdn.base_url().len()..].to_owned()
    };
    let once = path_of("/once");
    assert!(once.contains("uses=1&nonce="), "{once}");
    assert_eq!(get(cdn.addr(), &once, &[]).status, 200);
    let r = get(cdn.addr(), &once, &[]);
    assert_eq!((r.status, &r.body[..]), (403, &b"Request has expired"[..]));
    // Each URL handed out counts on its own; more uses cannot be forged.
    let again = path_of("/once");
    assert_ne!(again, once);
    let forged = again.replace("uses=1", "uses=9");
    assert_eq!(
        get(cdn.addr(), &forged, &[]).body,
        b"Signature does not match"
    );
    assert_eq!(get(cdn.addr(), &again, &[]).status, 200);
    assert_eq!(get(cdn.addr(), &path_of("/never"), &[]).status, 403);
}

#[test]
fn expiring_redirect_target_answers_403_after_expiry() {
    let cdn = TestServer::start();
    cdn.add_file("/blob", FileSpec::generated(18, 1000));
    let hub = TestServer::start();
    hub.add_redirect(
        "/resolve",
        Redirect::found(cdn.url("/blob")).expiring(Duration::from_millis(300)),
    );
    hub.add_file("/local", FileSpec::generated(19, 10));
    hub.add_redirect(
        "/rel",
        Redirect::found("/local?x=1").expiring(Duration::from_secs(60)),
    );

    let loc = get(hub.addr(), "/resolve", &[])
        .header("location")
        .unwrap()
        .to_owned();
    let prefix = format!("{}?expires=", cdn.url("/blob"));
    assert!(loc.starts_with(&prefix), "{loc}");
    let path = &loc[cdn.base_url().len()..];
    assert_eq!(get(cdn.addr(), path, &[("Range", "bytes=0-9")]).status, 206);
    // Tampering with the expiry breaks the signature.
    let tampered = path.replace("expires=", "expires=9");
    let r = get(cdn.addr(), &tampered, &[]);
    assert_eq!(r.status, 403);
    std::thread::sleep(Duration::from_millis(350));
    let r = get(cdn.addr(), path, &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, b"Request has expired");
    // Without the query it is an ordinary file.
    assert_eq!(get(cdn.addr(), "/blob", &[]).status, 200);

    // A relative target with its own query gets `&expires=`.
    let loc = get(hub.addr(), "/rel", &[])
        .header("location")
        .unwrap()
        .to_owned();
    assert!(loc.starts_with("/local?x=1&expires="), "{loc}");
    assert_eq!(get(hub.addr(), &loc, &[]).status, 200);
}

#[test]
fn require_header_gives_401() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(20, 10).require_header("Authorization", "Bearer t"),
    );
    let r = get(s.addr(), "/f", &[]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        get(s.addr(), "/f", &[("authorization", "Bearer x")]).status,
        401
    );
    assert_eq!(
        get(s.addr(), "/f", &[("authorization", "Bearer t")]).status,
        200
    );
}

#[test]
fn connection_limit_refuses_or_closes() {
    for over in [OverLimit::Respond503, OverLimit::Close] {
        let s = TestServer::start_with(ServerOptions {
            max_connections: Some(ConnLimit { max: 1, over }),
            ..ServerOptions::default()
        });
        s.add_file("/f", FileSpec::generated(21, 10));
        let mut a = Client::connect(s.addr());
        assert_eq!(a.request("GET", "/f", &[]).status, 200);
        let mut b = Client::connect(s.addr());
        match over {
            OverLimit::Respond503 => {
                let r = b.request("GET", "/f", &[]);
                assert_eq!(r.status, 503);
                assert_eq!(r.header("connection"), Some("close"));
            }
            OverLimit::Close => {
                b.send("GET", "/f", &[], b"");
                let (data, end) = b.read_until_closed();
                assert!(data.is_empty());
                assert!(matches!(end, End::Eof | End::Reset), "{end:?}");
            }
        }
        drop(a);
        // The slot frees once the server sees the close.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut c = Client::connect(s.addr());
            c.send("GET", "/f", &[("Connection", "close")], b"");
            let (data, _) = c.read_until_closed();
            if data.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "slot never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = s.stats();
        assert!(st.refused_connections >= 1);
        assert!(st.connections >= 3);
    }
}

#[test]
fn stats_count_connections_transfers_and_bytes() {
    let s = TestServer::start();
    s.add_file("/slow", FileSpec::generated(22, 40_000).throttle(200_000));
    s.add_file("/small", FileSpec::generated(23, 1234));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let addr = s.addr();
            std::thread::spawn(move || get(addr, "/slow", &[]).body.len())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 40_000);
    }
    let mut c = Client::connect(s.addr());
    c.request("GET", "/small", &[]);
    c.request("GET", "/small", &[("Range", "bytes=0-9")]);
    let st = s.stats();
    assert_eq!(st.connections, 4);
    assert_eq!(st.requests, 5);
    assert_eq!(st.bytes_served, 3 * 40_000 + 1234 + 10);
    assert_eq!(st.peak_transfers, 3);
    assert_eq!(st.current_transfers, 0);
    assert_eq!(
        st.per_path["/slow"],
        PathStats {
            requests: 3,
            bytes_served: 120_000
        }
    );
    assert_eq!(
        st.per_path["/small"],
        PathStats {
            requests: 2,
            bytes_served: 1244
        }
    );

    let log = s.requests();
    assert_eq!(log.len(), 5);
    let last = log.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.status, last.body_bytes),
        ("GET", 206, 10)
    );
    assert_eq!(last.range.as_deref(), Some("bytes=0-9"));
    assert_eq!(last.conn, 3);
    assert_eq!(last.header("host"), Some("test"));

    s.reset_stats();
    assert_eq!(s.stats(), Stats::default());
    assert!(s.requests().is_empty());
}

#[test]
fn handlers_get_the_request_and_decide_everything() {
    let s = TestServer::start();
    s.add_handler_fn("/api/", |req| {
        Reply::json(
            200,
            &serde_json::json!({
                "path": req.path,
                "q": req.query_param("q"),
                "method": req.method,
                "body": String::from_utf8_lossy(&req.request_body),
            }),
        )
        .header("link", "<next>; rel=\"next\"")
    });
    s.add_handler_fn("/api/special", |_| Reply::text(418, "teapot"));
    s.add_file("/api/file", FileSpec::bytes(&b"static"[..]));

    let r = get(s.addr(), "/api/models/x?q=a%20b", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("link"), Some("<next>; rel=\"next\""));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["path"], "/api/models/x");
    assert_eq!(v["q"], "a b");

    let mut c = Client::connect(s.addr());
    c.send("POST", "/api/paths-info", &[], b"paths=a&paths=b");
    let r = c.read_response(false);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("POST"), Some("paths=a&paths=b"))
    );

    assert_eq!(get(s.addr(), "/api/special/1", &[]).status, 418);
    assert_eq!(get(s.addr(), "/api/file", &[]).body, b"static");
    assert!(s.remove("/api/special"));
    assert_eq!(get(s.addr(), "/api/special/1", &[]).status, 200);
}

#[test]
fn static_body_serves_ranges_and_default_etag() {
    let s = TestServer::start();
    let spec = FileSpec::bytes(&b"hello world"[..]);
    let etag = spec.current_etag();
    s.add_file("/h", spec);
    let r = get(s.addr(), "/h", &[("Range", "bytes=6-")]);
    assert_eq!((r.status, &r.body[..]), (206, &b"world"[..]));
    assert_eq!(r.header("etag"), Some(&*etag));
    assert!(etag.starts_with("\"s") && etag.ends_with("-11\""));
}

/// Runs a future on a throwaway runtime (the client side of h2/TLS tests).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn hyper_get<B>(
    sender: &mut B,
    uri: &str,
    range: Option<&str>,
) -> (u16, http::HeaderMap, bytes::Bytes)
where
    B: HyperSend,
{
    let mut req = http::Request::get(uri);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = sender
        .send(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, headers, body)
}

/// The common part of hyper's h1 and h2 client senders.
trait HyperSend {
    async fn send(
        &mut self,
        req: http::Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> http::Response<hyper::body::Incoming>;
}

impl HyperSend for hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    async fn send(
        &mut self,
        req: http::Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        self.send_request(req).await.unwrap()
    }
}

impl HyperSend for hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    async fn send(
        &mut self,
        req: http::Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        self.send_request(req).await.unwrap()
    }
}

#[test]
fn http2_prior_knowledge_with_shared_throttle() {
    let s = TestServer::start();
    s.add_file("/f", FileSpec::generated(24, 200_000).throttle(1_000_000));
    let all = content(24, 200_000);
    let addr = s.addr();
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let (status, headers, body) = hyper_get(&mut send, "/f", Some("bytes=100-199")).await;
        assert_eq!(status, 206);
        assert_eq!(headers["content-range"], "bytes 100-199/200000");
        assert_eq!(&body[..], &all[100..200]);
        // Two streams at once share the connection's 1 MB/s: 200 kB takes
        // about 0.2 s, not 0.1 s.
        let mut send2 = send.clone();
        let t = Instant::now();
        let (a, b) = tokio::join!(
            hyper_get(&mut send, "/f", Some("bytes=0-99999")),
            hyper_get(&mut send2, "/f", Some("bytes=100000-"))
        );
        let took = t.elapsed();
        assert_eq!((a.2.len(), b.2.len()), (100_000, 100_000));
        assert!(took >= Duration::from_millis(180), "{took:?}");
    });
    let log = s.requests();
    assert!(
        log.iter()
            .all(|r| r.version == http::Version::HTTP_2 && r.conn == 0)
    );
}

fn tls_config() -> (
    Arc<rustls::ServerConfig>,
    rustls::pki_types::CertificateDer<'static>,
) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (Arc::new(cfg), cert)
}

fn tls_client(
    ca: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

#[test]
fn tls_alpn_picks_http1_or_http2() {
    let (cfg, ca) = tls_config();
    let s = TestServer::start_with(ServerOptions {
        tls: Some(cfg),
        ..ServerOptions::default()
    });
    s.add_file("/f", FileSpec::generated(25, 70_000));
    assert!(s.url("/f").starts_with("https://127.0.0.1:"));
    let all = content(25, 70_000);
    let addr = s.addr();
    block_on(async move {
        for (alpn, want_h2) in [
            (&[&b"h2"[..], b"http/1.1"][..], true),
            (&[&b"http/1.1"[..]][..], false),
        ] {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = tls_client(&ca, alpn).connect(name, tcp).await.unwrap();
            assert_eq!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), want_h2);
            let io = hyper_util::rt::TokioIo::new(tls);
            let (status, body) = if want_h2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let (st, _, b) =
                    hyper_get(&mut send, "https://127.0.0.1/f", Some("bytes=5-")).await;
                (st, b)
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                let (st, _, b) = hyper_get(&mut send, "/f", Some("bytes=5-")).await;
                (st, b)
            };
            assert_eq!(status, 206);
            assert_eq!(&body[..], &all[5..]);
        }
    });
}

/// CPU seconds used so far by this process's thread named `name` (Linux).
fn thread_cpu_secs(name: &str) -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        if std::fs::read_to_string(dir.join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised command: utime and stime are the
        // 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: f64 = f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?;
        return Some(ticks / 100.0);
    }
    None
}

/// Serving throughput of a generated file over loopback, one connection,
/// and the CPU time the server thread spent on it. Meaningful only in
/// release builds:
/// `cargo test --release --lib serve_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn serve_throughput() {
    use std::io::{Read, Write};
    let s = TestServer::start();
    let len = 8u64 << 30;
    s.add_file("/big", FileSpec::generated(1, len));
    let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let cpu0 = thread_cpu_secs("testserver");
    let t = Instant::now();
    while total < len {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0);
        total += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs("testserver")
        .zip(cpu0)
        .map_or_else(|| "unknown".to_owned(), |(b, a)| format!("{:.2} s", b - a));
    println!(
        "served {} MiB in {secs:.2} s: {:.2} GB/s; server thread CPU {cpu}",
        total >> 20,
        total as f64 / secs / 1e9
    );
}

#[test]
fn ipv6_loopback() {
    let Ok(s) = TestServer::try_start_with(ServerOptions {
        bind: "[::1]:0".parse().unwrap(),
        ..ServerOptions::default()
    }) else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    assert!(s.url("/x").starts_with("http://[::1]:"), "{}", s.url("/x"));
    s.add_file("/x", FileSpec::generated(27, 10));
    assert_eq!(get(s.addr(), "/x", &[]).body, content(27, 10));
}

#[test]
fn http2_reset_fails_the_stream_and_custom_etag_changes() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(28, 300_000).reset_after(100_000, 1),
    );
    let addr = s.addr();
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/f")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "the cut must surface as an error");
    });
    assert_eq!(get(s.addr(), "/f", &[]).body.len(), 300_000);

    s.add_file(
        "/w",
        FileSpec::generated(29, 100)
            .etag("W/\"v1\"")
            .change_after(1, 30),
    );
    assert_eq!(get(s.addr(), "/w", &[]).header("etag"), Some("W/\"v1\""));
    assert_eq!(
        get(s.addr(), "/w", &[]).header("etag"),
        Some("W/\"v1-changed\"")
    );
}

#[test]
fn head_on_handlers_and_errors_and_header_overrides() {
    let s = TestServer::start();
    s.add_handler_fn("/h", |_| {
        Reply::text(200, "twelve bytes").header("x-linked-size", "99")
    });
    s.add_handler_fn("/lie", |_| {
        Reply::text(200, "abc").header("content-length", "5000")
    });
    s.add_file(
        "/f",
        FileSpec::generated(26, 10)
            .header("content-type", "text/plain")
            .header("content-length", "77")
            .header("link", "<a>")
            .header("link", "<b>"),
    );
    let mut c = Client::connect(s.addr());
    let r = c.request("HEAD", "/h", &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("12")));
    let r = c.request("HEAD", "/lie", &[]);
    assert_eq!(r.header("content-length"), Some("5000"));
    let r = c.request("GET", "/lie", &[]);
    assert_eq!(
        (r.header("content-length"), &r.body[..]),
        (Some("3"), &b"abc"[..])
    );
    let r = c.request("HEAD", "/nothing-here", &[]);
    assert_eq!(r.status, 404);
    let r = c.request("GET", "/f", &[]);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("10"));
    let links: Vec<_> = r.headers.iter().filter(|(k, _)| k == "link").collect();
    assert_eq!(links.len(), 2);
    // Still in sync after all the HEADs.
    assert_eq!(c.request("GET", "/h", &[]).body, b"twelve bytes");
}

#[test]
fn head_sends_and_counts_no_body_anywhere() {
    let s = TestServer::start();
    s.add_file(
        "/f",
        FileSpec::generated(31, 10).require_header("x-key", "1"),
    );
    let mut c = Client::connect(s.addr());
    let r = c.request("HEAD", "/missing", &[]);
    assert_eq!((r.status, r.header("content-length")), (404, Some("10")));
    let r = c.request("HEAD", "/f", &[]);
    assert_eq!(r.status, 401);
    let r = c.request("GET", "/f", &[("x-key", "1")]);
    assert_eq!(r.body, content(31, 10));
    let st = s.stats();
    assert_eq!((st.bytes_served, st.peak_transfers), (10, 1));
}
