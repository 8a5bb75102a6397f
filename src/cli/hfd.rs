//! `hfd`'s command line: hfd.sh's flags, spellings and defaults.
//!
//! `REPO_ID` first, `--include`/`--exclude` taking patterns until the next
//! option, `--hf_username`/`--hf_token` with underscores, `-x 4 -j 5`,
//! revision `main`, local dir = the part of the repo id after the first `/`.
//! Where hfd.sh was wrong we differ on purpose: `-x`/`-j` go to 64 (users
//! type `-x 16`), `-h` exits 0, and a flag missing its value is an error
//! instead of an endless loop. Usage errors exit 1, as hfd.sh's do.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use super::common::Common;
use super::generate::Generate;
use super::serve::ServeArgs;
use crate::engine::MAX_CONNECTIONS;
use crate::hub::bench::BenchEndpoint;
use crate::hub::run::default_local_dir;
use crate::hub::{DEFAULT_ENDPOINT, Dest, Endpoint, Options, RepoId, RepoType};
use crate::net::NetOptions;
use crate::ui::Verbosity;

const EXAMPLES: &str = "\
Examples:
  hfd gpt2
  hfd gpt2 -x 16                                 16 connections per file (hfd.sh stopped at 10)
  hfd bigscience/bloom-560m --exclude '*.safetensors'
  hfd stabilityai/stable-diffusion-2 --include 'vae/*' '*.json'
  hfd meta-llama/Llama-2-7b --hf_token hf_xxx -x 8   a gated repo: the token is enough
  hfd lavita/medical-qa-shared-task-v1-toy --dataset
  hfd bartowski/Phi-3.5-mini-instruct-exl2 --revision 5_0
  hfd gpt2 --cache                 into the Hugging Face cache (~/.cache/huggingface/hub,
                                   or $HF_HUB_CACHE / $HF_HOME/hub), where transformers finds it
  hfd gpt2 --cache-dir /data/hf-cache --revision refs/pr/1
  HF_ENDPOINT=https://hf-mirror.com hfd gpt2
  hfd gpt2 --all-proxy socks5h://127.0.0.1:7890
  hfd gpt2 --max-overall-download-limit 5M   the whole repo at most 5 MiB/s,
                                   leaving the rest of the link to others
  hfd gpt2 --dry-run --include '*.json'   what would be fetched, and the total;
                                   nothing is downloaded or written
  hfd gpt2 --endpoint https://hf-mirror.com --verify-origin
                                   bytes from the mirror, commit and hashes from
                                   huggingface.co: an altered file is refused
  HF_ENDPOINT=https://hf-mirror.com hfd gpt2 --verify-origin=https://huggingface.co
  hfd gpt2 --bench                 which endpoint is fastest now: HF_ENDPOINT,
                                   huggingface.co, hf-mirror.com (nothing is written)
  hfd gpt2 --bench --endpoint https://hf-mirror.com --endpoint https://mirror.example --json
  hfd gpt2 --endpoint https://hf-mirror.com --endpoint https://mirror.example
                                   every file from both endpoints at once
  hfd completions bash > ~/.local/share/bash-completion/completions/hfd
  hfd man | man -l -               the man page (also: completions zsh, fish)
  hfd -- man                       the repo whose id is \"man\": after --, a word is a repo
  hfd serve --listen 0.0.0.0:8080 --cache    serve the local Hugging Face cache
                                   to the LAN (hfd serve --help)
  hfd gpt2 --no-xet                every file over the plain path (the resolve
                                   redirect), not natively from Xet storage

Patterns work as in hfd.sh: '.' is literal, '*' matches anything (also '/'),
and a pattern matches anywhere in the path ('--include config' keeps every
path containing \"config\"); case-sensitive; include first, then exclude.
Quote patterns so the shell does not expand them.

Everything runs in-process: --tool is accepted for compatibility and changes
nothing. Files are verified (sha256 for LFS files, the git blob sha1 for the
others) before they get their final name; the token goes only to the
endpoint (each endpoint, with several), never to the storage host a file
redirects to, and is never written to disk. Interrupted downloads resume
when the same command runs again; their state is in LOCAL_DIR/.hfd/.
A local dir also gets huggingface_hub's download records
(LOCAL_DIR/.cache/huggingface/), so `hf download --local-dir` finds the files
current. --cache-dir DIR (or --cache) writes the Hugging Face cache layout
instead: blobs named by hash (only complete, verified data gets that name),
snapshots/<commit>/ of links, refs/; a cache huggingface_hub filled is used
as it is. --cache-dir or --cache with --local-dir is an error.

Several endpoints: the first --endpoint lists the repo, and every file is
fetched from all of them at once, -x connections each, the work shared in
proportion to each endpoint's measured speed. An endpoint that states
another size or hash for a file than the listing (X-Linked-Size,
X-Linked-Etag) is not used for that file, and one that stops answering is
dropped; the others finish. --bench measures, per endpoint, the time to the
first byte of the repo's largest selected file, then --seconds of download
into nowhere over 1 connection and over -x (default 16 with --bench).
Per-connection throttling shows as an -x figure far above the 1-connection
one. See docs/mirrors.md.

Xet: where the endpoint names a file's Xet id and grants a Xet token, the
file's chunks are read natively from the storage the Hub names (its CAS and
presigned xorb ranges), resumable, through the same proxy; elsewhere (a
mirror without Xet, --no-xet, HF_HUB_DISABLE_XET=1) the plain path. See
docs/xet.md.

Environment: HF_ENDPOINT (default https://huggingface.co; --endpoint
replaces it), HF_TOKEN, HF_USERNAME, HF_HUB_CACHE and HF_HOME (--cache),
HF_HUB_DISABLE_XET, NO_COLOR, and the proxy variables
(http_proxy, https_proxy, all_proxy, no_proxy, in either case).

Exit status: 0 done, up to date or dry run, 1 error or incomplete download
(or a file that does not match --verify-origin's hash),
130 interrupted (Ctrl-C).";

/// hfd: download a Hugging Face model or dataset (a drop-in for hfd.sh).
///
/// Lists the repo through HF_ENDPOINT's API, downloads the selected files
/// over many connections with resume and verification, and keeps its state
/// in LOCAL_DIR/.hfd/.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "hfd",
    version = super::VERSION,
    max_term_width = 100,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Args {
    /// The repo id: ORG/NAME, or a single NAME (e.g. gpt2). A repo named
    /// like a command (`serve`, `man`, `completions`) goes after `--`:
    /// `hfd -- man`.
    #[arg(value_name = "REPO_ID", required = true)]
    pub repo_id: Option<String>,

    /// Instead of downloading: serve a cache, completions or the man page.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Keep only paths matching one of these patterns (one or more, until
    /// the next option).
    #[arg(long = "include", value_name = "PATTERN", num_args = 1.., action = ArgAction::Append)]
    pub include: Vec<String>,

    /// Leave out paths matching one of these patterns (one or more, until
    /// the next option).
    #[arg(long = "exclude", value_name = "PATTERN", num_args = 1.., action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Hugging Face user name (accepted for compatibility; a token is enough).
    #[arg(
        long = "hf_username",
        visible_alias = "hf-username",
        value_name = "USER"
    )]
    pub hf_username: Option<String>,

    /// Hugging Face token [default: $HF_TOKEN]; sent only to the endpoint(s).
    #[arg(long = "hf_token", visible_alias = "hf-token", value_name = "TOKEN")]
    pub hf_token: Option<String>,

    /// Accepted for compatibility with hfd.sh; hfd downloads in-process
    /// whatever the value.
    #[arg(long = "tool", value_name = "aria2c|wget", default_value = "aria2c",
          value_parser = ["aria2c", "wget"])]
    pub tool: String,

    /// Connections per file (per endpoint), 1 to 64 [default: 4; 16 with
    /// --bench].
    #[arg(short = 'x', value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=MAX_CONNECTIONS as i64))]
    pub connections: Option<u16>,

    /// Files downloaded at once, 1 to 64 [default: adaptive: start with 5
    /// (as hfd.sh), add more every 2 s while the total rate grows
    /// accordingly, up to 64 connections in all].
    #[arg(short = 'j', value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// The repo is a dataset.
    #[arg(long = "dataset")]
    pub dataset: bool,

    /// Never read Xet storage natively: take the plain path (the resolve
    /// URL's redirect) for every file, as HF_HUB_DISABLE_XET=1 does.
    /// Natively (the default where the endpoint grants a Xet token), a
    /// file's chunks come from the CAS the Hub names, over the same
    /// connections, proxy and resume as everything else.
    #[arg(long = "no-xet")]
    pub no_xet: bool,

    /// Where to put the files [default: the part of REPO_ID after the first '/'].
    #[arg(long = "local-dir", visible_alias = "local_dir", value_name = "DIR")]
    pub local_dir: Option<PathBuf>,

    /// Download into the Hugging Face cache in DIR (models--ORG--NAME/ with
    /// blobs, snapshots and refs, as huggingface_hub lays it out), where
    /// transformers, diffusers and `hf` find the files.
    #[arg(long = "cache-dir", visible_alias = "cache_dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Download into the default Hugging Face cache: $HF_HUB_CACHE, else
    /// $HF_HOME/hub, else ~/.cache/huggingface/hub.
    #[arg(long = "cache")]
    pub cache: bool,

    /// Branch, tag, commit or PR ref (e.g. refs/pr/1).
    #[arg(long = "revision", value_name = "REV", default_value = "main")]
    pub revision: String,

    /// Hash every local file again, even those unchanged since they were
    /// verified (catches silent disk corruption; slower).
    #[arg(long = "verify")]
    pub verify: bool,

    /// Show what would be downloaded and stop: each selected file with its
    /// size and whether it is already here and current (the check a real
    /// run makes), and the total to download. No file is fetched and
    /// nothing is written, not even LOCAL_DIR or the cache dir (as
    /// `hf download --dry-run`).
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Take the commit and every file's hash (sha256 of LFS files, git sha1
    /// of the others) from ORIGIN's API, and only the bytes from the
    /// endpoint(s): a file that does not match the origin's hash is refused,
    /// and an endpoint serving another commit for the revision is named.
    /// ORIGIN is asked for the listing only, never for file bytes; it gets
    /// the token, as an endpoint you named. Give the value as
    /// --verify-origin=URL when REPO_ID follows.
    #[arg(long = "verify-origin", value_name = "ORIGIN", num_args = 0..=1,
          default_missing_value = DEFAULT_ENDPOINT)]
    pub verify_origin: Option<String>,

    /// A Hub endpoint; repeat for several [default: $HF_ENDPOINT, else
    /// https://huggingface.co]. With several, each file is downloaded from
    /// all at once and the first lists the repo. With --bench: the endpoints
    /// to measure [default: $HF_ENDPOINT, https://huggingface.co,
    /// https://hf-mirror.com].
    #[arg(long = "endpoint", value_name = "URL", action = ArgAction::Append)]
    pub endpoints: Vec<String>,

    #[command(flatten)]
    pub common: Common,
}

/// The usage with every option, as `-h` shows it: what a bare `hfd`
/// prints (to stderr, exit 1), since hfd.sh's users expect the whole usage
/// rather than clap's three-line error.
pub fn usage() -> String {
    use clap::CommandFactory;
    Args::command().render_help().to_string()
}

/// What hfd does instead of downloading a repo.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the repos of a Hugging Face cache over the Hub's HTTP API
    /// (`hfd serve --help`).
    Serve(ServeArgs),
    #[command(flatten)]
    Generate(Generate),
}

impl Args {
    pub fn verbosity(&self) -> Verbosity {
        self.common.verbosity()
    }

    /// The most files at once: `-j`, or what 64 connections allow.
    fn max_jobs(&self) -> usize {
        match self.jobs {
            Some(j) => usize::from(j),
            None => (MAX_CONNECTIONS / self.connections().max(1)).max(5),
        }
    }

    /// `-x`: as given, else hfd.sh's 4 (hfget's 16 for --bench, so the
    /// two measure alike).
    pub fn connections(&self) -> usize {
        let default = if self.common.bench.on { 16 } else { 4 };
        self.connections.map_or(default, usize::from)
    }

    /// Network options: the shared flags, the proxy variables, our agent.
    pub fn net_options(&self) -> Result<NetOptions, String> {
        let connections = if self.common.bench.on {
            self.connections()
        } else {
            self.connections() * self.max_jobs() * self.endpoints.len().max(1)
        };
        self.common
            .net_options(60, concat!("hfd/", env!("CARGO_PKG_VERSION")), connections)
    }

    /// `--verify-origin`'s endpoint, parsed.
    pub fn origin(&self) -> Result<Option<Endpoint>, String> {
        self.verify_origin
            .as_deref()
            .map(|o| {
                Endpoint::parse(o)
                    .map_err(|e| e.replacen("invalid HF_ENDPOINT", "invalid --verify-origin", 1))
            })
            .transpose()
    }

    /// `--endpoint`s, parsed, in order, without repeats.
    fn endpoint_flags(&self) -> Result<Vec<Endpoint>, String> {
        let mut out: Vec<Endpoint> = Vec::new();
        for s in &self.endpoints {
            let ep = Endpoint::parse(s)
                .map_err(|e| e.replacen("invalid HF_ENDPOINT", "invalid --endpoint", 1))?;
            if !out.iter().any(|o| o.url() == ep.url()) {
                out.push(ep);
            }
        }
        Ok(out)
    }

    /// The endpoints `--bench` measures: `--endpoint`s when given, else
    /// `HF_ENDPOINT` (if set), huggingface.co and hf-mirror.com, without
    /// repeats. The token goes only to endpoints the user named (and to
    /// huggingface.co, where it comes from), never to a default mirror.
    pub fn bench_endpoints(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<BenchEndpoint>, String> {
        let given = self.endpoint_flags()?;
        if !given.is_empty() {
            return Ok(given
                .into_iter()
                .map(|endpoint| BenchEndpoint {
                    endpoint,
                    trusted: true,
                })
                .collect());
        }
        let mut out: Vec<BenchEndpoint> = Vec::new();
        let from_env = env("HF_ENDPOINT").filter(|s| !s.trim().is_empty());
        let texts = from_env
            .iter()
            .map(|s| (s.as_str(), true))
            .chain(crate::hub::bench::DEFAULT_BENCH_ENDPOINTS.map(|e| (e, e == DEFAULT_ENDPOINT)));
        for (t, trusted) in texts {
            let endpoint = Endpoint::parse(t)?;
            if !out.iter().any(|o| o.endpoint.url() == endpoint.url()) {
                out.push(BenchEndpoint { endpoint, trusted });
            }
        }
        Ok(out)
    }

    /// What `--bench` measures with: `--seconds` and `-x`.
    pub fn bench_options(&self) -> Result<crate::mirrors::BenchOptions, String> {
        crate::mirrors::BenchOptions::new(
            self.common.bench.seconds,
            self.connections(),
            http::HeaderMap::new(),
        )
    }

    /// Where the files go: `--local-dir` (hfd.sh's default when nothing is
    /// given), `--cache-dir`, or `--cache` (the default cache, found as
    /// huggingface_hub finds it).
    fn dest(&self, repo: &RepoId, env: &impl Fn(&str) -> Option<String>) -> Result<Dest, String> {
        let cache_flag = match (&self.cache_dir, self.cache) {
            (Some(_), true) => {
                return Err("--cache-dir DIR and --cache both name a cache; give one".into());
            }
            (Some(_), false) => Some("--cache-dir"),
            (None, true) => Some("--cache"),
            (None, false) => None,
        };
        if let (Some(flag), Some(_)) = (cache_flag, &self.local_dir) {
            return Err(format!(
                "{flag} and --local-dir cannot be used together: {flag} puts the files in the \
                 Hugging Face cache, --local-dir in a plain folder; choose one"
            ));
        }
        let dir = match (&self.cache_dir, self.cache) {
            (Some(d), _) => d.clone(),
            (None, true) => crate::hub::cache::default_cache_dir(env)?,
            (None, false) => {
                let d = self
                    .local_dir
                    .clone()
                    .unwrap_or_else(|| default_local_dir(repo));
                if d.as_os_str().is_empty() {
                    return Err("--local-dir must not be empty".into());
                }
                return Ok(Dest::LocalDir(d));
            }
        };
        if dir.as_os_str().is_empty() {
            return Err("--cache-dir must not be empty".into());
        }
        Ok(Dest::Cache(dir))
    }

    /// The run's options, reading `HF_ENDPOINT` and `HF_TOKEN` through `env`
    /// (the process environment in the binary; a map in tests and the demo).
    pub fn options(&self, env: impl Fn(&str) -> Option<String>) -> Result<Options, String> {
        let repo_id = self.repo_id.as_deref().ok_or("no REPO_ID given")?;
        let repo = RepoId::parse(repo_id)?;
        let mut given = self.endpoint_flags()?;
        let (endpoint, mirrors) = if given.is_empty() {
            let endpoint_text = env("HF_ENDPOINT")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
            (Endpoint::parse(&endpoint_text)?, Vec::new())
        } else {
            let first = given.remove(0);
            (first, given)
        };
        let token = self
            .hf_token
            .clone()
            .or_else(|| env("HF_TOKEN"))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if self.revision.is_empty() {
            return Err("--revision must not be empty".into());
        }
        // Compiled here so a bad pattern fails before any request.
        let filter = crate::hub::filter::Filter::new(&self.include, &self.exclude)?;
        let dest = self.dest(&repo, &env)?;
        Ok(Options {
            repo,
            repo_type: if self.dataset {
                RepoType::Dataset
            } else {
                RepoType::Model
            },
            revision: self.revision.clone(),
            endpoint,
            mirrors,
            token,
            filter,
            dest,
            connections: self.connections(),
            jobs: self.jobs.map_or(5, usize::from),
            max_jobs: self.max_jobs(),
            verify_all: self.verify,
            retry: self.common.retry.policy()?,
            verbosity: self.verbosity(),
            file_limit: Some(self.common.limit.max_download_limit).filter(|&r| r > 0),
            overall_limit: self.common.limit.overall(),
            dry_run: self.dry_run,
            verify_origin: self.origin()?,
            xet: !self.no_xet && !env("HF_HUB_DISABLE_XET").is_some_and(|v| is_true(&v)),
        })
    }
}

/// huggingface_hub's reading of a boolean variable.
fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("hfd").chain(args.iter().copied()))
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn serve_is_a_subcommand_not_a_repo_id() {
        let a = parse(&[
            "serve",
            "--cache-dir",
            "/c",
            "--listen",
            "0.0.0.0:9000",
            "-v",
        ])
        .unwrap();
        let Some(Command::Serve(s)) = &a.command else {
            panic!("not the serve subcommand: {a:?}");
        };
        let o = s.options(no_env).unwrap();
        assert_eq!((o.listen.port(), o.log_requests), (9000, true));
        assert_eq!(o.cache_dir, PathBuf::from("/c"));
        // One of --cache-dir / --cache is required, not both.
        assert!(parse(&["serve"]).is_err());
        assert!(parse(&["serve", "--cache", "--cache-dir", "/c"]).is_err());
        // Download flags do not go with the subcommand.
        assert!(parse(&["serve", "--cache", "-x", "4"]).is_err());
        // A repo id still needs no subcommand, and is still required.
        assert_eq!(
            parse(&["org/name"]).unwrap().repo_id.as_deref(),
            Some("org/name")
        );
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn defaults_match_hfd_sh() {
        let a = parse(&["org/name"]).unwrap();
        let o = a.options(no_env).unwrap();
        assert_eq!(o.connections, 4);
        assert_eq!(o.jobs, 5);
        // No -j: adaptive from 5 up to 64 connections' worth of files.
        assert_eq!(o.max_jobs, 16);
        let fixed = parse(&["org/name", "-j", "5"])
            .unwrap()
            .options(no_env)
            .unwrap();
        assert_eq!((fixed.jobs, fixed.max_jobs), (5, 5));
        assert_eq!(o.revision, "main");
        assert_eq!(o.dest, Dest::LocalDir(PathBuf::from("name")));
        assert_eq!(o.endpoint.as_str(), "https://huggingface.co");
        assert_eq!(o.repo_type, RepoType::Model);
        assert!(o.token.is_none());
        assert_eq!(a.tool, "aria2c");
        let g = parse(&["gpt2"]).unwrap().options(no_env).unwrap();
        assert_eq!(g.dest, Dest::LocalDir(PathBuf::from("gpt2")));
    }

    #[test]
    fn patterns_run_until_the_next_option() {
        let a = parse(&[
            "org/name",
            "--include",
            "*.json",
            "vae/*",
            "-x",
            "16",
            "--exclude",
            "*.md",
            "--dataset",
        ])
        .unwrap();
        assert_eq!(a.include, ["*.json", "vae/*"]);
        assert_eq!(a.exclude, ["*.md"]);
        assert_eq!(a.connections(), 16);
        assert!(a.dataset);
        let twice = parse(&["r", "--include", "a", "--include", "b"]).unwrap();
        assert_eq!(twice.include, ["a", "b"]);
    }

    #[test]
    fn environment_and_flags() {
        let env = |k: &str| match k {
            "HF_ENDPOINT" => Some("https://hf-mirror.com/".to_string()),
            "HF_TOKEN" => Some("hf_env".to_string()),
            _ => None,
        };
        let o = parse(&["a/b"]).unwrap().options(env).unwrap();
        assert_eq!(o.endpoint.as_str(), "https://hf-mirror.com");
        assert_eq!(o.token.as_deref(), Some("hf_env"));
        let o = parse(&["a/b", "--hf_token", "hf_flag", "--hf_username", "me"])
            .unwrap()
            .options(env)
            .unwrap();
        assert_eq!(o.token.as_deref(), Some("hf_flag"));
        let o = parse(&["a/b", "--local-dir", "x/y", "--revision", "refs/pr/1"])
            .unwrap()
            .options(no_env)
            .unwrap();
        assert_eq!(o.dest, Dest::LocalDir(PathBuf::from("x/y")));
        assert_eq!(o.revision, "refs/pr/1");
    }

    #[test]
    fn cache_destinations() {
        let env = |k: &str| match k {
            "HF_HOME" => Some("/hf".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        let dest = |args: &[&str]| parse(args).unwrap().options(env).map(|o| o.dest);
        assert_eq!(
            dest(&["a/b", "--cache-dir", "/c"]).unwrap(),
            Dest::Cache(PathBuf::from("/c"))
        );
        assert_eq!(
            dest(&["a/b", "--cache"]).unwrap(),
            Dest::Cache(PathBuf::from("/hf/hub"))
        );
        for both in [
            &["a/b", "--cache-dir", "/c", "--local-dir", "x"][..],
            &["a/b", "--local-dir", "x", "--cache"],
        ] {
            let e = dest(both).unwrap_err();
            assert!(e.contains("--local-dir") && e.contains("--cache"), "{e}");
        }
        assert!(dest(&["a/b", "--cache", "--cache-dir", "/c"]).is_err());
        assert!(parse(&["a/b", "--cache-dir", ""]).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            &["r", "-x", "0"][..],
            &["r", "-x", "65"],
            &["r", "-x", "four"],
            &["r", "-j", "0"],
            &["r", "-j", "100"],
            &["r", "--tool", "curl"],
            &["r", "--revision"],
            &["r", "--include"],
            &["r", "--hf_token"],
            &["r", "--local-dir"],
            &[],
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.use_stderr(), "{bad:?} should be a usage error");
        }
        assert!(parse(&["r", "-x", "64", "-j", "64"]).is_ok());
        assert!(!parse(&["-h"]).unwrap_err().use_stderr());
        assert!(!parse(&["--help"]).unwrap_err().use_stderr());
        for bad_opts in [&["../x"][..], &["a/b/c"], &["r", "--include", "("]] {
            assert!(
                parse(bad_opts).unwrap().options(no_env).is_err(),
                "{bad_opts:?}"
            );
        }
        let bad_ep = |_: &str| Some("ftp://x".to_string());
        assert!(parse(&["r"]).unwrap().options(bad_ep).is_err());
        for bad in [
            &["r", "--endpoint", "ftp://x"][..],
            &["r", "--endpoint", "not a url"],
        ] {
            assert!(parse(bad).unwrap().options(no_env).is_err(), "{bad:?}");
        }
        assert!(parse(&["r", "--json"]).unwrap_err().use_stderr());
        assert!(parse(&["r", "--seconds", "2"]).unwrap_err().use_stderr());
        let zero = parse(&["r", "--bench", "--seconds", "0"]).unwrap();
        assert!(zero.bench_options().is_err());
    }

    #[test]
    fn verify_origin_defaults_to_the_hub() {
        let o = parse(&["a/b", "--verify-origin"])
            .unwrap()
            .options(no_env)
            .unwrap();
        assert_eq!(o.verify_origin.unwrap().as_str(), "https://huggingface.co");
        let o = parse(&["--verify-origin=http://127.0.0.1:9/", "a/b"])
            .unwrap()
            .options(no_env)
            .unwrap();
        assert_eq!(o.verify_origin.unwrap().as_str(), "http://127.0.0.1:9");
        assert!(
            parse(&["a/b"])
                .unwrap()
                .options(no_env)
                .unwrap()
                .verify_origin
                .is_none()
        );
        let bad = parse(&["a/b", "--verify-origin", "ftp://x"]).unwrap();
        assert!(bad.options(no_env).unwrap_err().contains("--verify-origin"));
    }

    #[test]
    fn endpoints_for_downloads_and_bench() {
        let env = |k: &str| (k == "HF_ENDPOINT").then(|| "http://127.0.0.1:1/".to_string());
        // Several --endpoint: the first lists, the others also serve files;
        // HF_ENDPOINT is replaced, repeats are dropped.
        let a = parse(&[
            "a/b",
            "--endpoint",
            "https://hf-mirror.com",
            "--endpoint",
            "https://mirror.example/",
            "--endpoint",
            "https://hf-mirror.com/",
        ])
        .unwrap();
        let o = a.options(env).unwrap();
        assert_eq!(o.endpoint.as_str(), "https://hf-mirror.com");
        let m: Vec<&str> = o.mirrors.iter().map(Endpoint::as_str).collect();
        assert_eq!(m, ["https://mirror.example"]);
        assert_eq!(a.connections(), 4);
        // --bench: the defaults after HF_ENDPOINT, without repeats.
        let b = parse(&["a/b", "--bench"]).unwrap();
        let eps: Vec<String> = b
            .bench_endpoints(env)
            .unwrap()
            .iter()
            .map(|e| e.endpoint.as_str().to_string())
            .collect();
        assert_eq!(
            eps,
            [
                "http://127.0.0.1:1",
                "https://huggingface.co",
                "https://hf-mirror.com"
            ]
        );
        // The token only for endpoints the user named, and the Hub.
        let trusted: Vec<bool> = b
            .bench_endpoints(env)
            .unwrap()
            .iter()
            .map(|e| e.trusted)
            .collect();
        assert_eq!(trusted, [true, true, false]);
        let same = |_: &str| Some("https://huggingface.co/".to_string());
        assert_eq!(b.bench_endpoints(same).unwrap().len(), 2);
        assert_eq!(b.bench_endpoints(no_env).unwrap().len(), 2);
        assert_eq!(b.connections(), 16);
        let opts = b.bench_options().unwrap();
        assert_eq!((opts.seconds, opts.connections), (10.0, 16));
        let given = parse(&["a/b", "--bench", "--endpoint", "http://h:1", "-x", "2"]).unwrap();
        assert_eq!(given.bench_endpoints(env).unwrap().len(), 1);
        assert_eq!(given.connections(), 2);
    }
}
