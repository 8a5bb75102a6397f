//! Requests sent ahead (HTTP/1.1 pipelining) on plain-http and HTTPS
//! connections, seen from a server written for the purpose: a blocking HTTP/1.1 range
//! server that notes when the next request is already on the socket while
//! it is still sending the current answer, or, playing a server that does
//! not pipeline, throws such requests away.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::support::*;

/// Byte `i` of the served file.
fn byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i >> 16) as u8
}

/// The sha256 of the `size` bytes served, in hex.
fn served_sha256(size: u64) -> String {
    let mut h = sha2::Sha256::new();
    h.update((0..size).map(byte).collect::<Vec<u8>>());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Answers during which the next request had already arrived.
    overlapped: AtomicUsize,
    /// Requests thrown away because they arrived during an answer.
    dropped: AtomicUsize,
}

struct RangeServer {
    url: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Drop for RangeServer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The connection a [`serve`] thread answers on: TCP, or TLS over it.
trait Wire: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Wire for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// Serves `size` bytes at `/f.bin` to range requests, each answer sent in
/// 16 KiB pieces at about `rate` bytes/s, over TLS with `tls`. With
/// `drop_pipelined`, requests that arrived while an answer was being sent
/// are thrown away, as by a server that reads one request at a time and
/// discards the rest of its buffer. Stops accepting when dropped, or after
/// a minute whatever happens.
fn range_server(
    size: u64,
    rate: u64,
    drop_pipelined: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> RangeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/f.bin", listener.local_addr().unwrap());
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (stats.clone(), stop.clone());
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sp.load(Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((s, _)) => {
                    st.connections.fetch_add(1, Relaxed);
                    let st = st.clone();
                    s.set_nonblocking(false).unwrap();
                    match &tls {
                        None => thread::spawn(move || serve(s, size, rate, drop_pipelined, &st)),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                            let s = rustls::StreamOwned::new(conn, s);
                            thread::spawn(move || serve(s, size, rate, drop_pipelined, &st))
                        }
                    };
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(_) => return,
            }
        }
    });
    RangeServer { url, stats, stop }
}

/// Answers requests on one connection until the client closes it.
fn serve(mut s: impl Wire, size: u64, rate: u64, drop_pipelined: bool, stats: &Stats) {
    s.tcp()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = Vec::new();
    const PIECE: u64 = 16 << 10;
    let pause = Duration::from_secs_f64(PIECE as f64 / rate as f64);
    loop {
        let Some(head) = read_head(&mut s, &mut buf) else {
            return;
        };
        stats.requests.fetch_add(1, Relaxed);
        let range = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let spec = name
                .eq_ignore_ascii_case("range")
                .then(|| value.trim().strip_prefix("bytes="))??;
            let (a, b) = spec.split_once('-')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?.min(size - 1)))
        });
        let Some((first, last)) = range else {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {first}-{last}/{size}\r\nETag: \"pipelining\"\r\n\r\n",
            last + 1 - first
        );
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut seen_next = false;
        let mut at = first;
        while at <= last {
            let end = (at + PIECE).min(last + 1);
            let piece: Vec<u8> = (at..end).map(byte).collect();
            if drop_pipelined && end == last + 1 {
                // Before the last piece, the client cannot have the whole
                // answer: whatever it sent is a request sent ahead.
                let lost = take_waiting(&mut s, &mut buf);
                let n = lost.windows(4).filter(|w| w == b"GET ").count();
                stats.dropped.fetch_add(n, Relaxed);
            }
            if s.write_all(&piece).is_err() {
                return;
            }
            at = end;
            if at <= last && !seen_next && next_request_waiting(&s, &buf) {
                seen_next = true;
                stats.overlapped.fetch_add(1, Relaxed);
            }
            thread::sleep(pause);
        }
    }
}

/// Takes every byte already received, without waiting for more.
fn take_waiting(s: &mut impl Wire, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut all = std::mem::take(buf);
    s.tcp().set_nonblocking(true).unwrap();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
    }
    s.tcp().set_nonblocking(false).unwrap();
    all
}

/// Whether request bytes are waiting, without reading them (over TLS, the
/// next request's record waiting on the socket).
fn next_request_waiting(s: &impl Wire, buf: &[u8]) -> bool {
    if !buf.is_empty() {
        return true;
    }
    let s = s.tcp();
    s.set_nonblocking(true).unwrap();
    let waiting = matches!(s.peek(&mut [0u8; 1]), Ok(n) if n > 0);
    s.set_nonblocking(false).unwrap();
    waiting
}

/// Reads one request head; what follows it stays in `buf`.
fn read_head(s: &mut impl Wire, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).ok()?;
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn the_next_range_is_asked_for_while_the_current_one_still_arrives() {
    pipelines(false);
}

/// The same over TLS: our own records carry HTTPS, so it pipelines too.
#[test]
fn https_asks_for_the_next_range_while_the_current_one_still_arrives() {
    pipelines(true);
}

fn pipelines(tls: bool) {
    // 2 connections, 2 MiB each at 512 KiB/s: requests of 1 MiB (the
    // smallest), so every connection asks at least twice.
    let size = 4u64 << 20;
    let pki = crate::tls::pki();
    let server = range_server(size, 512 << 10, false, tls.then(|| pki.server.clone()));
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url, &out);
    s.connections = 2;
    s.per_source = 2;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut opts = hfd::net::NetOptions::default();
    opts.tls.ca_certificate = Some(ca);
    download_with(&s, opts, hfd::engine::Progress::new()).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(sha256_file(&out), served_sha256(size));

    let (conns, requests, overlapped) = (
        server.stats.connections.load(Relaxed),
        server.stats.requests.load(Relaxed),
        server.stats.overlapped.load(Relaxed),
    );
    assert!(
        overlapped >= 1,
        "no request arrived while an answer was still being sent ({requests} requests on {conns} connections)"
    );
    assert!(
        requests > conns,
        "connections carry more than one request each ({requests} requests on {conns} connections)"
    );
}

/// A server that throws away requests sent ahead: each such request costs a
/// short wait for an answer that never comes, and after two in a row the
/// source is asked one request at a time. Without that, every connection
/// would lose its second request and wait the whole response timeout for
/// it, again and again.
#[test]
fn a_server_that_drops_pipelined_requests_is_asked_one_at_a_time() {
    // 2 connections, 3 MiB each at 512 KiB/s: 1 MiB requests, so each
    // connection could send ahead twice, four requests to lose in all.
    let size = 6u64 << 20;
    let server = range_server(size, 512 << 10, true, None);
    let dir = tempdir();
    let out = dir.path().join("f.bin");
    let mut s = spec(&server.url, &out);
    s.connections = 2;
    s.per_source = 2;
    download(&s).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(sha256_file(&out), served_sha256(size));

    let (requests, dropped) = (
        server.stats.requests.load(Relaxed),
        server.stats.dropped.load(Relaxed),
    );
    assert!(
        dropped >= 1,
        "the server dropped nothing: the test shows nothing"
    );
    assert!(
        dropped <= 2,
        "{dropped} requests sent ahead were lost ({requests} answered): pipelining should stop after two"
    );
}
