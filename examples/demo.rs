//! The README's first command: the engine against the project's own local
//! server, with generated data throttled per connection (as many mirrors
//! throttle), downloaded with 1 and with 16 connections; then `hfd`
//! downloading a generated multi-file repo from the project's mock Hugging
//! Face Hub, with `HF_ENDPOINT` pointing at it.
//!
//! `cargo run --release --example demo` — no internet needed: everything runs
//! on 127.0.0.1 and the files go to a temporary folder that is removed after.

use std::time::Instant;

use clap::Parser;
use hfd::engine::{self, Checksum, DownloadSpec, Progress};
use hfd::net::{Net, NetOptions};
use hfd::size::{Bytes, Rate};
use hfd::ui::{Presenter, Term, Verbosity};
use hfd_testserver::hub::{MockHub, RepoSpec};
use hfd_testserver::{FileSpec, TestServer};
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
    println!();
    hub_demo().await
}

/// Part two: `hfd` against the mock Hub. A gated repo (so a token is
/// needed) with a few small git files and 12 LFS shards on a second server
/// (the "CDN"), throttled per connection like the first part. The same code
/// as the `hfd` binary runs in-process, reading `HF_ENDPOINT` from the map
/// below instead of the environment.
async fn hub_demo() -> Result<(), Box<dyn std::error::Error>> {
    const TOKEN: &str = "hf_demo_token";
    let hub = MockHub::start();
    hub.set_token(TOKEN);
    let repo = RepoSpec::generated(
        "demo/tiny-model",
        12,
        (2 << 20)..(6 << 20),
        7,
        Some(PER_CONNECTION),
    )
    .gated("manual");
    let files = repo.files.len();
    let total: u64 = repo.files.iter().map(|f| f.spec.len()).sum();
    hub.add_repo(repo);
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("tiny-model");
    let endpoint = hub.endpoint();
    println!(
        "Mock Hub: {endpoint} (LFS files on {}), repo demo/tiny-model: {files} files, {}",
        hub.cdn().base_url(),
        Bytes(total)
    );
    let argv = [
        "hfd",
        "demo/tiny-model",
        "-x",
        "16",
        "--hf_token",
        TOKEN,
        "--local-dir",
        local.to_str().ok_or("temporary folder name is not UTF-8")?,
    ];
    println!(
        "$ HF_ENDPOINT={endpoint} hfd demo/tiny-model -x 16 --hf_token *** --local-dir <tmp>/tiny-model"
    );
    let args = hfd::cli::hfd::Args::try_parse_from(argv)?;
    let env = |k: &str| (k == "HF_ENDPOINT").then(|| endpoint.clone());
    let opts = args.options(env)?;
    let net = Net::new(NetOptions::default());
    let started = Instant::now();
    // Plain text: the demo's output is read as a transcript.
    let ui = std::sync::Arc::new(Presenter::new(Term::plain(), Verbosity::Normal));
    let status = hfd::hub::run(&opts, net.clone(), CancellationToken::new(), ui.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    if status.exit_code() != 0 {
        return Err(format!("hfd ended with {status:?}").into());
    }
    let resolves = hub.resolve_requests().len();
    let leaked = hub
        .cdn()
        .requests()
        .iter()
        .filter(|r| r.header("authorization").is_some())
        .count();
    println!(
        "  {} in {secs:.2} s = {}; every file verified (sha-256 / git sha-1); {resolves} resolve requests for {files} files; requests to the CDN carrying the token: {leaked}",
        Bytes(total),
        Rate(total as f64 / secs)
    );
    hub.hub().reset_stats();
    println!("$ HF_ENDPOINT={endpoint} hfd demo/tiny-model ...   (again)");
    hfd::hub::run(&opts, net, CancellationToken::new(), ui).await;
    println!(
        "  the re-run made {} request(s) to the Hub",
        hub.hub().requests().len()
    );
    Ok(())
}
