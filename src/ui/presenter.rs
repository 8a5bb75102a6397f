//! Messages in each binary's words, and hfd's run drawn from its events.
//!
//! hfd keeps hfd.sh's key phrases on stdout (scripts match them: `Up to
//! date.`, `Done.`, `Download incomplete.`) and `[Error]`/`[Warning]` lines
//! on stderr; hfget speaks aria2c's way, `hfget: error: ...`. Either way the
//! [`Term`] decides colour and whether a progress line is redrawn, and
//! `--quiet` leaves only errors and the verdict.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::live::{Live, Meter};
use super::term::{Style, Term};
use super::{Verbosity, files_noun, human, suspend};
use crate::engine::Progress;
use crate::hub::events::{Event, Events, Planned, Verdict};

/// Draws what happens; one per process.
pub struct Presenter {
    term: Term,
    quiet: bool,
    /// The progress view of the run under way.
    live: Mutex<Option<Live>>,
}

impl Presenter {
    pub fn new(term: Term, verbosity: Verbosity) -> Presenter {
        Presenter {
            term,
            quiet: verbosity == Verbosity::Quiet,
            live: Mutex::new(None),
        }
    }

    pub fn term(&self) -> Term {
        self.term
    }

    /// A line on stdout.
    pub fn out(&self, style: Style, text: &str) {
        let line = style.paint(self.term.color_out, text);
        suspend(|| {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        });
    }

    /// `[Error] text` on stderr (hfd).
    pub fn error(&self, text: &str) {
        let line = Style::Red.paint(self.term.color_err, &format!("[Error] {text}"));
        suspend(|| crate::tell!("{line}"));
    }

    /// `[Warning] text` on stderr (hfd).
    pub fn warn(&self, text: &str) {
        let line = Style::Yellow.paint(self.term.color_err, &format!("[Warning] {text}"));
        suspend(|| crate::tell!("{line}"));
    }

    /// `PROGRAM: error: text` on stderr (hfget, and hfd's bench).
    pub fn fatal(&self, program: &str, text: &str) {
        suspend(|| crate::tell!("{program}: error: {text}"));
    }

    /// A note on stderr that `--quiet` silences (what is being measured).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            suspend(|| crate::tell!("{text}"));
        }
    }

    /// Shows the progress of one file (hfget) until [`Presenter::stop`].
    pub fn show_file(&self, label: String, progress: Arc<Progress>) -> Live {
        Live::start(Meter::File { label, progress }, self.term, self.quiet)
    }

    fn stop_live(&self) {
        if let Some(live) = self.live.lock().unwrap_or_else(|e| e.into_inner()).take() {
            live.stop();
        }
    }

    /// The listing line, on a terminal only.
    fn listing(&self, scanned: Option<usize>) {
        if !self.term.live || self.quiet {
            return;
        }
        match scanned {
            Some(n) => eprint!("\r\x1b[KListing files... {n} scanned"),
            None => eprint!("\r\x1b[K"),
        }
        let _ = std::io::stderr().flush();
    }

    /// `--dry-run`'s table: size, state, path; one file a line (shown
    /// even with `--quiet`: it is what was asked for).
    fn plan(&self, files: &[Planned<'_>], dir: &std::path::Path) {
        self.out(
            Style::Plain,
            &format!("Dry run: what a run would do in {}", dir.display()),
        );
        for f in files {
            let (style, state) = if f.current {
                (Style::Dim, "up to date")
            } else {
                (Style::Plain, "download")
            };
            self.out(
                style,
                &format!("{:>10}  {state:<10}  {}", human(f.size), f.path),
            );
        }
    }

    fn verdict(&self, v: &Verdict) {
        self.stop_live();
        match v {
            Verdict::UpToDate { files, dir } => self.out(
                Style::Green,
                &format!(
                    "Up to date. {files} {} in {}",
                    files_noun(*files),
                    dir.display()
                ),
            ),
            Verdict::Done { files, bytes, dir } => self.out(
                Style::Green,
                &format!(
                    "Done. {files} {}, {} in {}",
                    files_noun(*files),
                    human(*bytes),
                    dir.display()
                ),
            ),
            Verdict::Incomplete { failed, files } => {
                self.out(
                    Style::Red,
                    &format!(
                        "{failed} of {files} {} could not be downloaded.",
                        files_noun(*files)
                    ),
                );
                self.out(Style::Red, "Download incomplete. Re-run to resume.");
            }
            Verdict::DryRun { files, need, bytes } => self.out(
                Style::Bold,
                &format!(
                    "Dry run: {need} of {files} {} to download, {} in total. Nothing was downloaded or written.",
                    files_noun(*files),
                    human(*bytes)
                ),
            ),
            Verdict::Interrupted => self.out(Style::Yellow, "Interrupted. Re-run to resume."),
            Verdict::Failed => {}
        }
    }
}

impl Events for Presenter {
    fn event(&self, e: Event<'_>) {
        // --quiet: only errors and the verdict.
        let chatter = matches!(
            e,
            Event::Started { .. } | Event::Listed { .. } | Event::Verifying { .. }
        );
        if self.quiet && chatter {
            return;
        }
        match e {
            Event::Started { repo, revision } => {
                self.out(Style::Bold, &format!("{repo} ({revision})"))
            }
            Event::Listing { scanned } => self.listing(Some(scanned)),
            Event::ListingEnded => self.listing(None),
            Event::Listed { files, bytes } => self.out(
                Style::Dim,
                &format!("Listed {files} {} ({})", files_noun(files), human(bytes)),
            ),
            Event::Verifying { files } => self.out(
                Style::Dim,
                &format!("Verifying {files} local {}...", files_noun(files)),
            ),
            Event::Downloading {
                files,
                dir,
                resuming,
                endpoints,
                verify_origin,
                counters,
            } => {
                if self.quiet {
                    return;
                }
                self.out(
                    Style::Plain,
                    &format!(
                        "{} {files} {} to {}  ·  Ctrl+C to stop, re-run to resume",
                        if resuming { "Resuming" } else { "Downloading" },
                        files_noun(files),
                        dir.display()
                    ),
                );
                if endpoints.len() > 1 {
                    let all: Vec<&str> = endpoints.iter().map(|e| e.as_str()).collect();
                    self.out(
                        Style::Dim,
                        &format!("From {} endpoints at once: {}", all.len(), all.join(", ")),
                    );
                }
                if let Some(origin) = verify_origin {
                    self.out(
                        Style::Dim,
                        &format!(
                            "Commit and hashes from {}; bytes from the endpoint{}",
                            origin.as_str(),
                            if endpoints.len() > 1 { "s" } else { "" }
                        ),
                    );
                }
                let live = Live::start(Meter::repo(counters.clone()), self.term, self.quiet);
                *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
            }
            Event::Plan { files, dir } => self.plan(files, dir),
            Event::FileFailed { path, error } => self.error(&format!("{path}: {error}")),
            Event::Warning(w) => self.warn(w),
            Event::Error(e) => self.error(e),
            Event::Finished(v) => self.verdict(v),
        }
    }
}
