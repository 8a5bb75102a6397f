//! A file served without ranges: one stream from the start, restarted from
//! zero on failure (nothing else is possible), no control file.
//!
//! Every await races Ctrl-C, a silent server is a failure after
//! `--timeout`, and an answer to a retry is written only when it starts the
//! file: a 200, or a 206 whose Content-Range begins at byte 0.

use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::error::Error;
use super::job::Ctx;
use super::limit;
use super::probe::again;
use super::{Outcome, finish};
use crate::client::classify::status_failure;
use crate::client::{Backoff, ByteRange, Failure, FailureKind, Fetched, fetch};
use crate::extent::ExtentSet;
use crate::net::http::{ContentRange, content_range, strong_etag};
use crate::net::{Body, Conn};
use crate::storage::control_file::ControlState;
use crate::storage::writer::{Storage, WriteHandle, WriterOptions};
use crate::storage::{Allocation, StorageError, WriteMode, alloc, open_sink};

/// Downloads the whole file over one connection; `first` is the probe's
/// answer when it can be used as the start of the file.
pub async fn run(
    ctx: &Ctx<'_>,
    first: Option<(Fetched, Conn)>,
    length: Option<u64>,
) -> Result<Outcome, Error> {
    let source = &ctx.sources[0];
    tracing::warn!(
        "{}: the server does not support range requests; downloading over one connection, and an interrupted download will restart from zero",
        source.named()
    );
    ctx.progress.set_total(length);
    let hops = first
        .as_ref()
        .map(|(f, _)| f.hops.clone())
        .unwrap_or_default();
    let (writer, storage) = start_storage(ctx, length)?;
    let mut stream = Stream {
        ctx,
        etag: first
            .as_ref()
            .and_then(|(f, _)| strong_etag(f.response.headers())),
        length,
        writer,
        backoff: Backoff::new(ctx.spec.retry.clone(), ctx.cancel.clone()),
        got: 0,
    };
    ctx.progress.connection_opened();
    let result = stream.run(first.map(|(f, _)| f.response)).await;
    ctx.progress.connection_closed();
    drop(stream);
    let finished = tokio::task::spawn_blocking(move || storage.finish())
        .await
        .expect("the storage thread does not panic");
    let got = match (result, finished) {
        (Err(e), _) => {
            let _ = ctx.files.discard_part();
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(Error::Storage(e)),
        (Ok(n), Ok(_)) => n,
    };
    ctx.progress.set_total(Some(got));
    ctx.progress.all_received();
    finish::finalize(ctx, got).await?;
    let mut out = ctx.already_complete(got);
    out.received = got;
    out.connections = 1;
    out.single_stream = true;
    out.already_complete = false;
    out.hops = hops;
    out.source_bytes = vec![got];
    Ok(out)
}

/// The partial data emptied, its writer started (no control file: nothing
/// of a stream can be resumed).
fn start_storage(ctx: &Ctx<'_>, length: Option<u64>) -> Result<(WriteHandle, Storage), Error> {
    let part = ctx.files.part_path();
    let file = ctx.files.create_part()?;
    if let Some(len) = length {
        alloc::allocate(&file, part, len, Allocation::None)?;
    }
    let sync_file = file
        .try_clone()
        .map_err(|e| Error::Storage(StorageError::io(part, "open", e)))?;
    let sink = open_sink(WriteMode::Pwrite, file, length)
        .map_err(|e| Error::Storage(StorageError::io(part, "open", e)))?;
    let state = ControlState {
        total: length.unwrap_or(0),
        etag: None,
        last_modified: None,
        url_hash: [0; 32],
        done: ExtentSet::new(),
    };
    Ok(Storage::start(
        sink,
        sync_file,
        part.to_path_buf(),
        None,
        state,
        WriterOptions {
            written: ctx.written.clone(),
            ..WriterOptions::default()
        },
    ))
}

struct Stream<'a, 'c> {
    ctx: &'a Ctx<'c>,
    /// The strong ETag of the first answer: a retry must have the same.
    etag: Option<String>,
    length: Option<u64>,
    writer: WriteHandle,
    backoff: Backoff,
    /// Bytes of the current attempt.
    got: u64,
}

/// How reading a body ended, when not at its end.
enum Broken {
    Interrupted,
    WriterStopped,
    /// Receiving failed: worth another attempt.
    Network(String),
}

impl Stream<'_, '_> {
    /// Attempts until the whole file arrived; returns its length.
    async fn run(&mut self, mut first: Option<Response<Body>>) -> Result<u64, Error> {
        let source = &self.ctx.sources[0];
        loop {
            let generation = source.current().1;
            let response = match first.take() {
                Some(r) => r,
                None => match self.request().await {
                    Ok(r) => r,
                    Err(f) => {
                        again(source, &mut self.backoff, f, generation).await?;
                        continue;
                    }
                },
            };
            let failure = match self.receive(response).await {
                Ok(n) if self.length.is_none_or(|l| l == n) => return Ok(n),
                Ok(n) => format!(
                    "the body ended after {n} of {} bytes",
                    self.length.unwrap_or(0)
                ),
                Err(Broken::Interrupted) => return Err(Error::Interrupted),
                Err(Broken::WriterStopped) => {
                    return Err(Error::Storage(StorageError::io(
                        self.ctx.files.part_path(),
                        "write",
                        std::io::Error::other("the writer stopped"),
                    )));
                }
                Err(Broken::Network(e)) => e,
            };
            let f = Failure::retry(FailureKind::Network, failure);
            again(source, &mut self.backoff, f, generation).await?;
        }
    }

    /// Asks for the whole file again; an answer that cannot be written
    /// from offset 0 is a failure.
    async fn request(&mut self) -> Result<Response<Body>, Failure<Error>> {
        let source = &self.ctx.sources[0];
        let (url, _) = source.current();
        let mut conn = None;
        let req = source.request(&url, Some(ByteRange::from(0)), None);
        let f = self
            .backoff
            .attempt(fetch(self.ctx.net, req, &mut conn))
            .await
            .map_err(|_| Failure::Fatal(Error::Interrupted))?
            .map_err(|f| f.map_fatal(|e| Error::from_client(e, source.ident())))?;
        let status = f.response.status();
        if status != StatusCode::OK && status != StatusCode::PARTIAL_CONTENT {
            let redirected = f.url != source.original;
            return Err(
                status_failure(f.response, &f.url, redirected, source.named())
                    .await
                    .map_fatal(|e| Error::from_client(e, source.ident())),
            );
        }
        if self.etag.is_some() && strong_etag(f.response.headers()) != self.etag {
            return Err(Failure::Fatal(Error::RemoteChanged {
                url: source.ident(),
                detail: "its ETag changed between attempts".into(),
            }));
        }
        starts_the_file(&f.response, self.length)
            .map_err(|detail| Failure::retry(FailureKind::BadResponse, detail))?;
        Ok(f.response)
    }

    /// Writes `response`'s body from offset 0; returns the bytes written.
    async fn receive(&mut self, response: Response<Body>) -> Result<u64, Broken> {
        let progress = &self.ctx.progress;
        progress.discard(std::mem::take(&mut self.got));
        let idle = self.ctx.spec.timeout;
        let limits = &self.ctx.spec.limits;
        // Under a cap a frame's worth is booked before it is read.
        let piece = limit::piece(limits).unwrap_or(0);
        let mut body = response.into_body();
        loop {
            // A server that goes silent is a failure after --timeout; under
            // a bandwidth cap, reading waits for its turn first.
            let at = limit::book(limits, piece);
            let next = async {
                limit::until(at).await;
                tokio::time::timeout(idle, body.frame()).await
            };
            let frame = tokio::select! {
                f = next => f
                    .map_err(|_| Broken::Network(format!("no data for {} s", idle.as_secs())))?,
                _ = self.ctx.cancel.cancelled() => return Err(Broken::Interrupted),
            };
            let Some(frame) = frame else {
                return Ok(self.got);
            };
            let frame = frame.map_err(|e| Broken::Network(e.to_string()))?;
            let Ok(d) = frame.into_data() else {
                limit::settle(limits, piece, 0);
                continue;
            };
            limit::settle(limits, piece, d.len());
            let n = d.len() as u64;
            self.writer
                .write(self.got, vec![d])
                .await
                .map_err(|_| Broken::WriterStopped)?;
            self.got += n;
            progress.add_received(n);
        }
    }
}

/// Whether an answer to a request for the whole file can be written from
/// offset 0: a 200, or a 206 whose Content-Range starts at 0 (and states
/// the length seen before, when there was one).
fn starts_the_file(response: &Response<Body>, length: Option<u64>) -> Result<(), String> {
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return Ok(());
    }
    match content_range(response.headers()) {
        Some(ContentRange::Bytes {
            first: 0, total, ..
        }) if length.is_none() || total.is_none() || total == length => Ok(()),
        other => Err(format!(
            "asked for the whole file, got Content-Range {other:?}; nothing of it was written"
        )),
    }
}
