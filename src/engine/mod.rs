//! The download engine: one file, many connections, crash-safe.
//!
//! A download runs in stages ([`job`] drives them):
//! - [`resume`]: what a previous run left on disk, and whether it can be
//!   continued;
//! - [`probe`]: the first request, which learns the size and validators
//!   (and whose answer is data);
//! - [`slots`]: the ranged download: storage set up, connection slots
//!   ([`worker`]) fed by the [`scheduler`], grown by [`adaptive`];
//! - [`single`]: one stream from the start, for servers without ranges;
//! - [`finish`]: checksum and final name;
//! - `xet`: instead of the probe and the slots, a file fetched natively
//!   from Xet storage (its units fetched by `xet_fetch`).
//!
//! A slot checks each answer ([`answer`]) and moves its bytes to the writer
//! ([`receive`]: spliced or batched). [`shared`] is what the slots share;
//! [`progress`], [`verify`] and [`error`] serve all stages. Requests,
//! sources and retries are the client layer's ([`crate::client`]).

pub mod adaptive;
mod answer;
pub mod error;
mod finish;
pub mod job;
pub mod limit;
mod prefix_hash;
mod probe;
pub mod progress;
mod receive;
mod resume;
pub mod scheduler;
mod shared;
mod single;
mod slots;
pub mod verify;
mod worker;
mod xet;
mod xet_fetch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use url::Url;

pub use crate::client::{Hop, RetryPolicy};
pub use error::Error;
pub use job::download;
pub use progress::Progress;
pub use verify::Checksum;

use crate::client::{Fetched, Source};
use crate::storage::files::Layout;
use crate::storage::{Allocation, WriteMode};

/// The most connections one download may use (aria2c stops at 16).
pub const MAX_CONNECTIONS: usize = 64;

/// What to download, where, and how.
#[derive(Clone, Debug)]
pub struct DownloadSpec {
    /// The same file at one or more places (mirrors).
    pub urls: Vec<Url>,
    /// Extra request headers; `Authorization` and `Cookie` go only to the
    /// origin of the URL they belong with.
    pub headers: HeaderMap,
    /// The final path.
    pub output: PathBuf,
    /// Where the data is written until complete (default: output + ".part").
    pub part_path: Option<PathBuf>,
    /// The control file (default: part + ".ctl").
    pub control_path: Option<PathBuf>,
    /// The folder the user named, when the files lie deeper inside it (an
    /// hfd local dir): no symbolic link below it is followed. `None`: the
    /// output's own folder is the one named.
    pub root: Option<PathBuf>,
    /// Connections for the whole download (`-s`).
    pub connections: usize,
    /// Connections per source (`-x`).
    pub per_source: usize,
    /// A range shorter than twice this is never split (`-k`).
    pub min_split: u64,
    pub retry: RetryPolicy,
    /// No byte at all from any connection for this long: reconnect.
    pub timeout: Duration,
    pub allocation: Allocation,
    pub write_mode: WriteMode,
    pub checksum: Option<Checksum>,
    /// The size the file must have, when the caller knows it (hfd: the
    /// Hub's listing). A server whose file has another size is refused
    /// before a byte is written, and data of another size never gets the
    /// final name.
    pub expected_size: Option<u64>,
    /// A changed remote file (or another URL) discards the partial download
    /// instead of stopping.
    pub allow_restart: bool,
    /// `-c`: an existing output file without a control file is taken as a
    /// downloaded prefix (as aria2c does).
    pub continue_partial: bool,
    /// Replace an existing output file.
    pub allow_overwrite: bool,
    /// How often progress is made durable.
    pub checkpoint_interval: Duration,
    /// Start with fewer connections and add more while they pay; then
    /// `connections` and `per_source` are the ceilings.
    pub adaptive: Option<adaptive::Adaptive>,
    /// Bandwidth caps this download obeys: its own, and any it shares with
    /// others (every file of a run). Adaptive growth stops near the lowest.
    pub limits: Vec<Arc<limit::RateLimit>>,
    /// `None`: every source must send the first source's ETag/Last-Modified
    /// (aria2c's rule, right for plain mirrors of one file). `Some`: the
    /// caller knows what identifies the file (a Hub's `X-Linked-Etag`), so
    /// each source is held to that instead and to its own validators, because
    /// mirrors behind different CDNs give different ETags for the same bytes.
    pub source_check: Option<SourceCheck>,
    /// Fetch the file natively from Xet storage rather than from `urls`
    /// (which still name it in messages and in the control file): hfd sets
    /// it when the Hub names the file's Xet id and grants a CAS token.
    pub xet: Option<crate::xet::XetSource>,
    /// Told which bytes of the data file are written, as they are: for a
    /// caller that reads the file while it arrives (`hfd serve`).
    pub written: Option<crate::storage::watch::WrittenWatch>,
}

/// The caller's test that a source serves the file it was asked for, run on
/// every successful answer that started at the source's own URL (its first
/// answer and each re-resolve), given the redirects followed and the final
/// answer's headers. An `Err` names what differs; the source is dropped.
#[derive(Clone)]
pub struct SourceCheck(Arc<CheckFn>);

type CheckFn = dyn Fn(&[Hop], &HeaderMap) -> Result<(), String> + Send + Sync;

impl SourceCheck {
    pub fn new(
        f: impl Fn(&[Hop], &HeaderMap) -> Result<(), String> + Send + Sync + 'static,
    ) -> SourceCheck {
        SourceCheck(Arc::new(f))
    }

    pub fn check(&self, hops: &[Hop], final_headers: &HeaderMap) -> Result<(), String> {
        (self.0)(hops, final_headers)
    }

    /// Runs the check on a successful answer from `source`; anything else
    /// (an error status) is judged elsewhere.
    pub(crate) fn verify(&self, source: &Source, f: &Fetched) -> Result<(), Error> {
        if !f.response.status().is_success() {
            return Ok(());
        }
        self.check(&f.hops, f.response.headers())
            .map_err(|detail| Error::OtherFile {
                url: source.ident(),
                detail,
            })
    }
}

impl std::fmt::Debug for SourceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceCheck(..)")
    }
}

impl DownloadSpec {
    /// A spec with our defaults for `url` → `output`.
    pub fn new(url: Url, output: impl Into<PathBuf>) -> DownloadSpec {
        DownloadSpec {
            urls: vec![url],
            headers: HeaderMap::new(),
            output: output.into(),
            part_path: None,
            control_path: None,
            root: None,
            connections: 16,
            per_source: 16,
            min_split: 1 << 20,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            allocation: Allocation::default(),
            write_mode: WriteMode::default(),
            checksum: None,
            expected_size: None,
            allow_restart: false,
            continue_partial: false,
            allow_overwrite: false,
            checkpoint_interval: Duration::from_secs(1),
            adaptive: None,
            limits: Vec::new(),
            source_check: None,
            xet: None,
            written: None,
        }
    }

    /// Where the download's files go.
    pub fn layout(&self) -> Layout {
        let part = self
            .part_path
            .clone()
            .unwrap_or_else(|| with_suffix(&self.output, ".part"));
        let control = self
            .control_path
            .clone()
            .unwrap_or_else(|| with_suffix(&part, ".ctl"));
        Layout {
            output: self.output.clone(),
            part,
            control,
            root: self.root.clone(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.urls.is_empty() {
            return Err(Error::Config("no URL given".into()));
        }
        if self.connections == 0 || self.per_source == 0 {
            return Err(Error::Config(
                "the connection count must be at least 1".into(),
            ));
        }
        if self.connections > MAX_CONNECTIONS || self.per_source > MAX_CONNECTIONS {
            return Err(Error::Config(format!(
                "at most {MAX_CONNECTIONS} connections per download"
            )));
        }
        if self.output.as_os_str().is_empty() {
            return Err(Error::Config("no output file name".into()));
        }
        Ok(())
    }
}

/// How a download went.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub path: PathBuf,
    pub total: Option<u64>,
    /// Bytes received in this run.
    pub received: u64,
    /// Bytes that were already done when this run started.
    pub resumed: u64,
    pub elapsed: Duration,
    /// Connections used.
    pub connections: usize,
    /// The server did not support ranges: one stream, no resume.
    pub single_stream: bool,
    /// Nothing needed fetching.
    pub already_complete: bool,
    /// Redirects seen by the first request (hfd reads the Hub's headers here).
    pub hops: Vec<Hop>,
    /// Bytes received from each source, in the order of `urls`.
    pub source_bytes: Vec<u64>,
    /// Sources whose every connection used up its retries, in the order of
    /// `urls`: a caller downloading many files stops offering them.
    pub sources_gave_up: Vec<bool>,
    /// A file read natively from Xet storage: its layout, and what was
    /// copied from an older version instead of fetched.
    pub xet: Option<XetOutcome>,
}

/// What a Xet download leaves for the next update of the file.
#[derive(Clone, Debug)]
pub struct XetOutcome {
    /// The file's terms with the chunk lengths learnt (for
    /// [`crate::xet::reuse`]).
    pub layout: crate::xet::reuse::Layout,
    /// Bytes copied from the older version.
    pub copied: u64,
}

fn with_suffix(p: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
