//! `hfd REPO_ID`: a drop-in for hfd.sh that downloads in-process; with
//! `--bench`, a measurement of the Hub endpoints instead; `hfd serve`: a
//! cache folder served to other machines with the Hub's API.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use hfd::cli::hfd::{Args, Command};
use hfd::cli::serve::ServeArgs;
use hfd::ui::{Presenter, Term};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    if std::env::args_os().len() <= 1 {
        // hfd.sh prints its whole usage when run bare; so do we, as -h does.
        eprintln!("{}", hfd::cli::hfd::usage());
        return ExitCode::from(1);
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // hfd.sh exits 1 on usage errors; help and version are not errors.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match &args.command {
        Some(Command::Serve(s)) => return serve(s),
        Some(Command::Generate(what)) => {
            return match hfd::cli::generate::print(what, Args::command()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    hfd::tell!("hfd: error: cannot write to stdout: {e}");
                    ExitCode::from(1)
                }
            };
        }
        None => {}
    }
    let term = Term::detect();
    hfd::ui::init_logging(args.verbosity(), term);
    let ui = Arc::new(Presenter::new(term, args.verbosity()));
    let opts = match args.options(|k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(e) => {
            ui.error(&e);
            return ExitCode::from(1);
        }
    };
    let net_opts = match args.net_options() {
        Ok(o) => o,
        Err(e) => {
            ui.error(&e);
            return ExitCode::from(1);
        }
    };
    net_opts.announce();
    if args.common.bench.on {
        return bench(&args, opts, net_opts, ui);
    }
    let status = hfd::cli::runtime().block_on(async move {
        let net = hfd::net::Net::new(net_opts);
        let cancel = CancellationToken::new();
        hfd::cli::cancel_on_signals(cancel.clone(), 130);
        hfd::hub::run(&opts, net, cancel, ui).await
    });
    ExitCode::from(status.exit_code())
}

/// `hfd --bench`: measures the endpoints and prints the table; writes nothing.
fn bench(
    args: &Args,
    opts: hfd::hub::Options,
    net_opts: hfd::net::NetOptions,
    ui: Arc<Presenter>,
) -> ExitCode {
    let (endpoints, bench) = match (
        args.bench_endpoints(|k| std::env::var(k).ok()),
        args.bench_options(),
    ) {
        (Ok(e), Ok(b)) => (e, b),
        (Err(e), _) | (_, Err(e)) => {
            ui.error(&e);
            return ExitCode::from(1);
        }
    };
    let announce = !args.common.bench.json && !args.common.quiet;
    // No signal handler: nothing is written, so Ctrl-C may end it at once.
    hfd::cli::runtime().block_on(async move {
        let net = hfd::net::Net::new(net_opts);
        if announce {
            ui.note(&format!(
                "Measuring {} endpoint{} on {} ({} s with 1 connection, then {} s with {}) ...",
                endpoints.len(),
                if endpoints.len() == 1 { "" } else { "s" },
                opts.repo,
                bench.seconds,
                bench.seconds,
                bench.connections
            ));
        }
        let report = match hfd::hub::bench::bench(&opts, &endpoints, &bench, &net, announce).await {
            Ok(r) => r,
            Err(e) => {
                ui.error(&e);
                return ExitCode::from(1);
            }
        };
        hfd::mirrors::print(&report, bench.connections, args.common.bench.json);
        // Success while one endpoint works: the others are in the table.
        ExitCode::from(if report.fastest.is_some() { 0 } else { 1 })
    })
}

/// `hfd serve`: binds, prints the URL, serves until Ctrl-C or SIGTERM.
fn serve(args: &ServeArgs) -> ExitCode {
    let term = Term::detect();
    hfd::ui::init_logging(args.verbosity(), term);
    let ui = Presenter::new(term, args.verbosity());
    let opts = match args.options(|k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(e) => {
            ui.error(&e.to_string());
            return ExitCode::from(1);
        }
    };
    hfd::cli::runtime().block_on(async move {
        let server = match hfd::serve::Server::bind(opts.clone()).await {
            Ok(s) => s,
            Err(e) => {
                ui.error(&e.to_string());
                return ExitCode::from(1);
            }
        };
        // Signals are ours before the address is out: a client may stop us
        // as soon as it has it.
        let stop = CancellationToken::new();
        hfd::cli::serve::stop_on_signals(stop.clone(), args.quiet);
        hfd::say!(
            "Serving {} on http://{}",
            opts.cache_dir.display(),
            server.local_addr()
        );
        match &opts.upstream {
            Some(u) => hfd::say!(
                "Fetching what the cache lacks from {} (--offline: the cache alone)",
                u.endpoint.as_str()
            ),
            None => hfd::say!("Offline: serving what the cache holds, nothing else"),
        }
        match server.run(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                ui.error(&e.to_string());
                ExitCode::from(1)
            }
        }
    })
}
