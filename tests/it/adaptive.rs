//! The adaptive connection count (`hfget` without `-x`) against servers
//! that reward more connections, and one that refuses them.

use std::time::Duration;

use hfd::engine::adaptive::Adaptive;
use hfd_testserver::{ConnLimit, OverLimit};

use crate::support::*;

/// Adaptive growth from 4 connections, deciding every second (hfget: two)
/// so the tests stay short; the ceiling is 64 as in `hfget`. Half-second
/// windows made the growth test fail now and then while the rest of the
/// suite loaded both cores: one starved window reads as a step that did
/// not pay.
fn adaptive_spec(url: &str, out: &std::path::Path) -> hfd::engine::DownloadSpec {
    let mut s = spec(url, out);
    s.connections = 64;
    s.per_source = 64;
    s.min_split = 256 << 10;
    s.adaptive = Some(Adaptive {
        start: 4,
        window: Duration::from_secs(1),
    });
    s
}

#[test]
fn a_per_connection_throttle_is_climbed_without_choosing_n() {
    // 256 KiB/s per connection: every added connection pays in full, as
    // long as the server can deliver it. On a starved machine (CPU steal)
    // the server falls short of its throttle, more connections do not
    // pay, and stopping is right: so the climb is judged against what the
    // server delivered, sampled on its side, not against the wall clock.
    const THROTTLE: u64 = 256 << 10;
    let server = TestServer::start();
    let file = FileSpec::generated(31, 32 << 20).throttle(THROTTLE);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let (o, samples) = sampling(&server, || {
        download(&adaptive_spec(&server.url("/f.bin"), &out))
    });
    let o = o.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    let st = server.stats();
    let delivered = per_transfer_rate(&samples);
    if delivered < THROTTLE as f64 * 0.7 {
        // The server could not keep its own throttle: growth was not owed.
        eprintln!(
            "the server delivered {:.0} KiB/s per transfer (throttle {} KiB/s): starved, the climb stopped at {}",
            delivered / 1024.0,
            THROTTLE >> 10,
            o.connections
        );
        return;
    }
    // 4 -> 6 -> 9 -> 14 -> 21 -> ...: at least three steps were taken.
    assert!(
        o.connections >= 14,
        "peak {} connections while the server delivered {:.0} KiB/s per transfer",
        o.connections,
        delivered / 1024.0
    );
    assert!(st.peak_transfers >= 12, "{st:?}");
}

/// The median, over one-second spans with at least four transfers in
/// flight, of the bytes the server delivered per transfer per second.
fn per_transfer_rate(samples: &[Sample]) -> f64 {
    let mut rates: Vec<f64> = samples
        .windows(11)
        .filter_map(|w| {
            let (a, b) = (w[0], w[10]);
            let transfers = w.iter().map(|s| s.transfers).sum::<u64>() as f64 / w.len() as f64;
            let secs = b.at.duration_since(a.at).as_secs_f64();
            (transfers >= 4.0 && secs > 0.0)
                .then(|| (b.served - a.served) as f64 / secs / transfers)
        })
        .collect();
    if rates.is_empty() {
        return 0.0;
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[test]
fn a_server_refusing_more_connections_stops_the_growth() {
    // More than 6 at once get 503: growth must stop there, not keep trying.
    let server = TestServer::start_with(ServerOptions {
        max_connections: Some(ConnLimit {
            max: 6,
            over: OverLimit::Respond503,
        }),
        ..ServerOptions::default()
    });
    let file = FileSpec::generated(32, 6 << 20).throttle(512 << 10);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let o = download(&adaptive_spec(&server.url("/f.bin"), &out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    let st = server.stats();
    // One step past the limit (6 -> 9) is how it learns; no more.
    assert!(o.connections <= 9, "peak {} connections", o.connections);
    assert!(st.refused_connections < 20, "{st:?}");
}

#[test]
fn a_file_too_small_to_split_further_stays_as_it_starts() {
    // Two pieces' worth at -k 256 KiB: the start is already everything.
    let server = TestServer::start();
    let file = FileSpec::generated(33, 1 << 20).throttle(256 << 10);
    let want = file.sha256_hex();
    server.add_file("/f.bin", file);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let o = download(&adaptive_spec(&server.url("/f.bin"), &out)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sha256_file(&out), want);
    assert!(o.connections <= 4, "peak {} connections", o.connections);
}
