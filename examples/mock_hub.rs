//! Serves a generated repo from the project's mock Hugging Face Hub until
//! killed, for trying `hfd` (or hfd.sh) by hand and for benchmarks:
//!
//! ```sh
//! cargo run --release --example mock_hub -- --repo demo/model --files 200 \
//!     --min-size 1M --max-size 20M --throttle 8M
//! # prints: HF_ENDPOINT=http://127.0.0.1:PORT
//! HF_ENDPOINT=http://127.0.0.1:PORT hfd demo/model -x 16
//! ```
//!
//! Options: `--repo ID` (default demo/model), `--files N` LFS shards
//! (default 20), `--min-size`/`--max-size` (aria2 size syntax, default
//! 1M/8M), `--throttle RATE` per connection on the CDN (default or 0: none),
//! `--seed N`, `--token T` (makes the repo gated, needing that token),
//! `--salt S` (commit ids from S instead of the address: two instances with
//! the same salt and repo options name the same commits, like the Hub and a
//! mirror, so `hfd --endpoint A --endpoint B` can use both), `--xet` (the
//! shards are also stored in a mock Xet CAS: hfd and hf_xet read them
//! natively; `stats` then adds `cas_requests=N xorb_requests=N xorb_bytes=N`),
//! `--tls CA_FILE` (every server, hub, CDN and with `--xet` the CAS and
//! transfer servers, speaks HTTPS with a certificate from a throwaway CA,
//! written to CA_FILE as PEM for `hfd --ca-certificate CA_FILE` or
//! `SSL_CERT_FILE`; the printed endpoint then says https).
//! Everything listens on 127.0.0.1.
//!
//! On stdin, the line `stats` prints one line of counters since the last
//! `stats` (`resolves=N api=N cdn_requests=N cdn_bytes=N`) and resets them,
//! for scripts; end of input (or Ctrl-C) stops the server.

use std::io::Write;

use std::path::PathBuf;

use hfd::size::parse_size;
use hfd_testserver::hub::{HubOptions, MockHub, RepoSpec};
use hfd_testserver::tls::throwaway_tls;

fn main() -> Result<(), String> {
    let mut repo = "demo/model".to_string();
    let mut files = 20usize;
    let mut min = 1u64 << 20;
    let mut max = 8u64 << 20;
    let mut throttle = None;
    let mut seed = 2026u64;
    let mut token = None;
    let mut salt = None;
    let mut xet = false;
    let mut tls_ca: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--repo" => repo = value()?,
            "--files" => files = value()?.parse().map_err(|e| format!("--files: {e}"))?,
            "--min-size" => min = parse_size(&value()?)?,
            "--max-size" => max = parse_size(&value()?)?,
            "--throttle" => throttle = Some(parse_size(&value()?)?).filter(|&t| t > 0),
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--token" => token = Some(value()?),
            "--salt" => salt = Some(value()?),
            "--xet" => xet = true,
            "--tls" => tls_ca = Some(value()?.into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let tls = match &tls_ca {
        Some(ca_file) => Some(throwaway_tls(ca_file).map_err(|e| format!("--tls: {e}"))?),
        None => None,
    };
    let hub = MockHub::start_with(HubOptions { xet, tls });
    if let Some(s) = &salt {
        hub.set_commit_salt(s);
    }
    let mut spec = RepoSpec::generated(repo.clone(), files, min..max.max(min + 1), seed, throttle);
    if let Some(t) = &token {
        hub.set_token(t);
        spec = spec.gated("manual");
    }
    if xet {
        hub.xet().set_xorb_limit(64 << 20);
        for f in spec.files.iter_mut().filter(|f| f.lfs) {
            f.xet = true;
        }
    }
    let total: u64 = spec.files.iter().map(|f| f.spec.len()).sum();
    hub.add_repo(spec);
    println!("HF_ENDPOINT={}", hub.endpoint());
    eprintln!(
        "serving {repo}: {} files, {total} bytes{}; Ctrl-C to stop",
        files + 4,
        throttle.map_or(String::new(), |t| format!(
            ", CDN throttled to {t} B/s per connection"
        ))
    );
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        if line.trim() == "stats" {
            let hub_reqs = hub.hub().requests();
            let resolves = hub_reqs
                .iter()
                .filter(|r| r.path.contains("/resolve/"))
                .count();
            let api = hub_reqs
                .iter()
                .filter(|r| {
                    r.path.starts_with("/api/") && !r.path.starts_with("/api/resolve-cache/")
                })
                .count();
            let cdn = hub.cdn().stats();
            let mut extra = String::new();
            if xet {
                let (c, t) = (hub.xet().cas().stats(), hub.xet().transfer().stats());
                extra = format!(
                    " cas_requests={} xorb_requests={} xorb_bytes={}",
                    c.requests, t.requests, t.bytes_served
                );
                hub.xet().cas().reset_stats();
                hub.xet().transfer().reset_stats();
            }
            println!(
                "resolves={resolves} api={api} cdn_requests={} cdn_bytes={}{extra}",
                cdn.requests, cdn.bytes_served
            );
            let _ = std::io::stdout().flush();
            hub.hub().reset_stats();
            hub.cdn().reset_stats();
        }
    }
}
