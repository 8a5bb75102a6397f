//! Measuring sources: how fast is each mirror, now?
//!
//! A mirror that is fast at 9 am can be slow at 9 pm, so users need a
//! measurement rather than hearsay. For each source, one after another (so
//! they do not compete for the same link): the time to the first byte of a
//! cold request, then `seconds` of downloading into nowhere over one
//! connection, then over `connections`. Redirects are resolved once per
//! source, as a download would. Nothing touches the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body_util::BodyExt;
use serde::Serialize;
use url::Url;

use tokio_util::sync::CancellationToken;

use crate::client::classify::status_failure;
use crate::client::{Backoff, ByteRange, Failure, RetryPolicy, Source, fetch};
use crate::net::http::{ContentRange, content_length, content_range};
use crate::net::{Conn, Net};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub seconds: f64,
    pub connections: usize,
    pub headers: HeaderMap,
}

impl BenchOptions {
    /// Options from the command line's `--seconds`, `-x` and headers.
    pub fn new(seconds: f64, connections: usize, headers: HeaderMap) -> Result<Self, String> {
        if !(0.1..=3600.0).contains(&seconds) {
            return Err("--seconds must be between 0.1 and 3600".into());
        }
        Ok(BenchOptions {
            seconds,
            connections,
            headers,
        })
    }
}

/// One source's row. Serialized as the `--json` document's entries.
#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    pub source: String,
    /// Time to the first body byte of a cold request (connect, TLS, redirects).
    pub ttfb_ms: Option<f64>,
    /// Bytes received with `connections` connections.
    pub bytes: u64,
    /// Throughput with `connections` connections, bytes/s.
    pub throughput_bps: f64,
    /// Throughput over one connection, bytes/s.
    pub single_connection_bps: f64,
    pub error: Option<String>,
    /// The file measured, when the source is a Hub endpoint (`hfd --bench`
    /// picks the repo's largest file on each endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl SourceReport {
    /// The row of a source that could not be measured at all.
    pub fn failed(label: &str, error: String) -> SourceReport {
        SourceReport {
            source: label.to_string(),
            ttfb_ms: None,
            bytes: 0,
            throughput_bps: 0.0,
            single_connection_bps: 0.0,
            error: Some(error),
            file: None,
        }
    }
}

/// The whole measurement, as printed by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub results: Vec<SourceReport>,
    pub fastest: Option<String>,
}

/// Measures every source in turn; `label` names each in the report (the URL
/// for hfget, the endpoint for hfd).
pub async fn measure(net: &Net, sources: &[(String, Url)], opts: &BenchOptions) -> BenchReport {
    let mut results = Vec::new();
    for (label, url) in sources {
        results.push(measure_one(net, label, url, opts).await);
    }
    report(results)
}

/// The report of measured rows: the fastest is the highest throughput with
/// `connections` connections among the rows without an error.
pub fn report(results: Vec<SourceReport>) -> BenchReport {
    let fastest = results
        .iter()
        .filter(|r| r.error.is_none() && r.throughput_bps > 0.0)
        .max_by(|a, b| a.throughput_bps.total_cmp(&b.throughput_bps))
        .map(|r| r.source.clone());
    BenchReport { results, fastest }
}

/// Measures one source (see the module documentation).
pub async fn measure_one(net: &Net, label: &str, url: &Url, opts: &BenchOptions) -> SourceReport {
    let mut report = SourceReport {
        error: None,
        ..SourceReport::failed(label, String::new())
    };
    let source = match Source::new(0, url.clone(), &opts.headers, opts.connections) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    // A cold first request: connection, TLS, redirects, first byte.
    let started = Instant::now();
    let mut conn = None;
    let (final_url, size) = match first_byte(net, &source, &mut conn).await {
        Ok(x) => x,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.ttfb_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    let window = Duration::from_secs_f64(opts.seconds.max(0.1));
    let (single, errors1) = phase(net, &source, &final_url, size, 1, window).await;
    report.single_connection_bps = single as f64 / window.as_secs_f64();
    let (multi, errors_n) = phase(
        net,
        &source,
        &final_url,
        size,
        opts.connections.max(1),
        window,
    )
    .await;
    report.bytes = multi;
    report.throughput_bps = multi as f64 / window.as_secs_f64();
    if multi == 0 {
        report.error = Some(
            errors_n
                .or(errors1)
                .unwrap_or_else(|| "no data within the measurement window".into()),
        );
    }
    report
}

/// The first byte of the file: resolves redirects, learns the size.
async fn first_byte(
    net: &Net,
    source: &Source,
    conn: &mut Option<Conn>,
) -> Result<(Url, u64), String> {
    let range = ByteRange {
        start: 0,
        end: Some(1),
    };
    let f = fetch(
        net,
        source.request(&source.original, Some(range), None),
        conn,
    )
    .await
    .map_err(describe)?;
    let status = f.response.status().as_u16();
    let url = f.url.clone();
    let size = match status {
        206 => match content_range(f.response.headers()) {
            Some(ContentRange::Bytes { total: Some(t), .. }) => t,
            _ => return Err("the server does not report the file size".into()),
        },
        200 => content_length(f.response.headers()).unwrap_or(0),
        _ => {
            let redirected = f.url != source.original;
            return Err(describe(
                status_failure(f.response, &url, redirected, source.named()).await,
            ));
        }
    };
    if size == 0 {
        return Err("the file is empty or its size is unknown".into());
    }
    // One byte to read; a whole file (a 200) is not read, the connection goes.
    if status != 206 || !read_to_end(f.response.into_body()).await {
        *conn = None;
    }
    Ok((url, size))
}

/// Reads a (short) body to its end within a second; false when it did not end.
async fn read_to_end(mut body: crate::net::Body) -> bool {
    let read = async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .unwrap_or(false)
}

fn describe(f: Failure) -> String {
    match f {
        Failure::Retry { detail, .. } => detail,
        Failure::Expired { detail, .. } => detail,
        Failure::Fatal(e) => e.to_string(),
    }
}

/// `conns` connections fetch bounded ranges spread over the file (wrapping
/// around) for `window`; returns the bytes received and the last error.
async fn phase(
    net: &Net,
    source: &Arc<Source>,
    url: &Url,
    size: u64,
    conns: usize,
    window: Duration,
) -> (u64, Option<String>) {
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + window;
    let chunk = (size / conns as u64).clamp(1, 16 << 20);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..conns {
        let (net, source, url, bytes) = (net.clone(), source.clone(), url.clone(), bytes.clone());
        let start = size * i as u64 / conns as u64;
        tasks.spawn(async move {
            let work = one_connection(&net, &source, &url, size, start, chunk, &bytes);
            tokio::time::timeout_at(deadline, work)
                .await
                .unwrap_or(None)
        });
    }
    let mut last_error = None;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(e)) = r {
            last_error = Some(e);
        }
    }
    (bytes.load(Relaxed), last_error)
}

/// Fetches consecutive ranges from `start` until stopped (by the caller's
/// deadline) or until failures pile up; returns the last error. Failures
/// wait a short backoff: the measurement is about the good moments, and a
/// source that keeps failing is reported as such.
async fn one_connection(
    net: &Net,
    source: &Source,
    url: &Url,
    size: u64,
    start: u64,
    chunk: u64,
    bytes: &AtomicU64,
) -> Option<String> {
    let policy = RetryPolicy {
        max_tries: 5,
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
    };
    // Never cancelled: the caller's deadline drops this future.
    let mut backoff = Backoff::new(policy, CancellationToken::new());
    let mut conn = None;
    let mut pos = start;
    loop {
        if pos >= size {
            pos = 0;
        }
        let end = (pos + chunk).min(size);
        let req = source.request(url, Some(ByteRange::of(&(pos..end))), None);
        let error = match fetch(net, req, &mut conn).await {
            Ok(f) if matches!(f.response.status().as_u16(), 200 | 206) => {
                match count_body(f.response.into_body(), bytes).await {
                    Ok(()) => {
                        pos = end;
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Ok(f) => format!("HTTP {}", f.response.status().as_u16()),
            Err(f) => describe(f),
        };
        conn = None;
        if backoff.failed(None, false).await.is_err() {
            return Some(error);
        }
    }
}

/// Reads a body into nowhere, counting its bytes.
async fn count_body(mut body: crate::net::Body, bytes: &AtomicU64) -> Result<(), String> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(d) = frame.data_ref() {
            bytes.fetch_add(d.len() as u64, Relaxed);
        }
    }
    Ok(())
}

/// Prints the report on stdout: one JSON document, or the table.
pub fn print(report: &BenchReport, connections: usize, json: bool) {
    if json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        );
    } else {
        let table = table(report, connections);
        crate::say!("{}", table.strip_suffix('\n').unwrap_or(&table));
    }
}

/// The report as a terminal table, the fastest source marked.
pub fn table(report: &BenchReport, connections: usize) -> String {
    use crate::size::Rate;
    let width = report
        .results
        .iter()
        .map(|r| r.source.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!(
        "{:<width$}  {:>9}  {:>13}  {:>13}\n",
        "source",
        "TTFB",
        "1 connection",
        format!("{connections} connections")
    );
    for r in &report.results {
        let mark = if report.fastest.as_deref() == Some(r.source.as_str()) {
            "  <- fastest"
        } else {
            ""
        };
        match &r.error {
            Some(e) if r.throughput_bps == 0.0 => {
                let ttfb = r.ttfb_ms.map_or("-".to_string(), |t| format!("{t:.0} ms"));
                s.push_str(&format!("{:<width$}  {ttfb:>9}  error: {e}\n", r.source));
            }
            _ => s.push_str(&format!(
                "{:<width$}  {:>9}  {:>13}  {:>13}{mark}\n",
                r.source,
                r.ttfb_ms.map_or("-".to_string(), |t| format!("{t:.0} ms")),
                Rate(r.single_connection_bps).to_string(),
                Rate(r.throughput_bps).to_string(),
            )),
        }
    }
    s
}

/// A URL for the report: as given (the user typed it and reads it back),
/// without any password.
pub fn label(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}
