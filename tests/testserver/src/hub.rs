//! A mock Hugging Face Hub on two [`TestServer`]s, faithful to the protocol
//! as recorded from huggingface.co (shared/notes/hub-protocol-and-hfd.md §2):
//!
//! * `GET /api/{models|datasets}/{repo}[/revision/{rev}][?blobs=true]`:
//!   repo info with `sha`, `gated`, `private` and `siblings` (sizes, `blobId`
//!   and `lfs` with `?blobs=true`);
//! * `GET /api/…/{repo}/treesize/{rev}`: `{"path":"","size":N}`;
//! * `GET /api/…/{repo}/tree/{rev}?recursive=true`: the recursive tree,
//!   paginated with absolute `Link: <…>; rel="next"` URLs (optionally on a
//!   foreign host, as a mirror may send them);
//! * `GET /{[datasets/]}{repo}/resolve/{rev}/{path}`: **307** with a
//!   *relative* `Location` to `/api/resolve-cache/…` for files stored in git
//!   (served here, content = the git blob), **302** to the second server
//!   (the "CDN") with an expiring signed URL for LFS files; both with
//!   `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`;
//! * errors as the Hub words them: private or missing repos 401
//!   (`Invalid username or password.`), gated repos 401 `GatedRepo` on
//!   file requests without a token, `RevisionNotFound` and `EntryNotFound`
//!   404s, a rejected token 401 `Invalid credentials in Authorization header`;
//! * a 429 mode with `RateLimit`, `RateLimit-Policy` and `Retry-After`.
//!
//! Revisions are one percent-encoded path segment (`refs%2Fpr%2F1`), so a
//! client that sends `refs/pr/1` raw gets `RevisionNotFound`, as it would
//! from the Hub. Every request is recorded by the servers
//! ([`MockHub::hub`]`.requests()`, [`MockHub::cdn`]`.requests()`), which is
//! how tests prove that a token never reached the CDN.
//!
//! [`MockHub::start_with`] can serve everything (hub, CDN, Xet CAS and
//! transfer) over HTTPS with one certificate, so a client that trusts the
//! CA can be run against the whole protocol over TLS.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Value, json};
use sha1::Digest as _;

use super::content::hex;
use super::server::signed_url;
use super::xet::MockCas;
use super::{Body, FileSpec, Reply, RequestInfo, ServerOptions, TestServer};
use crate::sync::lock;

/// Entries per tree page, as the Hub (1,000 without `expand`).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Escapes everything but `A-Z a-z 0-9 - . _ ~` (and `/` in paths).
const SEGMENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const PATH: &percent_encoding::AsciiSet = &SEGMENT.remove(b'/');

/// A model or a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Model,
    Dataset,
}

impl Kind {
    fn api(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Kind::Model => "",
            Kind::Dataset => "datasets/",
        }
    }
}

/// One file of a repo: its content (with any fault knobs, which apply where
/// the bytes are served: the resolve cache for git files, the CDN for LFS).
#[derive(Clone, Debug)]
pub struct HubFile {
    pub path: String,
    pub spec: FileSpec,
    pub lfs: bool,
    /// Also stored in the mock Xet CAS (needs [`MockHub::start_with_xet`]):
    /// the resolve answer names its file id and the token route.
    pub xet: bool,
}

impl HubFile {
    /// A small file stored in git (config, README, tokenizer).
    pub fn git(path: impl Into<String>, bytes: impl Into<Bytes>) -> HubFile {
        HubFile {
            path: path.into(),
            spec: FileSpec::bytes(bytes),
            lfs: false,
            xet: false,
        }
    }

    /// A file stored in LFS, served by the CDN from `spec`.
    pub fn lfs(path: impl Into<String>, spec: FileSpec) -> HubFile {
        HubFile {
            path: path.into(),
            spec,
            lfs: true,
            xet: false,
        }
    }

    /// A file stored in Xet: served natively by the mock CAS, and over the
    /// plain path (the "bridge") by the CDN from `spec`, with its faults.
    pub fn xet(path: impl Into<String>, spec: FileSpec) -> HubFile {
        HubFile {
            xet: true,
            ..HubFile::lfs(path, spec)
        }
    }
}

/// A repo to add to the hub.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    pub id: String,
    pub kind: Kind,
    /// `None`, or the Hub's gating mode (`"auto"`, `"manual"`).
    pub gated: Option<String>,
    pub private: bool,
    pub files: Vec<HubFile>,
}

impl RepoSpec {
    pub fn model(id: impl Into<String>) -> RepoSpec {
        RepoSpec {
            id: id.into(),
            kind: Kind::Model,
            gated: None,
            private: false,
            files: Vec::new(),
        }
    }

    pub fn dataset(id: impl Into<String>) -> RepoSpec {
        RepoSpec {
            kind: Kind::Dataset,
            ..RepoSpec::model(id)
        }
    }

    pub fn file(mut self, f: HubFile) -> RepoSpec {
        self.files.push(f);
        self
    }

    pub fn gated(mut self, mode: &str) -> RepoSpec {
        self.gated = Some(mode.to_string());
        self
    }

    pub fn private(mut self) -> RepoSpec {
        self.private = true;
        self
    }

    /// A model repo like the ones users fetch: a few small git files
    /// (`config.json`, `README.md`, ...) and `lfs` LFS shards whose sizes
    /// are drawn from `sizes` with `seed`. `throttle` (bytes per second per
    /// connection) applies to the shards on the CDN.
    pub fn generated(
        id: impl Into<String>,
        lfs: usize,
        sizes: std::ops::Range<u64>,
        seed: u64,
        throttle: Option<u64>,
    ) -> RepoSpec {
        let id = id.into();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut r = RepoSpec::model(id.clone())
            .file(HubFile::git(
                ".gitattributes",
                "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
            ))
            .file(HubFile::git(
                "README.md",
                format!("# {id}\n\nA generated repo served by the hfd mock Hub.\n"),
            ))
            .file(HubFile::git(
                "config.json",
                json!({"model_type": "demo", "hidden_size": 64, "shards": lfs}).to_string(),
            ))
            .file(HubFile::git(
                "tokenizer/vocab.txt",
                (0..500).map(|i| format!("tok{i}\n")).collect::<String>(),
            ));
        for i in 0..lfs {
            let len = if sizes.start >= sizes.end {
                sizes.start
            } else {
                rng.u64(sizes.clone())
            };
            let mut spec = FileSpec::generated(seed.wrapping_mul(1000).wrapping_add(i as u64), len);
            if let Some(t) = throttle {
                spec = spec.throttle(t);
            }
            r = r.file(HubFile::lfs(
                format!("model-{:05}-of-{lfs:05}.safetensors", i + 1),
                spec,
            ));
        }
        r
    }
}

/// Which calls the 429 mode answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// `/api/…` ("api" bucket).
    Api,
    /// `…/resolve/…` ("resolvers" bucket).
    Resolvers,
    Both,
}

/// A stored file of one commit.
#[derive(Clone, Debug)]
struct Stored {
    path: String,
    size: u64,
    /// Git blob id: of the content, or of the LFS pointer for LFS files.
    oid: String,
    sha256: Option<String>,
    /// Where the bytes are: a path on the hub (git) or on the CDN (LFS).
    location: String,
    /// The Xet file id, for files stored in Xet.
    xet_hash: Option<String>,
}

#[derive(Debug)]
struct Repo {
    id: String,
    kind: Kind,
    gated: Option<String>,
    private: bool,
    refs: BTreeMap<String, String>,
    commits: HashMap<String, Vec<Stored>>,
    hidden: BTreeSet<String>,
}

#[derive(Debug)]
struct State {
    repos: Vec<Repo>,
    token: Option<String>,
    page_size: usize,
    next_base: Option<String>,
    limit: Option<(u32, LimitScope, u64)>,
    url_ttl: Duration,
    url_uses: Option<u32>,
    treesize: bool,
    truncate_siblings: bool,
    commits_made: u64,
    commit_salt: Option<String>,
}

/// The mock Hub: `hub()` serves the API, resolves and the resolve cache;
/// `cdn()` serves LFS bytes behind signed URLs.
pub struct MockHub {
    hub: TestServer,
    cdn: TestServer,
    state: Arc<Mutex<State>>,
    xet: Option<Arc<MockCas>>,
}

fn git_blob_sha1(data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex(&h.finalize())
}

fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

impl Default for MockHub {
    fn default() -> Self {
        MockHub::start()
    }
}

/// How to start a [`MockHub`]; the default is [`MockHub::start`]'s.
#[derive(Clone, Default)]
pub struct HubOptions {
    /// Also start a mock Xet CAS behind the hub ([`crate::xet`]).
    pub xet: bool,
    /// Serve every server (hub, CDN, and the CAS and transfer servers with
    /// `xet`) over HTTPS with this configuration, e.g. from
    /// [`crate::tls::throwaway_tls`]. All the URLs the mock hands out
    /// (redirects, `Link`s, `casUrl`, presigned URLs) then say `https`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl MockHub {
    /// Starts both servers on loopback.
    pub fn start() -> MockHub {
        MockHub::start_with(HubOptions::default())
    }

    /// Starts the hub with a mock Xet CAS behind it ([`crate::xet`]).
    pub fn start_with_xet() -> MockHub {
        MockHub::start_with(HubOptions {
            xet: true,
            ..HubOptions::default()
        })
    }

    /// Starts the servers `opts` asks for, on loopback.
    pub fn start_with(opts: HubOptions) -> MockHub {
        let server = || {
            TestServer::start_with(ServerOptions {
                tls: opts.tls.clone(),
                ..ServerOptions::default()
            })
        };
        let (hub, cdn) = (server(), server());
        let xet = opts
            .xet
            .then(|| Arc::new(MockCas::start_with(opts.tls.clone())));
        let state = Arc::new(Mutex::new(State {
            repos: Vec::new(),
            token: None,
            page_size: DEFAULT_PAGE_SIZE,
            next_base: None,
            limit: None,
            url_ttl: Duration::from_secs(3600),
            url_uses: None,
            treesize: true,
            truncate_siblings: false,
            commits_made: 0,
            commit_salt: None,
        }));
        let h = Handler {
            state: state.clone(),
            hub_base: hub.base_url(),
            cdn_base: cdn.base_url(),
            xet: xet.clone(),
        };
        hub.add_handler_fn("/", move |req| h.handle(req));
        MockHub {
            hub,
            cdn,
            state,
            xet,
        }
    }

    /// The mock Xet CAS, when started with it.
    pub fn xet(&self) -> &MockCas {
        self.xet
            .as_deref()
            .expect("a MockHub started with start_with_xet")
    }

    /// The value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.hub.base_url()
    }

    /// The server for the API, resolves and git files.
    pub fn hub(&self) -> &TestServer {
        &self.hub
    }

    /// The server for LFS bytes.
    pub fn cdn(&self) -> &TestServer {
        &self.cdn
    }

    /// Adds a repo whose `main` holds `spec.files`; returns the commit.
    pub fn add_repo(&self, spec: RepoSpec) -> String {
        let commit = self.new_commit(&spec.id);
        let token = (spec.private || spec.gated.is_some())
            .then(|| lock(&self.state).token.clone())
            .flatten();
        let stored = self.store(&spec.id, spec.kind, &commit, &spec.files, token.as_deref());
        let mut st = lock(&self.state);
        st.repos
            .retain(|r| !(r.id == spec.id && r.kind == spec.kind));
        let mut refs = BTreeMap::new();
        refs.insert("main".to_string(), commit.clone());
        let mut commits = HashMap::new();
        commits.insert(commit.clone(), stored);
        st.repos.push(Repo {
            id: spec.id,
            kind: spec.kind,
            gated: spec.gated,
            private: spec.private,
            refs,
            commits,
            hidden: BTreeSet::new(),
        });
        commit
    }

    /// A new commit on `branch` (created from `main` if missing): `main`'s
    /// (or the branch's) files with `changed` added or replaced and
    /// `removed` deleted. Returns the commit.
    pub fn push(
        &self,
        repo: &str,
        branch: &str,
        changed: Vec<HubFile>,
        removed: &[&str],
    ) -> String {
        let (kind, mut files) = {
            let st = lock(&self.state);
            let r = st
                .repos
                .iter()
                .find(|r| r.id == repo)
                .unwrap_or_else(|| panic!("no repo {repo}"));
            let base = r.refs.get(branch).or_else(|| r.refs.get("main")).cloned();
            let files = base
                .and_then(|c| r.commits.get(&c).cloned())
                .unwrap_or_default();
            (r.kind, files)
        };
        let commit = self.new_commit(repo);
        files.retain(|f| !removed.contains(&f.path.as_str()));
        let changed_paths: Vec<&str> = changed.iter().map(|f| f.path.as_str()).collect();
        files.retain(|f| !changed_paths.contains(&f.path.as_str()));
        // Unchanged files are served again under the new commit's cache path.
        let kept: Vec<Stored> = files
            .into_iter()
            .map(|f| self.restore(kind, repo, &commit, f))
            .collect();
        let mut all = kept;
        let token = self.needs_token(repo);
        all.extend(self.store(repo, kind, &commit, &changed, token.as_deref()));
        all.sort_by(|a, b| a.path.cmp(&b.path));
        let mut st = lock(&self.state);
        let r = st
            .repos
            .iter_mut()
            .find(|r| r.id == repo)
            .expect("checked above");
        r.commits.insert(commit.clone(), all);
        r.refs.insert(branch.to_string(), commit.clone());
        commit
    }

    /// The commit `rev` points at.
    pub fn commit_of(&self, repo: &str, rev: &str) -> Option<String> {
        let st = lock(&self.state);
        st.repos
            .iter()
            .find(|r| r.id == repo)
            .and_then(|r| r.refs.get(rev).cloned())
    }

    /// Only `Bearer <token>` is accepted (others get 401 "Invalid
    /// credentials"); private and gated repos need it. Set it before adding
    /// such repos: their git files' bytes require it from then on.
    pub fn set_token(&self, token: &str) {
        lock(&self.state).token = Some(token.to_string());
    }

    /// Tree entries per page.
    pub fn set_page_size(&self, n: usize) {
        lock(&self.state).page_size = n.max(1);
    }

    /// Build `Link: rel="next"` URLs on this base (another host, as a
    /// mirror relaying huggingface.co's links would) instead of the hub's.
    pub fn set_next_link_base(&self, base: Option<String>) {
        lock(&self.state).next_base = base;
    }

    /// The next `count` API and/or resolve requests answer 429 with a
    /// reset of `reset_secs`.
    pub fn rate_limit(&self, count: u32, scope: LimitScope, reset_secs: u64) {
        lock(&self.state).limit = Some((count, scope, reset_secs));
    }

    /// How long signed CDN URLs stay valid (the Hub's are about an hour).
    pub fn set_url_ttl(&self, d: Duration) {
        lock(&self.state).url_ttl = d;
    }

    /// Signed CDN URLs serve this many requests, then answer 403 "Request
    /// has expired" (`None`: as many as their time allows).
    pub fn set_url_uses(&self, n: Option<u32>) {
        lock(&self.state).url_uses = n;
    }

    /// Turns the treesize call off (404), as on mirrors that lack it.
    pub fn set_treesize(&self, on: bool) {
        lock(&self.state).treesize = on;
    }

    /// Commit ids made from `salt` instead of this hub's address, so two
    /// hubs given the same salt and the same repos name the same commits, as
    /// a mirror relaying the Hub does. Set it before adding repos.
    pub fn set_commit_salt(&self, salt: &str) {
        lock(&self.state).commit_salt = Some(salt.to_string());
    }

    /// Lists only half of the files in `siblings`, as the Hub truncates
    /// them for very large repos: a client must walk the tree.
    pub fn truncate_siblings(&self, on: bool) {
        lock(&self.state).truncate_siblings = on;
    }

    /// Makes `path` answer 404 `EntryNotFound` on resolve while it is still
    /// listed (a file removed meanwhile, a mirror missing it).
    pub fn hide_file(&self, repo: &str, path: &str) {
        let mut st = lock(&self.state);
        if let Some(r) = st.repos.iter_mut().find(|r| r.id == repo) {
            r.hidden.insert(path.to_string());
        }
    }

    /// Requests to the hub whose path contains `/resolve/`.
    pub fn resolve_requests(&self) -> Vec<RequestInfo> {
        self.hub
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("/resolve/"))
            .collect()
    }

    fn new_commit(&self, repo: &str) -> String {
        let mut st = lock(&self.state);
        st.commits_made += 1;
        let n = st.commits_made;
        let salt = st
            .commit_salt
            .clone()
            .unwrap_or_else(|| self.hub.addr().to_string());
        drop(st);
        let mut h = sha1::Sha1::new();
        h.update(format!("{repo}\n{n}\n{salt}").as_bytes());
        hex(&h.finalize())
    }

    /// Registers the bytes of `files` for `commit` and returns their records.
    fn store(
        &self,
        repo: &str,
        kind: Kind,
        commit: &str,
        files: &[HubFile],
        token: Option<&str>,
    ) -> Vec<Stored> {
        let mut out: Vec<Stored> = files
            .iter()
            .map(|f| {
                let size = f.spec.len();
                if f.lfs {
                    let sha256 = f.spec.sha256_hex();
                    let location = format!("/lfs/{sha256}");
                    let name = f.path.rsplit('/').next().unwrap_or("file");
                    let spec = f.spec.clone().header(
                        "content-disposition",
                        format!(
                            "inline; filename*=UTF-8''{}; filename=\"{}\";",
                            utf8_percent_encode(name, SEGMENT),
                            name.replace(['"', '\\'], "_")
                        ),
                    );
                    self.cdn.add_file(&location, spec);
                    let xet_hash = f.xet.then(|| self.xet().add(&body_bytes(&f.spec)));
                    Stored {
                        path: f.path.clone(),
                        size,
                        oid: git_blob_sha1(lfs_pointer(&sha256, size).as_bytes()),
                        sha256: Some(sha256),
                        location,
                        xet_hash,
                    }
                } else {
                    let data = body_bytes(&f.spec);
                    let stored = Stored {
                        path: f.path.clone(),
                        size,
                        oid: git_blob_sha1(&data),
                        sha256: None,
                        location: cache_path(kind, repo, commit, &f.path),
                        xet_hash: None,
                    };
                    self.hub.add_file(
                        &stored.location,
                        git_file_spec(&f.spec, &stored.oid, commit, token),
                    );
                    stored
                }
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// A kept file under a new commit: git files get the new cache path.
    fn restore(&self, kind: Kind, repo: &str, commit: &str, f: Stored) -> Stored {
        if f.sha256.is_some() {
            return f;
        }
        let Some(view) = self.hub.file(&f.location) else {
            return f;
        };
        let location = cache_path(kind, repo, commit, &f.path);
        self.hub.add_file(
            &location,
            git_file_spec(
                &FileSpec::new(view.body),
                &f.oid,
                commit,
                self.needs_token(repo).as_deref(),
            ),
        );
        Stored { location, ..f }
    }

    /// The token git-file bytes require, for private and gated repos.
    fn needs_token(&self, repo: &str) -> Option<String> {
        let st = lock(&self.state);
        let r = st.repos.iter().find(|r| r.id == repo)?;
        (r.private || r.gated.is_some())
            .then(|| st.token.clone())
            .flatten()
    }
}

fn body_bytes(spec: &FileSpec) -> Bytes {
    match &spec.body {
        Body::Static(b) => b.clone(),
        Body::Generated(c) => c.bytes(0..c.len()),
    }
}

/// A git file's bytes as the Hub's resolve cache serves them: its ETag is
/// the git blob id and `X-Repo-Commit` names the commit, which is what
/// huggingface_hub reads after following the relative 307 there.
fn git_file_spec(spec: &FileSpec, oid: &str, commit: &str, token: Option<&str>) -> FileSpec {
    let mut s = spec
        .clone()
        .etag(format!("\"{oid}\""))
        .header("x-repo-commit", commit)
        .header("x-linked-etag", format!("\"{oid}\""))
        .header("content-type", "text/plain; charset=utf-8");
    if let Some(t) = token {
        s = s.require_header("authorization", format!("Bearer {t}"));
    }
    s
}

fn cache_path(kind: Kind, repo: &str, commit: &str, path: &str) -> String {
    format!(
        "/api/resolve-cache/{}/{repo}/{commit}/{}",
        kind.api(),
        utf8_percent_encode(path, PATH)
    )
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The request handler (runs on the hub's server thread).
struct Handler {
    state: Arc<Mutex<State>>,
    hub_base: String,
    cdn_base: String,
    xet: Option<Arc<MockCas>>,
}

fn error_reply(status: u16, code: Option<&str>, message: &str) -> Reply {
    let mut r =
        Reply::json(status, &json!({ "error": message })).header("x-error-message", message);
    if let Some(c) = code {
        r = r.header("x-error-code", c);
    }
    r
}

fn repo_not_found() -> Reply {
    error_reply(401, Some("RepoNotFound"), "Invalid username or password.").header(
        "www-authenticate",
        "Bearer realm=\"Authentication required\", charset=\"UTF-8\"",
    )
}

/// Who is asking: a valid token, none, or a wrong one.
enum Caller {
    Anonymous,
    Authorized,
    BadToken,
}

impl Handler {
    fn handle(&self, req: &RequestInfo) -> Reply {
        let mut st = lock(&self.state);
        let is_api = req.path.starts_with("/api/");
        let is_resolve = !is_api && req.path.contains("/resolve/");
        if let Some((left, scope, reset)) = st.limit {
            let applies = match scope {
                LimitScope::Api => is_api,
                LimitScope::Resolvers => is_resolve,
                LimitScope::Both => is_api || is_resolve,
            };
            if applies && left > 0 {
                st.limit = (left > 1).then_some((left - 1, scope, reset));
                let bucket = if is_api { "api" } else { "resolvers" };
                let quota = if is_api { 500 } else { 3000 };
                return Reply::text(
                    429,
                    format!(
                        "429 Too Many Requests: you have reached your '{bucket}' rate limit. Retry after {reset} seconds (0/{quota} requests remaining in current 300s window)."
                    ),
                )
                .header("ratelimit", format!("\"{bucket}\";r=0;t={reset}"))
                .header(
                    "ratelimit-policy",
                    format!("\"fixed window\";\"{bucket}\";q={quota};w=300"),
                )
                .header("retry-after", reset.to_string());
            }
        }
        let caller = match (req.header("authorization"), &st.token) {
            (None, _) => Caller::Anonymous,
            (Some(a), Some(t)) if a == format!("Bearer {t}") => Caller::Authorized,
            (Some(_), Some(_)) => Caller::BadToken,
            (Some(_), None) => Caller::Authorized,
        };
        if let Caller::BadToken = caller {
            return error_reply(401, None, "Invalid credentials in Authorization header");
        }
        let authorized = matches!(caller, Caller::Authorized);
        if let Some(rest) = req.path.strip_prefix("/api/models/") {
            return self.api(&st, Kind::Model, rest, req, authorized);
        }
        if let Some(rest) = req.path.strip_prefix("/api/datasets/") {
            return self.api(&st, Kind::Dataset, rest, req, authorized);
        }
        if let Some((head, tail)) = req.path.split_once("/resolve/") {
            let (kind, id) = match head.strip_prefix("/datasets/") {
                Some(id) => (Kind::Dataset, id),
                None => (Kind::Model, head.trim_start_matches('/')),
            };
            return self.resolve(&st, kind, id, tail, authorized);
        }
        Reply::text(404, "Sorry, we can't find the page you are looking for.")
    }

    /// The repo named at the start of `rest` (longest id wins) and the rest.
    fn find<'a, 'r>(st: &'a State, kind: Kind, rest: &'r str) -> Option<(&'a Repo, &'r str)> {
        st.repos
            .iter()
            .filter(|r| r.kind == kind)
            .filter_map(|r| {
                let after = rest.strip_prefix(r.id.as_str())?;
                (after.is_empty() || after.starts_with('/')).then_some((r, after))
            })
            .max_by_key(|(r, _)| r.id.len())
    }

    fn commit_for<'a>(repo: &'a Repo, rev: &str) -> Option<(&'a str, &'a Vec<Stored>)> {
        let commit = match repo.refs.get(rev) {
            Some(c) => c.as_str(),
            None => repo.commits.keys().find(|c| c.as_str() == rev)?.as_str(),
        };
        repo.commits.get(commit).map(|f| (commit, f))
    }

    fn api(
        &self,
        st: &State,
        kind: Kind,
        rest: &str,
        req: &RequestInfo,
        authorized: bool,
    ) -> Reply {
        let Some((repo, sub)) = Self::find(st, kind, rest) else {
            return repo_not_found();
        };
        if repo.private && !authorized {
            return repo_not_found();
        }
        let (route, rev_and_path) = if sub.is_empty() {
            ("info", "main")
        } else if let Some(r) = sub.strip_prefix("/revision/") {
            ("info", r)
        } else if let Some(r) = sub.strip_prefix("/tree/") {
            ("tree", r)
        } else if let Some(r) = sub.strip_prefix("/treesize/") {
            ("treesize", r)
        } else if let Some(r) = sub.strip_prefix("/xet-read-token/") {
            ("xet-token", r)
        } else {
            return Reply::text(404, "Sorry, we can't find the page you are looking for.");
        };
        // The revision is one (encoded) segment; for tree calls a path may follow.
        let (rev_enc, sub_path) = rev_and_path.split_once('/').unwrap_or((rev_and_path, ""));
        let rev = decode(rev_enc);
        let Some((commit, files)) = Self::commit_for(repo, &rev) else {
            return error_reply(
                404,
                Some("RevisionNotFound"),
                &format!("Invalid rev id: {rev}"),
            );
        };
        match route {
            "xet-token" => self.xet_token(repo, authorized),
            "info" => self.info(
                st,
                repo,
                commit,
                files,
                req.query_param("blobs").as_deref() == Some("true"),
            ),
            "treesize" => {
                if !st.treesize {
                    return Reply::text(404, "Not Found");
                }
                let prefix = decode(sub_path);
                let size: u64 = files
                    .iter()
                    .filter(|f| prefix.is_empty() || f.path.starts_with(&format!("{prefix}/")))
                    .map(|f| f.size)
                    .sum();
                Reply::json(200, &json!({"path": prefix, "size": size}))
            }
            _ => self.tree(st, repo, rev_enc, files, req),
        }
    }

    /// `xet-read-token`: a CAS token for a reader of the repo.
    fn xet_token(&self, repo: &Repo, authorized: bool) -> Reply {
        let Some(cas) = &self.xet else {
            return Reply::text(404, "Sorry, we can't find the page you are looking for.");
        };
        if repo.gated.is_some() && !authorized {
            return error_reply(401, Some("GatedRepo"), "Access to this repo is restricted.");
        }
        cas.issue_token()
    }

    fn info(&self, st: &State, repo: &Repo, commit: &str, files: &[Stored], blobs: bool) -> Reply {
        let shown = if st.truncate_siblings {
            &files[..files.len() / 2]
        } else {
            files
        };
        let siblings: Vec<Value> = shown
            .iter()
            .map(|f| {
                if !blobs {
                    return json!({ "rfilename": f.path });
                }
                let mut v = json!({ "rfilename": f.path, "size": f.size, "blobId": f.oid });
                if let Some(sha) = &f.sha256 {
                    v["lfs"] = json!({
                        "sha256": sha,
                        "size": f.size,
                        "pointerSize": lfs_pointer(sha, f.size).len(),
                    });
                }
                v
            })
            .collect();
        let author = repo.id.split_once('/').map_or("", |(a, _)| a);
        let gated = match &repo.gated {
            Some(m) => Value::String(m.clone()),
            None => Value::Bool(false),
        };
        let mut v = json!({
            "_id": format!("{:024x}", repo.id.len() as u64 * 7919 + commit.len() as u64),
            "id": repo.id,
            "author": author,
            "sha": commit,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "private": repo.private,
            "gated": gated,
            "disabled": false,
            "tags": [],
            "siblings": siblings,
            "createdAt": "2023-01-01T00:00:00.000Z",
            "usedStorage": files.iter().map(|f| f.size).sum::<u64>(),
        });
        if repo.kind == Kind::Model {
            v["modelId"] = Value::String(repo.id.clone());
        }
        Reply::json(200, &v)
    }

    fn tree(
        &self,
        st: &State,
        repo: &Repo,
        rev_enc: &str,
        files: &[Stored],
        req: &RequestInfo,
    ) -> Reply {
        let recursive = req.query_param("recursive").as_deref() == Some("true");
        // Directories as entries, then files, in path order.
        let mut entries: Vec<Value> = Vec::new();
        let mut dirs = BTreeSet::new();
        for f in files {
            let mut acc = String::new();
            let parts: Vec<&str> = f.path.split('/').collect();
            for p in &parts[..parts.len() - 1] {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(p);
                dirs.insert(acc.clone());
            }
        }
        let mut all: Vec<(String, Value)> = dirs
            .into_iter()
            .filter(|d| recursive || !d.contains('/'))
            .map(|d| {
                let oid = git_blob_sha1(d.as_bytes());
                (
                    d.clone(),
                    json!({"type": "directory", "oid": oid, "size": 0, "path": d}),
                )
            })
            .collect();
        for f in files.iter().filter(|f| recursive || !f.path.contains('/')) {
            let mut v = json!({"type": "file", "oid": f.oid, "size": f.size, "path": f.path});
            if let Some(x) = &f.xet_hash {
                v["xetHash"] = Value::String(x.clone());
            }
            if let Some(sha) = &f.sha256 {
                v["lfs"] = json!({
                    "oid": sha,
                    "size": f.size,
                    "pointerSize": lfs_pointer(sha, f.size).len(),
                });
            }
            all.push((f.path.clone(), v));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let start: usize = req
            .query_param("cursor")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + st.page_size).min(all.len());
        entries.extend(all[start.min(end)..end].iter().map(|(_, v)| v.clone()));
        let mut reply = Reply::json(200, &Value::Array(entries));
        if end < all.len() {
            let base = st.next_base.as_deref().unwrap_or(&self.hub_base);
            reply = reply.header(
                "link",
                format!(
                    "<{base}/api/{}/{}/tree/{rev_enc}?recursive={recursive}&expand=false&cursor={end}>; rel=\"next\"",
                    repo.kind.api(),
                    repo.id
                ),
            );
        }
        reply
    }

    fn resolve(&self, st: &State, kind: Kind, id: &str, tail: &str, authorized: bool) -> Reply {
        let Some(repo) = st.repos.iter().find(|r| r.kind == kind && r.id == id) else {
            return repo_not_found();
        };
        if repo.private && !authorized {
            return repo_not_found();
        }
        if repo.gated.is_some() && !authorized {
            return error_reply(
                401,
                Some("GatedRepo"),
                &format!(
                    "Access to {} {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    if kind == Kind::Model {
                        "model"
                    } else {
                        "dataset"
                    },
                    repo.id
                ),
            );
        }
        let (rev_enc, path_enc) = tail.split_once('/').unwrap_or((tail, ""));
        let rev = decode(rev_enc);
        let Some((commit, files)) = Self::commit_for(repo, &rev) else {
            return error_reply(
                404,
                Some("RevisionNotFound"),
                &format!("Invalid rev id: {rev}"),
            );
        };
        let path = decode(path_enc);
        let Some(f) = files.iter().find(|f| f.path == path) else {
            return entry_not_found();
        };
        if repo.hidden.contains(&path) {
            return entry_not_found();
        }
        let (status, location, etag) = match &f.sha256 {
            Some(sha) => (
                302,
                signed_url(
                    &format!("{}{}", self.cdn_base, f.location),
                    Some(st.url_ttl),
                    st.url_uses,
                ),
                sha.clone(),
            ),
            None => (
                307,
                format!(
                    "{}?{}=&etag=%22{}%22",
                    f.location,
                    utf8_percent_encode(
                        &format!("/{}{}/resolve/{rev}/{path}", kind.prefix(), repo.id),
                        SEGMENT
                    ),
                    f.oid
                ),
                f.oid.clone(),
            ),
        };
        let body = format!(
            "{}. Redirecting to {location}",
            if status == 302 {
                "Found"
            } else {
                "Temporary Redirect"
            }
        );
        let mut reply = Reply::text(status, body);
        if let (Some(x), Some(cas)) = (&f.xet_hash, &self.xet) {
            reply = reply.header("x-xet-hash", x).header(
                "link",
                format!(
                    "<{}/api/{}/{}/xet-read-token/{commit}>; rel=\"xet-auth\", <{}/v1/reconstructions/{x}>; rel=\"xet-reconstruction-info\"",
                    self.hub_base,
                    kind.api(),
                    repo.id,
                    cas.cas().base_url()
                ),
            );
        }
        reply
            .header("location", location)
            .header("x-repo-commit", commit)
            .header("x-linked-etag", format!("\"{etag}\""))
            .header("x-linked-size", f.size.to_string())
            .header("etag", format!("\"{etag}\""))
            .header("accept-ranges", "bytes")
            .header(
                "cache-control",
                if status == 302 {
                    "no-store"
                } else {
                    "public, max-age=0"
                },
            )
    }
}

fn entry_not_found() -> Reply {
    Reply::text(404, "Entry not found")
        .header("x-error-code", "EntryNotFound")
        .header("x-error-message", "Entry not found")
}

#[cfg(test)]
mod tests {
    use super::super::test_client::Client;
    use super::*;

    #[test]
    fn speaks_the_hub_protocol() {
        let hub = MockHub::start();
        hub.set_token("hf_t");
        let commit = hub.add_repo(
            RepoSpec::model("org/m")
                .file(HubFile::git("config.json", "{}\n"))
                .file(HubFile::lfs("w.bin", FileSpec::generated(1, 1000))),
        );
        hub.add_repo(
            RepoSpec::model("org/g")
                .gated("manual")
                .file(HubFile::git("a", "a")),
        );
        let mut c = Client::connect(hub.hub().addr());

        let r = c.request("GET", "/api/models/org/m?blobs=true", &[]);
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["sha"], commit.as_str());
        assert_eq!(v["gated"], false);
        assert_eq!(v["siblings"][0]["blobId"], git_blob_sha1(b"{}\n"));
        assert_eq!(v["siblings"][1]["lfs"]["size"], 1000);

        let r = c.request("GET", "/org/m/resolve/main/config.json", &[]);
        assert_eq!(r.status, 307);
        let loc = r.header("location").unwrap().to_string();
        assert!(loc.starts_with(&format!(
            "/api/resolve-cache/models/org/m/{commit}/config.json?"
        )));
        assert_eq!(r.header("x-repo-commit"), Some(commit.as_str()));
        assert_eq!(r.header("x-linked-size"), Some("3"));
        let r = c.request("GET", &loc, &[]);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}\n"[..]));

        let r = c.request("GET", &format!("/org/m/resolve/{commit}/w.bin"), &[]);
        assert_eq!(r.status, 302);
        assert!(
            r.header("location")
                .unwrap()
                .starts_with(&hub.cdn().base_url())
        );
        assert!(r.header("location").unwrap().contains("sig="));
        let sha = FileSpec::generated(1, 1000).sha256_hex();
        assert_eq!(
            r.header("x-linked-etag"),
            Some(format!("\"{sha}\"").as_str())
        );

        let r = c.request("GET", "/api/models/org/m/revision/refs/pr/1", &[]);
        assert_eq!(
            (r.status, r.header("x-error-code")),
            (404, Some("RevisionNotFound"))
        );
        let r = c.request("GET", "/org/m/resolve/main/nope", &[]);
        assert_eq!(
            (r.status, r.header("x-error-code")),
            (404, Some("EntryNotFound"))
        );
        let r = c.request("GET", "/api/models/org/none", &[]);
        assert_eq!(r.status, 401);
        let r = c.request(
            "GET",
            "/api/models/org/m",
            &[("authorization", "Bearer bad")],
        );
        assert_eq!(r.status, 401);

        // Gated: the info is public, the bytes need the token.
        let r = c.request("GET", "/api/models/org/g", &[]);
        assert_eq!(r.status, 200);
        let r = c.request("GET", "/org/g/resolve/main/a", &[]);
        assert_eq!(
            (r.status, r.header("x-error-code")),
            (401, Some("GatedRepo"))
        );
        let r = c.request(
            "GET",
            "/org/g/resolve/main/a",
            &[("authorization", "Bearer hf_t")],
        );
        assert_eq!(r.status, 307);

        hub.rate_limit(1, LimitScope::Api, 7);
        let r = c.request("GET", "/api/models/org/m", &[]);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("ratelimit"), Some("\"api\";r=0;t=7"));
        assert_eq!(r.header("retry-after"), Some("7"));
        assert_eq!(c.request("GET", "/api/models/org/m", &[]).status, 200);

        hub.set_page_size(1);
        let r = c.request("GET", "/api/models/org/m/tree/main?recursive=true", &[]);
        let page: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(page.as_array().unwrap().len(), 1);
        assert!(
            r.header("link")
                .unwrap()
                .ends_with("cursor=1>; rel=\"next\"")
        );
    }
}
