//! Serves generated files from the project's test server, for shell
//! scripts (crash campaigns, the benchmark harness) and the README demo.
//!
//! ```text
//! cargo run --release --example serve -- --size 512M --throttle 8M
//! http://127.0.0.1:40123/file.bin 536870912 9f2c...e1
//! ```
//!
//! Prints one line per URL, `URL SIZE SHA256`, once everything is ready,
//! then serves until SIGINT, SIGTERM, or stdin reaching EOF (so a parent
//! that dies takes the server with it). Stdin is not watched when it is
//! `/dev/null` (a background job in a script) or with `--no-stdin`.
//!
//! `--tls CA_FILE` serves HTTPS with a throwaway CA (written to `CA_FILE`
//! for the client's `--ca-certificate`); `--proxies` also runs the
//! in-process SOCKS5 and HTTP proxies of `hfd_testserver::proxy` and prints
//! a line `proxy URL` for each (benches/proxy.sh compares them with the
//! real ones).

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use hfd::size::parse_size;
use hfd_testserver::proxy::{HttpProxy, HttpProxyOptions, SocksOptions, SocksProxy};
use hfd_testserver::tls::throwaway_tls;
use hfd_testserver::{FileSpec, ServerOptions, TestServer};

#[derive(Parser, Debug)]
#[command(about = "Serve deterministic generated files over HTTP on loopback")]
struct Args {
    /// Size of the single file (K, M, G, T suffixes are powers of 1024).
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    size: u64,
    /// Content seed; with --files, file i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per-connection rate limit in bytes/s (e.g. 8M).
    #[arg(long, value_parser = parse_size)]
    throttle: Option<u64>,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on (keep it loopback).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// URL path of the single file.
    #[arg(long, default_value = "/file.bin")]
    path: String,
    /// Serve a set of N files /many/part-001.bin ... instead of one file.
    #[arg(long)]
    files: Option<usize>,
    /// Smallest file of the set.
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    min_size: u64,
    /// Largest file of the set.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    max_size: u64,
    /// The first response covering this offset of each file stops sending
    /// there for good (one stalled connection; benches/stall.sh).
    #[arg(long, value_name = "OFFSET", value_parser = parse_size)]
    stall_at: Option<u64>,
    /// Print "-" instead of computing each file's SHA-256.
    #[arg(long)]
    no_sha256: bool,
    /// Do not stop when stdin reaches EOF.
    #[arg(long)]
    no_stdin: bool,
    /// Serve HTTPS with a throwaway CA and a certificate for 127.0.0.1 and
    /// localhost; the CA certificate (PEM) is written to this file.
    #[arg(long, value_name = "CA_FILE")]
    tls: Option<PathBuf>,
    /// Also run the in-process SOCKS5 and HTTP proxies; prints `proxy URL`
    /// lines after the file lines.
    #[arg(long)]
    proxies: bool,
}

fn main() {
    let args = Args::parse();
    if args.files.is_some() && args.min_size > args.max_size {
        eprintln!("serve: --min-size is larger than --max-size");
        std::process::exit(2);
    }
    let tls = match &args.tls {
        None => None,
        Some(ca_file) => match throwaway_tls(ca_file) {
            Ok(cfg) => Some(cfg),
            Err(e) => {
                eprintln!("serve: --tls: {e}");
                std::process::exit(1);
            }
        },
    };
    let server = match TestServer::try_start_with(ServerOptions {
        bind: SocketAddr::new(args.bind, args.port),
        tls,
        ..ServerOptions::default()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve: cannot listen on {}:{}: {e}", args.bind, args.port);
            std::process::exit(1);
        }
    };

    let mut files: Vec<(String, FileSpec)> = Vec::new();
    match args.files {
        None => files.push((args.path.clone(), FileSpec::generated(args.seed, args.size))),
        Some(n) => {
            // Sizes come from the seed too, so a rerun serves the same set.
            let mut rng = fastrand::Rng::with_seed(args.seed);
            let width = n.to_string().len().max(3);
            for i in 0..n {
                let len = rng.u64(args.min_size..=args.max_size);
                let seed = args.seed.wrapping_add(i as u64);
                let path = format!("/many/part-{:0width$}.bin", i + 1);
                files.push((path, FileSpec::generated(seed, len)));
            }
        }
    }
    if let Some(rate) = args.throttle {
        files = files
            .into_iter()
            .map(|(p, f)| (p, f.throttle(rate)))
            .collect();
    }
    if let Some(at) = args.stall_at {
        files = files
            .into_iter()
            .map(|(p, f)| (p, f.stall(at, 1, None)))
            .collect();
    }
    for (path, spec) in &files {
        server.add_file(path, spec.clone());
    }

    let hashes = if args.no_sha256 {
        vec!["-".to_owned(); files.len()]
    } else {
        sha256_all(&files)
    };
    let mut out = std::io::stdout().lock();
    for ((path, spec), sha) in files.iter().zip(&hashes) {
        let _ = writeln!(out, "{} {} {sha}", server.url(path), spec.len());
    }
    let mut proxies = None;
    if args.proxies {
        let started = SocksProxy::start(SocksOptions::default())
            .and_then(|s| HttpProxy::start(HttpProxyOptions::default()).map(|h| (s, h)));
        match started {
            Ok((socks, http)) => {
                let _ = writeln!(out, "proxy {}", socks.url("socks5h"));
                let _ = writeln!(out, "proxy {}", http.url());
                proxies = Some((socks, http));
            }
            Err(e) => {
                eprintln!("serve: cannot start the proxies: {e}");
                std::process::exit(1);
            }
        }
    }
    let _ = out.flush();
    drop(out);

    wait_for_stop(!args.no_stdin && !stdin_is_dev_null());
    drop(proxies);
    drop(server);
}

/// Hashes on every core: a set of large files would otherwise delay the
/// first output line by seconds.
fn sha256_all(files: &[(String, FileSpec)]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(vec![String::new(); files.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((_, spec)) = files.get(i) else { break };
                    let sha = spec.sha256_hex();
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = sha;
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// True when stdin is `/dev/null`, where EOF says nothing about the parent.
fn stdin_is_dev_null() -> bool {
    std::fs::read_link("/proc/self/fd/0").is_ok_and(|p| p.as_os_str() == "/dev/null")
}

/// Blocks until SIGINT, SIGTERM or (when `watch_stdin`) EOF on stdin.
fn wait_for_stop(watch_stdin: bool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serve: cannot start a runtime: {e}");
            return;
        }
    };
    rt.block_on(async {
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        if watch_stdin {
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut stdin = std::io::stdin().lock();
                while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
                    line.clear();
                }
                let _ = eof_tx.send(());
            });
        }
        let eof = async {
            if watch_stdin {
                let _ = eof_rx.await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let term = async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = eof => {}
        }
    });
}
