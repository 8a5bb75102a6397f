//! Several sources: `hfget --bench` measurements, and downloads that use
//! every mirror at once.

use std::time::Duration;

use crate::support::*;

#[test]
fn bench_names_the_faster_source_and_reports_a_failing_one() {
    let slow = TestServer::start();
    let fast = TestServer::start();
    let broken = TestServer::start();
    slow.add_file(
        "/f.bin",
        FileSpec::generated(61, 32 << 20).throttle(1 << 20),
    );
    fast.add_file(
        "/f.bin",
        FileSpec::generated(61, 32 << 20).throttle(4 << 20),
    );
    broken.add_file(
        "/f.bin",
        FileSpec::generated(61, 32 << 20).fail(Fail::new(500, 1000)),
    );
    let dir = tempdir();
    let (s, f, b) = (slow.url("/f.bin"), fast.url("/f.bin"), broken.url("/f.bin"));
    let (code, out, err) =
        run(hfget(dir.path()).args(["--bench", "--json", "--seconds", "1", "-x", "4", &s, &b, &f]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["fastest"], serde_json::Value::String(f.clone()));
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let row = |u: &str| rows.iter().find(|r| r["source"] == u).unwrap();
    let (rs, rf, rb) = (row(&s), row(&f), row(&b));
    for r in [rs, rf] {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["ttfb_ms"].as_f64().unwrap() > 0.0);
        assert!(r["bytes"].as_u64().unwrap() > 0);
    }
    let (ts, tf) = (
        rs["throughput_bps"].as_f64().unwrap(),
        rf["throughput_bps"].as_f64().unwrap(),
    );
    assert!(tf > 2.5 * ts, "fast {tf} vs slow {ts}");
    assert!(rb["error"].as_str().unwrap().contains("500"), "{rb}");
    assert_eq!(rb["throughput_bps"].as_f64().unwrap(), 0.0);
    // Nothing was written.
    assert!(listing(dir.path()).is_empty());
    // The table marks the fastest.
    let (code, out, _) =
        run(hfget(dir.path()).args(["--bench", "--seconds", "0.5", "-x", "2", &s, &f]));
    assert_eq!(code, 0);
    let fast_line = out.lines().find(|l| l.starts_with(&f)).unwrap();
    assert!(fast_line.contains("fastest"), "{out}");
    // Every source failing: a non-zero exit.
    let (code, _, _) = run(hfget(dir.path()).args(["--bench", "--seconds", "0.2", &b]));
    assert_ne!(code, 0);
}

#[test]
fn multi_source_download_is_exact_and_favours_the_faster_source() {
    let slow = TestServer::start();
    let fast = TestServer::start();
    let len = 24 << 20;
    let file = FileSpec::generated(62, len);
    let want = file.sha256_hex();
    slow.add_file("/f.bin", file.clone().throttle(1 << 20));
    fast.add_file("/f.bin", file.throttle(4 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&slow.url("/f.bin"), &out);
    s.urls.push(url::Url::parse(&fast.url("/f.bin")).unwrap());
    s.per_source = 2;
    s.connections = 4;
    let o = download(&s).unwrap();
    assert_eq!(sha256_file(&out), want);
    let (from_slow, from_fast) = (o.source_bytes[0], o.source_bytes[1]);
    assert_eq!(from_slow + from_fast, len);
    // The fast mirror is 4 times faster: it must serve clearly more.
    assert!(
        from_fast > 2 * from_slow,
        "slow {from_slow}, fast {from_fast}"
    );
    // Within -x per source.
    assert!(slow.stats().peak_transfers <= 2 && fast.stats().peak_transfers <= 2);
}

#[test]
fn a_source_dying_midway_leaves_the_others_to_finish() {
    let doomed = TestServer::start();
    let steady = TestServer::start();
    let len = 16 << 20;
    let file = FileSpec::generated(63, len);
    let want = file.sha256_hex();
    doomed.add_file("/f.bin", file.clone().throttle(2 << 20));
    steady.add_file("/f.bin", file.throttle(2 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&doomed.url("/f.bin"), &out);
    s.urls.push(url::Url::parse(&steady.url("/f.bin")).unwrap());
    s.per_source = 2;
    s.connections = 4;
    s.retry.max_tries = 3;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        drop(doomed);
    });
    let o = download(&s).unwrap_or_else(|e| panic!("{e}"));
    killer.join().unwrap();
    assert_eq!(sha256_file(&out), want);
    assert!(o.source_bytes[1] > len / 2, "{:?}", o.source_bytes);
}

#[test]
fn a_source_with_other_content_is_refused_by_name() {
    let good = TestServer::start();
    let other = TestServer::start();
    let len = 8 << 20;
    let file = FileSpec::generated(64, len);
    let want = file.sha256_hex();
    good.add_file("/f.bin", file.throttle(4 << 20));
    // Same size, other bytes, other ETag.
    other.add_file("/f.bin", FileSpec::generated(65, len).throttle(4 << 20));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let (code, _, err) = run(hfget(dir.path()).args([
        &good.url("/f.bin"),
        &other.url("/f.bin"),
        "-x",
        "2",
        "-o",
        "f.bin",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(sha256_file(&out), want, "exactly the first source's file");
    assert!(
        err.contains("dropping source") && err.contains(&other.url("/f.bin")),
        "the refused source is named: {err}"
    );
}
