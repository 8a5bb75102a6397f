//! A live view of progress: redrawn in place on a terminal, a plain line now
//! and then otherwise (a line per tenth, at most every 5 s, and one a minute
//! regardless, so logs show progress without drowning in it).
//!
//! The engine only bumps atomic counters; the view samples them. Once
//! [`Live::stop`] returns, nothing of the view is printed any more, so the
//! verdict that follows is the last line.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio::sync::Notify;

use super::term::Term;
use super::{human, set_active_bar};
use crate::engine::Progress;
use crate::hub::events::Counters;
use crate::size::{Bytes, Rate, format_duration};

/// Rate over the last few seconds, from samples of the received count.
#[derive(Default)]
pub struct RateWindow {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl RateWindow {
    fn add(&mut self, now: Instant, received: u64, span: Duration) -> f64 {
        self.samples.push_back((now, received));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > span)
        {
            self.samples.pop_front();
        }
        let (t0, b0) = self.samples.front().copied().unwrap_or((now, received));
        let dt = now.duration_since(t0).as_secs_f64();
        if dt < 0.2 {
            0.0
        } else {
            received.saturating_sub(b0) as f64 / dt
        }
    }
}

/// What is shown.
pub enum Meter {
    /// One file (hfget): a bar with bytes, rate, ETA and connections.
    File {
        label: String,
        progress: Arc<Progress>,
    },
    /// A repo (hfd): hfd.sh's `[ pct%] done/total files | bytes | rate | ETA`.
    Repo {
        counters: Counters,
        window: RateWindow,
    },
}

impl Meter {
    pub fn repo(counters: Counters) -> Meter {
        Meter::Repo {
            counters,
            window: RateWindow::default(),
        }
    }
}

/// A running view; see the module documentation.
pub struct Live {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Shared {
    stopped: AtomicBool,
    wake: Notify,
    /// Held while the view prints, so a stop never interleaves with it.
    printing: Mutex<Option<ProgressBar>>,
}

impl Live {
    /// Starts showing `meter`; shows nothing when `quiet`.
    pub fn start(meter: Meter, term: Term, quiet: bool) -> Live {
        let shared = Arc::new(Shared {
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
            printing: Mutex::new(None),
        });
        let task = (!quiet).then(|| {
            let s = shared.clone();
            if term.live {
                tokio::spawn(draw_bar(meter, s))
            } else {
                tokio::spawn(draw_lines(meter, s))
            }
        });
        Live { shared, task }
    }

    /// Stops the view and clears its line; nothing of it prints afterwards.
    pub fn stop(&self) {
        let mut bar = self
            .shared
            .printing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.shared.stopped.store(true, Relaxed);
        self.shared.wake.notify_one();
        if let Some(b) = bar.take() {
            set_active_bar(None);
            b.finish_and_clear();
        }
    }

    /// [`Live::stop`], then waits for the view's task.
    pub async fn finish(mut self) {
        self.stop();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits `every`, or less when stopped; false once stopped.
async fn tick(shared: &Shared, every: &mut tokio::time::Interval) -> bool {
    tokio::select! {
        _ = every.tick() => {}
        _ = shared.wake.notified() => {}
    }
    !shared.stopped.load(Relaxed)
}

async fn draw_bar(mut meter: Meter, shared: Arc<Shared>) {
    let hz = if matches!(meter, Meter::File { .. }) {
        10
    } else {
        4
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(hz));
    {
        let mut slot = shared.printing.lock().unwrap_or_else(|e| e.into_inner());
        if shared.stopped.load(Relaxed) {
            return;
        }
        meter.init_bar(&bar);
        set_active_bar(Some(bar.clone()));
        *slot = Some(bar.clone());
    }
    let mut every = tokio::time::interval(Duration::from_millis(if hz == 10 { 100 } else { 500 }));
    loop {
        {
            let _held = shared.printing.lock().unwrap_or_else(|e| e.into_inner());
            if shared.stopped.load(Relaxed) {
                return;
            }
            meter.update_bar(&bar);
        }
        if !tick(&shared, &mut every).await {
            return;
        }
    }
}

async fn draw_lines(mut meter: Meter, shared: Arc<Shared>) {
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut last_tenth = 0u64;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    while tick(&shared, &mut every).await {
        let (tenth, line) = meter.line(started);
        let due = (tenth > last_tenth && last_line.elapsed() >= Duration::from_secs(5))
            || last_line.elapsed() >= Duration::from_secs(60);
        if !due {
            continue;
        }
        last_tenth = tenth;
        last_line = Instant::now();
        let _held = shared.printing.lock().unwrap_or_else(|e| e.into_inner());
        if shared.stopped.load(Relaxed) {
            return;
        }
        crate::tell!("{line}");
    }
}

impl Meter {
    fn init_bar(&mut self, bar: &ProgressBar) {
        match self {
            Meter::File { label, .. } => bar.set_prefix(label.clone()),
            Meter::Repo { .. } => {
                bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"))
            }
        }
    }

    fn update_bar(&mut self, bar: &ProgressBar) {
        match self {
            Meter::File { progress, .. } => {
                match progress.total() {
                    Some(t) if bar.length() != Some(t) => {
                        bar.set_length(t);
                        bar.set_style(file_style());
                    }
                    None if bar.length().is_none() => bar.set_style(spinner_style()),
                    _ => {}
                }
                bar.set_position(progress.done());
                bar.set_message(progress.connections().to_string());
            }
            Meter::Repo { counters, window } => {
                let rate = window.add(
                    Instant::now(),
                    counters.bytes.received(),
                    Duration::from_secs(5),
                );
                bar.set_message(progress_line(counters, rate));
            }
        }
    }

    /// The plain line now, and which tenth of the whole is done.
    fn line(&mut self, started: Instant) -> (u64, String) {
        match self {
            Meter::File { label, progress } => file_line(label, progress, started),
            Meter::Repo {
                counters: c,
                window,
            } => {
                let rate = window.add(Instant::now(), c.bytes.received(), Duration::from_secs(10));
                let tenth = percent(c.bytes.done(), c.bytes_total) / 10;
                (tenth, progress_line(c, rate))
            }
        }
    }
}

fn file_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta_precise} CN:{msg}",
    )
    .expect("valid template")
    .with_key("eta_precise", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{}", format_duration(s.eta()));
    })
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {bytes} {binary_bytes_per_sec} CN:{msg}")
        .expect("valid template")
}

/// hfget's plain line: `NAME:  42% 1.2 GiB/3.0 GiB 12.0 MiB/s ETA 2m30s CN:16`,
/// the rate averaged since the start.
fn file_line(label: &str, progress: &Progress, started: Instant) -> (u64, String) {
    let done = progress.done();
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    let rate = progress.received() as f64 / elapsed;
    let (tenth, pct) = match progress.total() {
        Some(t) if t > 0 => (done * 10 / t, format!("{:>3}%", done * 100 / t)),
        _ => (0, "   ?".to_string()),
    };
    let total = progress
        .total()
        .map(|t| format!("/{}", Bytes(t)))
        .unwrap_or_default();
    let eta = match progress.total() {
        Some(t) if rate > 0.0 => format!(
            " ETA {}",
            format_duration(Duration::from_secs_f64(
                t.saturating_sub(done) as f64 / rate
            ))
        ),
        _ => String::new(),
    };
    let line = format!(
        "{label}: {pct} {}{total} {}{eta} CN:{}",
        Bytes(done),
        Rate(rate),
        progress.connections()
    );
    (tenth, line)
}

/// `part` of `whole` in whole percent, 100 for an empty whole; no overflow
/// whatever sizes a server claims.
fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 100;
    }
    (u128::from(part.min(whole)) * 100 / u128::from(whole)) as u64
}

/// hfd.sh's line: `[ 42%] 3/10 files | 1.23GB/4.56GB | 12.30MB/s | ETA 01:23`.
pub fn progress_line(c: &Counters, rate: f64) -> String {
    let done = c.bytes.done().min(c.bytes_total);
    let pct = percent(done, c.bytes_total);
    let files = c.files_done.load(Relaxed).min(c.files_total);
    let width = c.files_total.to_string().len();
    let eta = if rate >= 1.0 && c.bytes_total > done {
        let secs = ((c.bytes_total - done) as f64 / rate) as u64;
        if secs < 360_000 {
            format!("{:02}:{:02}", secs / 60, secs % 60)
        } else {
            "--:--".to_string()
        }
    } else {
        "--:--".to_string()
    };
    format!(
        "[{pct:>3}%] {files:>width$}/{} files | {:>9}/{:>9} | {:>9}/s | ETA {eta}",
        c.files_total,
        human(done),
        human(c.bytes_total),
        human(rate as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line() {
        let mut c = Counters::new(10, 1_000_000);
        c.bytes.add_existing(500_000);
        c.files_done.store(3, Relaxed);
        assert_eq!(
            progress_line(&c, 100_000.0),
            "[ 50%]  3/10 files |  500.00KB/   1.00MB |  100.00KB/s | ETA 00:05"
        );
        assert!(progress_line(&c, 0.0).ends_with("ETA --:--"));
        c = Counters::new(0, 0);
        assert!(progress_line(&c, 0.0).starts_with("[100%] 0/0 files"));
    }
}
