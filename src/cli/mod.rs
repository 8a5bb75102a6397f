//! Command-line front ends: argument definitions and their translation into
//! engine specs. The binaries in `src/bin` only add the runtime, signals and
//! the terminal.

pub mod common;
pub mod generate;
pub mod hfd;
pub mod hfget;
pub mod input_file;
pub mod output_name;
pub mod serve;

use tokio_util::sync::CancellationToken;

/// What `--version` prints after the binary's name: the version and the
/// TLS stack (net::tls), the first thing asked about a network tool's
/// build. A test checks the rustls version against Cargo.lock.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (TLS: rustls 0.23 with ring; roots: bundled Mozilla set + system store)"
);

/// The binaries' runtime: a worker per core, at most 4 (the work is I/O;
/// more threads only contend for the same sockets and the writer).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
        )
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Cancels `token` on the first Ctrl-C or SIGTERM (so the download saves its
/// progress and stops); a second one exits at once with `second_exit` —
/// nothing is lost by that either, since the control file never claims bytes
/// that were not written.
pub fn cancel_on_signals(token: CancellationToken, second_exit: i32) {
    on_signals(
        token,
        Some("\nStopping and saving progress... (press Ctrl-C again to quit at once)"),
        second_exit,
    );
}

/// Cancels `token` on the first Ctrl-C or SIGTERM, after printing `first`
/// if given; a second one exits at once with `second_exit`. Must be called
/// within the runtime. Both signals are taken over before it returns: one
/// that arrives before the watching task first runs is not left to the
/// default action, which would end the process with nothing saved.
pub fn on_signals(token: CancellationToken, first: Option<&'static str>, second_exit: i32) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::spawn(async move {
        for round in 0..2 {
            tokio::select! {
                _ = next(&mut int) => {}
                _ = next(&mut term) => {}
            }
            if round == 0 {
                if let Some(msg) = first {
                    crate::tell!("{msg}");
                }
                token.cancel();
            } else {
                std::process::exit(second_exit);
            }
        }
    });
}

/// The next delivery of `s`; never, when it could not be registered.
async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
