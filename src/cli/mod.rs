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
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for round in 0..2 {
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_fut => {}
            }
            if round == 0 {
                crate::tell!(
                    "\nStopping and saving progress... (press Ctrl-C again to quit at once)"
                );
                token.cancel();
            } else {
                std::process::exit(second_exit);
            }
        }
    });
}
