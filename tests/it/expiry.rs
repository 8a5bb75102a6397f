//! Signed redirect URLs that expire after a few requests: the source
//! resolves again as often as the bytes keep coming, asks for larger ranges
//! after each re-resolve, and gives up only on URLs that never serve data.

use hfd::client::source::MAX_FRUITLESS_RERESOLVES;
use hfd::engine::Error;

use crate::support::*;

/// The length a `Range: bytes=A-B` asks for.
fn range_len(r: &hfd_testserver::RequestInfo) -> Option<u64> {
    let v = r.header("range")?.strip_prefix("bytes=")?;
    let (a, b) = v.split_once('-')?;
    Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1)
}

#[test]
fn urls_expiring_after_each_request_do_not_end_a_download_that_gets_data() {
    let hub = TestServer::start();
    let cdn = TestServer::start();
    let len = 8 << 20;
    // 384 KiB/s per connection: two seconds' worth is under the 1 MiB
    // minimum, so requests the rate asks for are 1 MiB.
    let file = FileSpec::generated(21, len).throttle(384 << 10);
    let want = file.sha256_hex();
    cdn.add_file("/blob", file);
    hub.add_redirect(
        "/f.bin",
        Redirect::found(cdn.url("/blob")).expiring_after(1),
    );
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&hub.url("/f.bin"), &out);
    s.connections = 4;
    s.per_source = 4;
    download(&s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    let resolves = hub.requests().len() as u32;

    // More re-resolves than the budget: only fruitless ones count.
    assert!(
        resolves > MAX_FRUITLESS_RERESOLVES + 1,
        "{resolves} resolves: the URLs did not expire often enough to test the budget"
    );
    let cdn_reqs = cdn.requests();
    assert!(cdn_reqs.iter().any(|r| r.status == 403), "no URL expired");
    // After a re-resolve, ranges grow beyond what the rate alone asks for
    // (up to the 2 MiB a connection's region holds here).
    let longest = cdn_reqs
        .iter()
        .filter(|r| r.status == 206)
        .filter_map(range_len)
        .max()
        .unwrap();
    assert!(longest > 1 << 20, "longest range {longest}");
    let served: u64 = cdn_reqs.iter().map(|r| r.body_bytes).sum();
    assert!(served >= len, "{served}");
}

#[test]
fn urls_that_never_serve_data_fail_clearly_after_the_budget() {
    let hub = TestServer::start();
    let cdn = TestServer::start();
    cdn.add_file("/blob", FileSpec::generated(22, 1 << 20));
    hub.add_redirect(
        "/f.bin",
        Redirect::found(cdn.url("/blob")).expiring_after(0),
    );
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&hub.url("/f.bin"), &out);
    s.connections = 4;
    let e = download(&s).unwrap_err();
    assert!(matches!(e, Error::Auth { status: 403, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("without receiving any data") && msg.contains("Request has expired"),
        "{msg}"
    );
    // The first resolve and the budget's re-resolves, no more.
    assert_eq!(hub.requests().len() as u32, MAX_FRUITLESS_RERESOLVES + 1);
    assert!(cdn.requests().iter().all(|r| r.status == 403));
    assert!(!out.exists());
}
