//! A source: one URL the file can be fetched from, and what we learnt about it.
//!
//! The original URL is resolved once (redirects followed) and every segment
//! goes to the final URL, so a hub that rate-limits its resolver is asked once
//! per file, not once per connection. When the final URL expires (a signed
//! CDN URL answering 401/403/410), the source resolves again from the original.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderMap;
use url::Url;

use super::classify::{Failure, FailureKind};
use super::credentials::Credentials;
use super::request::{ByteRange, Fetched, Request};
use super::url::SafeUrl;
use crate::net::Conn;

/// At most this many re-resolves in a row with no data between them: a
/// target that refuses every fresh URL is an access problem, not an expired
/// URL. Re-resolves followed by data do not count, however many there are:
/// a hub that signs URLs for a few seconds must not fail a download whose
/// bytes keep coming.
pub const MAX_FRUITLESS_RERESOLVES: u32 = 3;

/// After each re-resolve, requests to the source may be this many times
/// larger again (up to [`MAX_REQUEST_SCALE`]): a URL that expires after a
/// few requests then carries more bytes before it does.
const MAX_SCALE_SHIFT: u32 = 4;
/// The largest factor re-resolves grow requests by.
pub const MAX_REQUEST_SCALE: u64 = 1 << MAX_SCALE_SHIFT;

/// Answers to requests sent ahead that never came, in a row, after which a
/// source is asked one request at a time: a server that drops pipelined
/// requests costs a few short waits, not one per request.
const AHEAD_STRIKES: u32 = 2;

/// Which source of a download something is about: its place in the
/// download's list of URLs, and the URL the user gave (shown redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceId {
    pub index: usize,
    pub url: SafeUrl,
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

#[derive(Debug)]
pub struct Source {
    pub id: usize,
    pub original: Url,
    named: SafeUrl,
    credentials: Credentials,
    resolved: Mutex<Resolved>,
    reresolves: Mutex<Reresolves>,
    /// Lowered on 429/503: how many connections this source may carry.
    conn_limit: AtomicUsize,
    /// Live slots on this source.
    active: AtomicUsize,
    dead: AtomicBool,
    /// Smoothed time to the first response byte, in microseconds.
    ttfb_us: AtomicU64,
    /// Requests sent ahead whose answers never came, in a row.
    ahead_misses: AtomicU32,
    /// Bytes received from this source (for multi-source reports).
    pub bytes: AtomicU64,
    /// Its last connection used up its retries.
    pub gave_up: AtomicBool,
    /// With a [`super::SourceCheck`]: this source's own strong ETag and
    /// Last-Modified, fixed by its first good answer.
    pub own_validators: OnceLock<(Option<String>, Option<String>)>,
}

/// The re-resolves of a source, for its budget and its request size.
#[derive(Debug, Default)]
struct Reresolves {
    /// In a row, with no data received since the first of them.
    fruitless: u32,
    /// [`Source::bytes`] at the last re-resolve.
    bytes_then: u64,
    /// Since the download started.
    total: u32,
}

#[derive(Clone, Debug)]
struct Resolved {
    url: Url,
    generation: u64,
}

impl Source {
    pub fn new(
        id: usize,
        original: Url,
        user_headers: &HeaderMap,
        conn_limit: usize,
    ) -> Result<Source, crate::net::NetError> {
        let credentials = Credentials::new(&original, user_headers)?;
        Ok(Source {
            id,
            resolved: Mutex::new(Resolved {
                url: original.clone(),
                generation: 0,
            }),
            named: SafeUrl::from(&original),
            original,
            credentials,
            reresolves: Mutex::new(Reresolves::default()),
            conn_limit: AtomicUsize::new(conn_limit.max(1)),
            active: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            ttfb_us: AtomicU64::new(0),
            ahead_misses: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
            own_validators: OnceLock::new(),
        })
    }

    /// The URL the user gave, for messages (shown without secrets).
    pub fn named(&self) -> &SafeUrl {
        &self.named
    }

    /// This source, for errors about it.
    pub fn ident(&self) -> SourceId {
        SourceId {
            index: self.id,
            url: self.named.clone(),
        }
    }

    /// A request for `range` (`None`: the whole answer) starting at `url`.
    pub fn request<'a>(
        &'a self,
        url: &'a Url,
        range: Option<ByteRange>,
        if_range: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            url,
            credentials: &self.credentials,
            range,
            if_range,
            named: &self.named,
        }
    }

    /// Where segment requests go now, and the generation of that answer.
    pub fn current(&self) -> (Url, u64) {
        let r = self.resolved.lock().unwrap();
        (r.url.clone(), r.generation)
    }

    /// Records the final URL found by following redirects from the original.
    pub fn set_resolved(&self, url: Url) {
        let mut r = self.resolved.lock().unwrap();
        if r.url != url {
            r.url = url;
            r.generation += 1;
        }
    }

    /// True when segments currently go somewhere other than the original URL.
    pub fn is_redirected(&self) -> bool {
        self.resolved.lock().unwrap().url != self.original
    }

    /// Forgets the redirect target seen at `generation` so the next request
    /// resolves again from the original URL. Many connections hit the same
    /// expiry at once; only the first one resets, the rest see the new
    /// generation. Returns false when [`MAX_FRUITLESS_RERESOLVES`]
    /// re-resolves in a row brought no data.
    pub fn expire(&self, generation: u64) -> bool {
        let mut r = self.resolved.lock().unwrap();
        if r.generation != generation {
            return true;
        }
        let mut re = self.reresolves.lock().unwrap();
        let bytes = self.bytes.load(Relaxed);
        if bytes > re.bytes_then {
            re.fruitless = 0;
        }
        if re.fruitless >= MAX_FRUITLESS_RERESOLVES {
            return false;
        }
        re.fruitless += 1;
        re.bytes_then = bytes;
        re.total = re.total.saturating_add(1);
        tracing::info!(
            "{}: the redirect target expired or was refused; resolving again",
            self.named
        );
        r.url = self.original.clone();
        r.generation += 1;
        true
    }

    /// How many times larger than usual requests to this source are: twice
    /// per re-resolve so far, up to [`MAX_REQUEST_SCALE`].
    pub fn request_scale(&self) -> u64 {
        let total = self.reresolves.lock().unwrap().total;
        1 << total.min(MAX_SCALE_SHIFT)
    }

    pub fn conn_limit(&self) -> usize {
        self.conn_limit.load(Relaxed)
    }

    /// Multiplicative decrease after 429/503: at most half the live slots.
    pub fn lower_conn_limit(&self) -> usize {
        let active = self.active.load(Relaxed).max(1);
        let new = (active / 2).max(1);
        let old = self.conn_limit.fetch_min(new, Relaxed);
        let now = old.min(new);
        if now < old {
            tracing::warn!(
                "{}: the server is overloaded; lowering connections to {now}",
                self.named
            );
        }
        now
    }

    pub fn active(&self) -> usize {
        self.active.load(Relaxed)
    }

    pub fn slot_started(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    pub fn slot_ended(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Relaxed)
    }

    pub fn mark_dead(&self) {
        self.dead.store(true, Relaxed);
    }

    /// Folds a time-to-first-byte sample into the smoothed value.
    pub fn record_ttfb(&self, d: Duration) {
        let sample = d.as_micros().min(u64::MAX as u128) as u64;
        let _ = self.ttfb_us.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 {
                sample
            } else {
                (old * 7 + sample * 3) / 10
            })
        });
    }

    pub fn ttfb(&self) -> Duration {
        Duration::from_micros(self.ttfb_us.load(Relaxed))
    }

    /// Whether requests may be sent ahead (pipelined) to this source.
    pub fn pipelines(&self) -> bool {
        self.ahead_misses.load(Relaxed) < AHEAD_STRIKES
    }

    /// How long the answer to a request sent ahead may take once the answer
    /// before it has ended. A server that pipelines has it on the way by
    /// then; one that dropped the request would otherwise hold the slot for
    /// the whole response timeout.
    pub fn ahead_timeout(&self, response_timeout: Duration) -> Duration {
        (self.ttfb() * 4).clamp(
            Duration::from_secs(5),
            response_timeout.max(Duration::from_secs(5)),
        )
    }

    /// The answer to a request sent ahead on `conn` for `url`. A redirect is
    /// not followed here: the URL was the end of a chain already, so one now
    /// is a change the caller handles like any unusable answer. An answer
    /// that does not come counts against this source's pipelining.
    pub async fn receive_ahead(
        &self,
        url: Url,
        conn: &mut Option<Conn>,
    ) -> Result<Fetched, Failure> {
        let started = Instant::now();
        let Some(c) = conn.as_mut() else {
            return Err(Failure::retry(
                FailureKind::Network,
                "the connection is closed",
            ));
        };
        let timeout = self.ahead_timeout(c.response_timeout());
        let response = match c.receive_ahead(timeout).await {
            Ok(r) => {
                self.ahead_answered();
                r
            }
            Err(e) => {
                self.ahead_missed();
                *conn = None;
                return Err(Failure::from_net(e));
            }
        };
        if response.status().is_redirection() {
            *conn = None;
            return Err(Failure::retry(
                FailureKind::BadResponse,
                format!(
                    "HTTP {} to a request sent ahead; asking again from the start",
                    response.status().as_u16()
                ),
            ));
        }
        Ok(Fetched {
            response,
            url,
            hops: Vec::new(),
            ttfb: started.elapsed(),
        })
    }

    /// The answer to a request sent ahead came.
    fn ahead_answered(&self) {
        // Once given up, pipelining stays off for this source.
        let _ = self
            .ahead_misses
            .fetch_update(Relaxed, Relaxed, |n| (n < AHEAD_STRIKES).then_some(0));
    }

    /// The answer to a request sent ahead did not come.
    fn ahead_missed(&self) {
        if self.ahead_misses.fetch_add(1, Relaxed) + 1 == AHEAD_STRIKES {
            tracing::info!(
                "{}: the server lost requests sent ahead; asking one at a time from now on",
                self.named
            );
        }
    }
}
