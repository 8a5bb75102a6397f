//! `hfget`'s command line: aria2c's option names, turned into engine specs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::common::Common;
use super::generate::Generate;
use super::input_file::Entry;
use super::output_name;
use crate::engine::{Checksum, DownloadSpec, MAX_CONNECTIONS};
use crate::net::NetOptions;
use crate::size::parse_size;
use crate::storage::{Allocation, WriteMode};
use crate::ui::Verbosity;

const EXAMPLES: &str = "\
Examples:
  hfget https://example.com/model.safetensors
      starts with 16 connections and adds more while they pay (up to 64)
  hfget URL -x 32                  exactly 32 connections (aria2c stops at 16)
  hfget URL -d models -o weights.bin --checksum sha-256=<64 hex digits>
  hfget URL1 URL2                  the same file from two mirrors at once
  hfget -i list.txt -j 4           aria2c input file, 4 files at a time
  hfget URL --all-proxy socks5h://127.0.0.1:7891
  hfget URL --max-download-limit 5M   at most 5 MiB/s, shared by all connections
  hfget -i list.txt --max-overall-download-limit 10M   10 MiB/s for the whole list
  hfget URL --header 'Authorization: Bearer <token>'
      the header goes only to the URL's own host, never to a redirect target
  hfget --bench URL1 URL2 --seconds 5 --json
      which mirror is fastest now (nothing is written to disk): time to first
      byte, then the rate over 1 connection and over -x; an -x rate far above
      the 1-connection one means the mirror throttles each connection
  hfget completions bash > ~/.local/share/bash-completion/completions/hfget
  hfget man | man -l -             the man page (also: completions zsh, fish)

Interrupted downloads resume when the same command runs again: the progress
is in NAME.part.ctl next to NAME.part until the file is complete.

With several URLs, each source gets -x connections and work in proportion to
its measured speed; a source whose size or ETag differs from the first one's
is dropped (named in a warning), and so is one that keeps failing. See
docs/mirrors.md.

Proxies: http_proxy, https_proxy, all_proxy and no_proxy are read in either
case (lowercase wins when both differ); --all-proxy and friends override them.";

fn exit_codes_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (c, what) in crate::exit::ExitCode::TABLE {
        s.push_str(&format!("  {:>2}  {what}\n", c.code()));
    }
    s
}

/// hfget: a fast, crash-safe segmented downloader.
///
/// Downloads a file over many parallel HTTP/1.1 (or HTTP/2) connections,
/// directly or through an HTTP or SOCKS5 proxy. A connection that finishes
/// early takes over part of the slowest one, so one slow path never holds the
/// file back. Progress is saved every second: kill it at any moment and run
/// the same command again to resume without losing or corrupting a byte.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "hfget",
    version = super::VERSION,
    max_term_width = 100,
    after_help = EXAMPLES,
    after_long_help = format!("{EXAMPLES}\n\n{}", exit_codes_help()),
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Args {
    /// The file's URL; several URLs are the same file at several places
    /// (mirrors), all used at once.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    /// Instead of downloading: completions or the man page.
    #[command(subcommand)]
    pub generate: Option<Generate>,

    /// Connections per server, 1 to 64 (aria2c caps this at 16)
    /// [default: adaptive: start with 16, add half as many again every 2 s
    /// while throughput grows accordingly, up to 64; fewer after 429/503].
    #[arg(short = 'x', long = "max-connection-per-server", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONNECTIONS as i64))]
    pub max_connection_per_server: Option<u16>,

    /// Connections for the whole download, 1 to 64 [default: -x times the number of URLs].
    #[arg(short = 's', long = "split", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONNECTIONS as i64))]
    pub split: Option<u16>,

    /// Never split a range smaller than twice this size (K = 1024, M = 1024²).
    #[arg(short = 'k', long = "min-split-size", value_name = "SIZE", default_value = "1M",
          value_parser = size_arg)]
    pub min_split_size: u64,

    /// Output file name, relative to --dir unless absolute [default: the last part of the URL].
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Folder to save into [default: the current folder].
    #[arg(short = 'd', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Continue a file that exists without a control file (e.g. from another
    /// tool), treating its bytes as the start of the download.
    #[arg(short = 'c', long = "continue")]
    pub continue_partial: bool,

    /// Download the entries of an aria2c input file (URLs, TAB-separated
    /// mirrors, indented `dir=`/`out=`/`header=`/`checksum=` lines).
    #[arg(short = 'i', long = "input-file", value_name = "FILE")]
    pub input_file: Option<PathBuf>,

    /// Files downloaded at once with --input-file.
    #[arg(short = 'j', long = "max-concurrent-downloads", value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// An extra request header, e.g. 'Authorization: Bearer ...' (repeatable).
    /// Authorization and Cookie are sent only to the URL's own origin.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub header: Vec<String>,

    /// Verify the finished file, e.g. sha-256=<hex> (also sha-1, sha-512).
    /// The file gets its final name only if it matches.
    #[arg(long = "checksum", value_name = "TYPE=HEX")]
    pub checksum: Option<String>,

    /// Seconds without a byte from any connection before reconnecting, and
    /// the wait for response headers.
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SEC",
        default_value_t = 60
    )]
    pub timeout: u64,

    /// How to size the file up front: falloc reserves the space (a full disk
    /// fails at once), trunc makes a sparse file, none grows it as it goes.
    #[arg(long = "file-allocation", value_name = "MODE", default_value = "falloc",
          value_parser = ["none", "trunc", "falloc", "prealloc"])]
    pub file_allocation: String,

    /// How bytes are written: pwrite (positional writes, the default: faster
    /// in our measurements) or mmap (memory-mapped windows).
    #[arg(long = "write-mode", value_name = "MODE", default_value = "pwrite",
          value_parser = ["pwrite", "mmap"])]
    pub write_mode: String,

    /// If the file changed on the server since the partial download began,
    /// discard what was downloaded and start over (instead of stopping).
    #[arg(long = "allow-restart")]
    pub allow_restart: bool,

    /// Replace an existing output file.
    #[arg(long = "allow-overwrite")]
    pub allow_overwrite: bool,

    /// Seconds between saves of the progress (the most a crash can lose).
    #[arg(long = "auto-save-interval", value_name = "SEC", default_value_t = 1.0)]
    pub auto_save_interval: f64,

    #[command(flatten)]
    pub common: Common,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

impl Args {
    pub fn verbosity(&self) -> Verbosity {
        self.common.verbosity()
    }

    /// Network options shared by every download of this run.
    pub fn net_options(&self) -> Result<NetOptions, String> {
        let x = self
            .max_connection_per_server
            .map_or(MAX_CONNECTIONS, usize::from);
        let connections = self
            .split
            .map(usize::from)
            .unwrap_or(x * self.urls.len().max(1));
        self.common.net_options(
            self.timeout,
            concat!("hfget/", env!("CARGO_PKG_VERSION")),
            connections,
        )
    }

    /// Options of `--bench`.
    pub fn bench_options(&self) -> Result<crate::mirrors::BenchOptions, String> {
        let mut headers = HeaderMap::new();
        for h in &self.header {
            let (name, value) = parse_header(h)?;
            headers.append(name, value);
        }
        crate::mirrors::BenchOptions::new(
            self.common.bench.seconds,
            self.max_connection_per_server.map_or(16, usize::from),
            headers,
        )
    }

    /// The spec for one entry of an input file: its options read by the
    /// same definitions as the command line, laid over it.
    pub fn spec_for(&self, entry: &Entry) -> Result<DownloadSpec, String> {
        let at = format!("input file line {}: ", entry.line);
        self.for_entry(entry)
            .and_then(|a| a.spec())
            .map_err(|e| format!("{at}{e}"))
    }

    /// The arguments for one input-file entry. `key=value` becomes
    /// `--key=value` (`--key` for a boolean that is `true`), parsed by clap
    /// like the command line (ripgrep reads its config file the same way),
    /// then laid over the command line's: what the entry gives wins, its
    /// headers add to the command line's, and its URLs and `out` are its
    /// own (one `-o` cannot name every file of a list).
    pub fn for_entry(&self, entry: &Entry) -> Result<Args, String> {
        let mut argv = vec!["hfget".to_string()];
        for (k, v) in &entry.options {
            match (k.as_str(), v.as_str()) {
                ("continue" | "allow-overwrite", "true") => argv.push(format!("--{k}")),
                ("continue" | "allow-overwrite", "false") => {}
                ("continue" | "allow-overwrite", _) => {
                    return Err(format!("invalid {k}={v}: use true or false"));
                }
                _ => argv.push(format!("--{k}={v}")),
            }
        }
        argv.push("--".into());
        argv.extend(entry.urls.iter().cloned());
        let m = Args::command()
            .try_get_matches_from(&argv)
            .map_err(|e| clap_message(&e))?;
        let e = Args::from_arg_matches(&m).map_err(|e| clap_message(&e))?;
        let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
        let mut a = self.clone();
        a.urls = e.urls;
        a.out = e.out;
        a.header.extend(e.header);
        if given("dir") {
            a.dir = e.dir;
        }
        if given("checksum") {
            a.checksum = e.checksum;
        }
        if given("split") {
            a.split = e.split;
        }
        if given("max_connection_per_server") {
            a.max_connection_per_server = e.max_connection_per_server;
        }
        if given("min_split_size") {
            a.min_split_size = e.min_split_size;
        }
        if given("max_tries") {
            a.common.retry.max_tries = e.common.retry.max_tries;
        }
        if given("retry_wait") {
            a.common.retry.retry_wait = e.common.retry.retry_wait;
        }
        if given("timeout") {
            a.timeout = e.timeout;
        }
        if given("max_download_limit") {
            a.common.limit.max_download_limit = e.common.limit.max_download_limit;
        }
        a.allow_overwrite |= e.allow_overwrite;
        a.continue_partial |= e.continue_partial;
        Ok(a)
    }

    /// The spec for these arguments' URLs.
    pub fn spec(&self) -> Result<DownloadSpec, String> {
        if self.urls.is_empty() {
            return Err("no URL given (see hfget --help)".into());
        }
        let urls: Vec<Url> = self
            .urls
            .iter()
            .map(|u| parse_url(u))
            .collect::<Result<_, _>>()?;
        // Neither -x nor -s: adaptive.
        let adaptive = self.max_connection_per_server.is_none() && self.split.is_none();
        let x = self
            .max_connection_per_server
            .map_or(MAX_CONNECTIONS, usize::from);
        let s = self
            .split
            .map(usize::from)
            .unwrap_or((x * urls.len()).min(MAX_CONNECTIONS));
        let output = output_path(self.dir.as_deref(), self.out.as_deref(), &urls[0]);
        let mut headers = HeaderMap::new();
        for h in &self.header {
            let (name, value) = parse_header(h)?;
            headers.append(name, value);
        }
        let checksum = match &self.checksum {
            Some(c) => Some(Checksum::parse(c)?),
            None => None,
        };
        if !(0.05..=600.0).contains(&self.auto_save_interval) {
            return Err("--auto-save-interval must be between 0.05 and 600 seconds".into());
        }
        let mut spec = DownloadSpec::new(urls[0].clone(), output);
        spec.urls = urls;
        spec.headers = headers;
        spec.connections = s.max(1);
        spec.per_source = x.max(1);
        spec.min_split = self.min_split_size.max(1);
        if adaptive {
            spec.adaptive = Some(crate::engine::adaptive::Adaptive::default());
        }
        spec.retry = self.common.retry.policy()?;
        spec.timeout = Duration::from_secs(self.timeout.max(1));
        spec.allocation = self.file_allocation.parse()?;
        spec.write_mode = self.write_mode.parse::<WriteMode>()?;
        spec.checksum = checksum;
        spec.allow_restart = self.allow_restart;
        spec.continue_partial = self.continue_partial;
        spec.allow_overwrite = self.allow_overwrite;
        spec.checkpoint_interval = Duration::from_secs_f64(self.auto_save_interval);
        spec.limits.extend(self.common.limit.per_download());
        Ok(spec)
    }
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("");
    line.trim_start_matches("error: ").to_string()
}

/// Accepts http and https URLs only, with a message that says why not.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err(format!("invalid URL {text:?}: no host")),
        other => Err(format!(
            "unsupported URL scheme {other:?} in {text:?}: hfget downloads http:// and https:// URLs"
        )),
    }
}

/// `-o` relative to `-d` unless absolute; without `-o`, the URL's file name.
pub fn output_path(dir: Option<&Path>, out: Option<&Path>, url: &Url) -> PathBuf {
    let name = match out {
        Some(o) if o.is_absolute() => return o.to_path_buf(),
        Some(o) => o.to_path_buf(),
        None => PathBuf::from(output_name::from_url(url)),
    };
    match dir {
        Some(d) => d.join(name),
        None => name,
    }
}

/// Parses `Name: value`.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| {
        format!(
            "invalid header {:?}: expected 'Name: value'",
            redact_header(text)
        )
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Only the name of a header, for messages (its value may be a token).
fn redact_header(text: &str) -> String {
    match text.split_once(':') {
        Some((n, _)) => format!("{}: ***", n.trim()),
        None => "***".into(),
    }
}

/// Whether the allocation mode string is one we know (for tests of the help).
pub fn allocation(s: &str) -> Result<Allocation, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("hfget").chain(v.iter().copied())).unwrap()
    }

    #[test]
    fn aria2_defaults_and_limits() {
        // No -x: adaptive, from 16 up to the ceiling of 64.
        let a = args(&["http://h/f.bin"]);
        let s = a.spec().unwrap();
        assert_eq!(
            (s.per_source, s.connections, s.min_split),
            (64, 64, 1 << 20)
        );
        assert_eq!(s.adaptive.as_ref().map(|a| a.start), Some(16));
        assert_eq!(s.output, PathBuf::from("f.bin"));
        // -x or -s: exactly that, as aria2c.
        let s = args(&["-x", "16", "http://h/f.bin"]).spec().unwrap();
        assert_eq!((s.per_source, s.connections, s.adaptive), (16, 16, None));
        let s = args(&["-s", "8", "http://h/f.bin"]).spec().unwrap();
        assert_eq!((s.connections, s.adaptive), (8, None));
        let s = args(&["-x", "64", "-k", "4M", "http://h/f", "http://m/f"])
            .spec()
            .unwrap();
        assert_eq!(
            (s.per_source, s.connections, s.min_split),
            (64, 64, 4 << 20)
        );
        assert!(Args::try_parse_from(["hfget", "-x", "65", "http://h/f"]).is_err());
        assert!(Args::try_parse_from(["hfget", "-x", "0", "http://h/f"]).is_err());
        assert!(Args::try_parse_from(["hfget", "-k", "lots", "http://h/f"]).is_err());
    }

    #[test]
    fn output_relative_to_dir_or_absolute() {
        let s = args(&["-d", "out", "-o", "x.bin", "http://h/f"])
            .spec()
            .unwrap();
        assert_eq!(s.output, PathBuf::from("out/x.bin"));
        let s = args(&["-d", "out", "-o", "/abs/x.bin", "http://h/f"])
            .spec()
            .unwrap();
        assert_eq!(s.output, PathBuf::from("/abs/x.bin"));
        let s = args(&["-d", "out", "http://h/a%20b"]).spec().unwrap();
        assert_eq!(s.output, PathBuf::from("out/a b"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(
            args(&["ftp://h/f"])
                .spec()
                .unwrap_err()
                .contains("unsupported URL scheme")
        );
        assert!(args(&[]).spec().unwrap_err().contains("no URL"));
        let e = args(&["--header", "Authorization Bearer secret", "http://h/f"])
            .spec()
            .unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(
            args(&["--checksum", "sha-256=12", "http://h/f"])
                .spec()
                .is_err()
        );
    }

    #[test]
    fn check_certificate_false() {
        assert!(
            !args(&["--check-certificate=false", "http://h/f"])
                .common
                .net
                .check_certificate
        );
        assert!(
            args(&["--check-certificate", "http://h/f"])
                .common
                .net
                .check_certificate
        );
    }

    #[test]
    fn input_entry_options_override() {
        let a = args(&["-x", "8", "-d", "base"]);
        let e = Entry {
            line: 3,
            urls: vec!["http://h/f".into()],
            options: vec![
                ("out".into(), "g.bin".into()),
                ("split".into(), "2".into()),
                ("header".into(), "X-A: 1".into()),
            ],
        };
        let s = a.spec_for(&e).unwrap();
        assert_eq!(s.output, PathBuf::from("base/g.bin"));
        assert_eq!((s.connections, s.per_source), (2, 8));
        assert_eq!(s.headers.get("x-a").unwrap(), "1");
    }
}
