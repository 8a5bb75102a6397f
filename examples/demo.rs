//! The README's first command: the engine against the project's own local
//! server, with generated data throttled per connection (as many mirrors
//! throttle), downloaded with 1 and with 16 connections.
//!
//! `cargo run --release --example demo` — no internet needed: everything runs
//! on 127.0.0.1 and the files go to a temporary folder that is removed after.

use std::time::Instant;

use hfd::engine::{self, Checksum, DownloadSpec, Progress};
use hfd::net::{Net, NetOptions};
use hfd::size::{Bytes, Rate};
use hfd::testserver::{FileSpec, TestServer};
use tokio_util::sync::CancellationToken;

const SIZE: u64 = 48 << 20;
const PER_CONNECTION: u64 = 8 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::start();
    let file = FileSpec::generated(2026, SIZE).throttle(PER_CONNECTION);
    let sha = file.sha256_hex();
    server.add_file("/demo/model.safetensors", file);
    let url = server.url("/demo/model.safetensors");
    println!(
        "Local server: {url}\n  {} of generated data, throttled to {} per connection",
        Bytes(SIZE),
        Rate(PER_CONNECTION as f64)
    );

    let dir = tempfile::tempdir()?;
    let net = Net::new(NetOptions::default());
    let mut rates = Vec::new();
    for conns in [1usize, 16] {
        let out = dir.path().join(format!("model-{conns}.safetensors"));
        let mut spec = DownloadSpec::new(url.parse()?, &out);
        spec.connections = conns;
        spec.per_source = conns;
        spec.checksum = Some(Checksum::sha256(&sha)?);
        server.reset_stats();
        let started = Instant::now();
        let o = engine::download(&net, &spec, Progress::new(), CancellationToken::new()).await?;
        let secs = started.elapsed().as_secs_f64();
        let rate = SIZE as f64 / secs;
        rates.push(rate);
        println!(
            "{conns:>2} connection{}: {} in {secs:.2} s = {} (sha-256 verified; the server saw {} at once)",
            if conns == 1 { " " } else { "s" },
            Bytes(o.total.unwrap_or(0)),
            Rate(rate),
            server.stats().peak_transfers
        );
    }
    println!(
        "16 connections were {:.1}x faster than 1 (the ideal on this throttle is 16x).",
        rates[1] / rates[0]
    );
    Ok(())
}
