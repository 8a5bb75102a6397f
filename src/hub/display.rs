//! What hfd prints: hfd.sh's key phrases on stdout (scripts match them),
//! errors on stderr, and one aggregate progress line.
//!
//! On a terminal the progress line is redrawn in place, like hfd.sh's
//! `[ pct%] done/total files | bytes/total | speed | ETA mm:ss`; otherwise
//! the same line is printed now and then as plain text. Colours only on a
//! terminal and never with `NO_COLOR` set.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Progress;
use crate::ui;

/// A byte count as hfd.sh prints it: decimal units, two decimals, no space
/// (`512B`, `1.50MB`, `2.15GB`).
pub fn human(n: u64) -> String {
    // hfd.sh's spelling of the decimal sizes: no space before the unit.
    crate::size::DecimalBytes(n).to_string().replace(' ', "")
}

/// `file` or `files`, as hfd.sh words it.
pub fn files_noun(n: usize) -> &'static str {
    if n == 1 { "file" } else { "files" }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Plain => "",
            Style::Bold => "\x1b[1m",
            Style::Dim => "\x1b[2m",
            Style::Green => "\x1b[0;32m",
            Style::Red => "\x1b[0;31m",
            Style::Yellow => "\x1b[1;33m",
        }
    }
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Prints messages, coloured where that is allowed.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    color_out: bool,
    color_err: bool,
}

impl Printer {
    /// Colours on stdout/stderr only when each is a terminal and `NO_COLOR`
    /// is unset.
    pub fn from_env() -> Printer {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Printer {
            color_out: std::io::stdout().is_terminal() && !dumb && !no_color_env(),
            color_err: ui::use_color(),
        }
    }

    /// No colours at all.
    pub fn plain() -> Printer {
        Printer {
            color_out: false,
            color_err: false,
        }
    }

    fn paint(on: bool, style: Style, text: &str) -> String {
        if on && style != Style::Plain {
            format!("{}{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// A line on stdout.
    pub fn out(&self, style: Style, text: &str) {
        let line = Self::paint(self.color_out, style, text);
        ui::suspend(|| {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        });
    }

    /// `[Error] text` on stderr.
    pub fn error(&self, text: &str) {
        let line = Self::paint(self.color_err, Style::Red, &format!("[Error] {text}"));
        ui::suspend(|| crate::tell!("{line}"));
    }

    /// `[Warning] text` on stderr.
    pub fn warn(&self, text: &str) {
        let line = Self::paint(self.color_err, Style::Yellow, &format!("[Warning] {text}"));
        ui::suspend(|| crate::tell!("{line}"));
    }
}

/// The counters the progress line is drawn from.
#[derive(Clone)]
pub struct Counters {
    /// Bytes of the selected files (done + received), summed over files.
    pub bytes: Arc<Progress>,
    pub files_done: Arc<AtomicUsize>,
    pub files_total: usize,
    pub bytes_total: u64,
}

/// Rate over the last few seconds, from samples of the received count.
struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
    span: Duration,
}

impl RateWindow {
    fn new(span: Duration) -> RateWindow {
        RateWindow {
            samples: VecDeque::new(),
            span,
        }
    }

    fn add(&mut self, now: Instant, received: u64) -> f64 {
        self.samples.push_back((now, received));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > self.span)
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

/// `part` of `whole` in whole percent, 100 for an empty whole; no
/// overflow whatever sizes a server claims.
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

/// The live progress line; stops (and clears itself) on `finish`.
pub struct LiveLine {
    stop: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LiveLine {
    pub fn start(c: Counters, quiet: bool) -> LiveLine {
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = if quiet {
            None
        } else if ui::stderr_is_terminal() {
            Some(tokio::spawn(draw_bar(c, stop.clone())))
        } else {
            Some(tokio::spawn(draw_lines(c, stop.clone())))
        };
        LiveLine { stop, task }
    }

    pub async fn finish(mut self) {
        self.stop.notify_one();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn draw_bar(c: Counters, stop: Arc<tokio::sync::Notify>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
    ui::set_active_bar(Some(bar.clone()));
    let mut window = RateWindow::new(Duration::from_secs(5));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let rate = window.add(Instant::now(), c.bytes.received());
        bar.set_message(progress_line(&c, rate));
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => break,
        }
    }
    ui::set_active_bar(None);
    bar.finish_and_clear();
}

async fn draw_lines(c: Counters, stop: Arc<tokio::sync::Notify>) {
    let mut window = RateWindow::new(Duration::from_secs(10));
    let mut last_line = Instant::now();
    let mut last_tenth = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => break,
        }
        let rate = window.add(Instant::now(), c.bytes.received());
        let tenth = percent(c.bytes.done(), c.bytes_total) / 10;
        // A line per tenth, at most every 5 s, and one a minute regardless,
        // so logs show progress without drowning in it.
        let due = (tenth > last_tenth && last_line.elapsed() >= Duration::from_secs(5))
            || last_line.elapsed() >= Duration::from_secs(60);
        if due {
            last_tenth = tenth;
            last_line = Instant::now();
            crate::tell!("{}", progress_line(&c, rate));
        }
    }
}

/// `Listing files... N scanned`, on a terminal only.
pub fn listing_progress(scanned: usize) {
    if ui::stderr_is_terminal() {
        eprint!("\r\x1b[KListing files... {scanned} scanned");
        let _ = std::io::stderr().flush();
    }
}

/// Clears the listing line.
pub fn listing_done() {
    if ui::stderr_is_terminal() {
        eprint!("\r\x1b[K");
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_hfd_sh() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(1500), "1.50KB");
        assert_eq!(human(2_150_000_000), "2.15GB");
        assert_eq!(files_noun(1), "file");
        assert_eq!(files_noun(2), "files");
    }

    #[test]
    fn the_progress_line() {
        let p = Progress::new();
        p.add_existing(500_000);
        let c = Counters {
            bytes: p,
            files_done: Arc::new(AtomicUsize::new(3)),
            files_total: 10,
            bytes_total: 1_000_000,
        };
        assert_eq!(
            progress_line(&c, 100_000.0),
            "[ 50%]  3/10 files |  500.00KB/   1.00MB |  100.00KB/s | ETA 00:05"
        );
        assert!(progress_line(&c, 0.0).ends_with("ETA --:--"));
        let empty = Counters {
            bytes: Progress::new(),
            files_done: Arc::new(AtomicUsize::new(0)),
            files_total: 0,
            bytes_total: 0,
        };
        assert!(progress_line(&empty, 0.0).starts_with("[100%] 0/0 files"));
    }
}
