//! `hfd serve`'s command line: where to listen and which cache to serve.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args};
use tokio_util::sync::CancellationToken;

use crate::serve::Options;

pub const EXAMPLES: &str = "\
Examples:
  hfd serve --cache                          the default cache, on 127.0.0.1:8080
  hfd serve --listen 0.0.0.0:8080 --cache-dir /data/hf-cache -v
                                             the whole LAN; one log line per request
  HF_ENDPOINT=http://server:8080 hfd gpt2 -x 8       a client, with hfd
  HF_ENDPOINT=http://server:8080 hf download gpt2    a client, with huggingface_hub

The cache is the folder huggingface_hub fills (models--ORG--NAME/,
datasets--ORG--NAME/ with blobs/, refs/ and snapshots/); fill it with
huggingface_hub (snapshot_download, `hf download`) on the server. Served:
repo info (/api/models/ID[/revision/REV], ?blobs=true), tree listings with
pagination, paths-info, treesize, and files at /ID/resolve/REV/PATH and
/datasets/ID/resolve/REV/PATH with Range, ETag, X-Repo-Commit,
X-Linked-Etag and X-Linked-Size. A repo, revision or file the cache does not
hold is a 404 as the Hub words it. Nothing outside the cache folder is ever
read: a snapshot's link must lead into its own repo's blobs/.

Only the cache is served (as --offline): fetching missing files from an
upstream Hub is not built yet. There is no authentication: listen on a
network you trust. See docs/serve.md.";

/// Serve the repos of a Hugging Face cache folder to other machines, with
/// the Hub's API (HF_ENDPOINT=http://HOST:PORT on the clients).
#[derive(Args, Debug, Clone)]
#[command(after_help = EXAMPLES, max_term_width = 100)]
#[command(group(ArgGroup::new("which_cache").required(true).args(["cache_dir", "cache"])))]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(
        long = "listen",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The cache folder to serve.
    #[arg(long = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Serve the default cache: $HF_HUB_CACHE, else $HF_HOME/hub, else
    /// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
    #[arg(long = "cache")]
    pub cache: bool,

    /// Serve only what is in the cache (currently the only mode).
    #[arg(long = "offline")]
    pub offline: bool,

    /// Print only errors.
    #[arg(short = 'q', long = "quiet", conflicts_with = "verbose")]
    pub quiet: bool,

    /// One log line per request (-v); -vv for debugging.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl ServeArgs {
    pub fn verbosity(&self) -> crate::ui::Verbosity {
        crate::ui::Verbosity::from_flags(self.quiet, self.verbose)
    }

    /// The server's options; `env` reads the environment (for `--cache`).
    pub fn options(&self, env: impl Fn(&str) -> Option<String>) -> Result<Options, String> {
        let dir = match &self.cache_dir {
            Some(d) => d.clone(),
            None => default_cache(env).ok_or(
                "--cache: no cache folder known (set HF_HUB_CACHE or HF_HOME, or give --cache-dir)",
            )?,
        };
        let mut o = Options::new(self.listen, dir);
        o.log_requests = self.verbose > 0;
        Ok(o)
    }
}

/// huggingface_hub's default cache folder.
pub fn default_cache(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = set("HF_HUB_CACHE") {
        return Some(d);
    }
    if let Some(h) = set("HF_HOME") {
        return Some(h.join("hub"));
    }
    if let Some(x) = set("XDG_CACHE_HOME") {
        return Some(x.join("huggingface").join("hub"));
    }
    set("HOME").map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// Cancels `token` on the first Ctrl-C or SIGTERM (the server stops
/// accepting and finishes the answers in progress); a second one exits.
/// `quiet`: without a word. Call it before telling anyone the address.
pub fn stop_on_signals(token: CancellationToken, quiet: bool) {
    let msg = "Stopping: finishing the answers in progress...";
    super::on_signals(token, (!quiet).then_some(msg), 130);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cache_as_huggingface_hub_finds_it() {
        fn env<'a>(
            pairs: &'a [(&'static str, &'static str)],
        ) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        const ALL: [(&str, &str); 4] = [
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(default_cache(env(&ALL)), Some(PathBuf::from("/c")));
        assert_eq!(default_cache(env(&ALL[1..])), Some(PathBuf::from("/h/hub")));
        assert_eq!(
            default_cache(env(&ALL[2..])),
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            default_cache(env(&ALL[3..])),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        assert_eq!(default_cache(env(&[])), None);
    }
}
