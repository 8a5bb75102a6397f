//! The downloads: `-j` files at a time, largest first, each holding a turn
//! only while it transfers; without `-j`, more files at once while the
//! total rate grows (see [`crate::engine::adaptive`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::events::{Counters, Event, FileError};
use super::file::{Dest, FileCtx, FileResult, download_file};
use super::place::Place;
use super::run::Selection;
use super::state::Verified;
use crate::engine::adaptive::{Adaptive, Growth};

/// How the queue ended.
pub struct QueueEnd {
    pub failed: usize,
    /// Files never started (a stop came first).
    pub left: usize,
}

/// Everything the queue works on.
pub struct Queue<'a> {
    pub ctx: Arc<FileCtx>,
    pub place: &'a Place,
    pub sel: &'a Selection<'a>,
    pub verified: &'a mut Verified,
    pub counters: &'a Counters,
    /// `-j` at the start, and the most files at once.
    pub jobs: usize,
    pub max_jobs: usize,
}

impl Queue<'_> {
    /// Downloads the files `need` (indices into the selection), saving the
    /// record of verified files every two seconds and at the end.
    pub async fn run(mut self, mut need: Vec<usize>) -> QueueEnd {
        let ctx = self.ctx.clone();
        // Largest first: the long transfers start at once, and the small ones
        // fill the gaps at the end instead of one big file running alone.
        need.sort_by_key(|&i| std::cmp::Reverse(self.sel.files[i].size));
        let mut queue = need.into_iter().peekable();
        let mut running = JoinSet::new();
        let mut failed = 0usize;
        let mut last_save = Instant::now();
        let mut jobs_now = self.jobs.max(1);
        let mut growth = (self.max_jobs > jobs_now).then(|| {
            let a = Adaptive {
                start: jobs_now,
                ..Adaptive::default()
            };
            Growth::new(&a, jobs_now, self.max_jobs)
        });
        let mut grow_tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            // A file holds one of the -j permits while it transfers; the next
            // file may start while the last one is being verified and synced.
            let want_more = queue.peek().is_some() && !ctx.cancel.is_cancelled();
            let joined = tokio::select! {
                permit = ctx.permits.clone().acquire_owned(), if want_more => {
                    let (Ok(permit), Some(i)) = (permit, queue.next()) else { continue };
                    let (f, rel) = (self.sel.files[i].clone(), &self.sel.rels[i]);
                    match (self.place.output(&f, rel), self.place.partial(&f, rel)) {
                        (Some(out), Some(part)) => {
                            let previous = self.place.previous_xet(&f, rel);
                            let dest = Dest { out, part, previous };
                            running.spawn(download_file(ctx.clone(), f, dest, permit));
                        }
                        // Refused before the queue (`Place::refusal`); never here.
                        _ => failed += 1,
                    }
                    continue;
                }
                _ = grow_tick.tick(), if want_more && growth.as_ref().is_some_and(|g| !g.stopped()) => {
                    let g = growth.as_mut().expect("checked");
                    jobs_now = self.grow(g, jobs_now);
                    continue;
                }
                j = running.join_next(), if !running.is_empty() => j,
                _ = ctx.cancel.cancelled(), if running.is_empty() && want_more => break,
                else => break,
            };
            let Some(joined) = joined else { continue };
            if !self.record(joined) {
                failed += 1;
            }
            if last_save.elapsed() >= Duration::from_secs(2) {
                self.save();
                last_save = Instant::now();
            }
        }
        self.save();
        QueueEnd {
            failed,
            left: queue.count(),
        }
    }

    /// One growth tick; returns the files allowed at once now.
    fn grow(&self, g: &mut Growth, jobs_now: usize) -> usize {
        let received = self.counters.bytes.received();
        // Under a cap for the whole run, more files at once cannot help.
        if let Some(cap) = &self.ctx.opts.overall_limit
            && g.window_rate(Instant::now(), received)
                .is_some_and(|r| r >= cap.rate() * 0.75)
        {
            g.stop();
            return jobs_now;
        }
        match g.tick(Instant::now(), received, jobs_now, self.max_jobs) {
            Some(n) if n > jobs_now => {
                tracing::info!("adaptive: {jobs_now} -> {n} files at once");
                self.ctx.permits.add_permits(n - jobs_now);
                n
            }
            Some(n) => {
                tracing::info!("adaptive: back to {n} files at once");
                // Running files keep their turns; the extra ones are taken
                // out of play as they come back.
                let extra = (jobs_now - n) as u32;
                let permits = self.ctx.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(extra).await {
                        p.forget();
                    }
                });
                n
            }
            None => jobs_now,
        }
    }

    /// Takes in a file's result; false when it failed.
    fn record(&mut self, joined: Result<FileResult, tokio::task::JoinError>) -> bool {
        let events = &self.ctx.events;
        match joined {
            Ok(FileResult::Done(path, record, xet)) => {
                self.verified.files.insert(path, record);
                if let Some(x) = xet
                    && let Err(e) = self.place.state.save_xet(&x)
                {
                    events.event(Event::Warning(&e));
                }
                self.counters.files_done.fetch_add(1, Relaxed);
                true
            }
            Ok(FileResult::Failed(path, error)) => {
                events.event(Event::FileFailed {
                    path: &path,
                    error: &error,
                });
                false
            }
            Ok(FileResult::Interrupted) => true,
            Err(e) => {
                let error =
                    FileError::Other(format!("internal error: a download task failed: {e}"));
                events.event(Event::Error(&error.to_string()));
                false
            }
        }
    }

    fn save(&self) {
        if let Err(e) = self.place.state.save_verified(self.verified) {
            self.ctx.events.event(Event::Warning(&e));
        }
    }
}
