//! `hfget URL`: the engine on the command line, with aria2c's options.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode as ProcessExit;

use clap::{CommandFactory, Parser};
use hfd::cli::hfget::Args;
use hfd::cli::input_file::Entries;
use hfd::engine::{self, DownloadSpec, Outcome, Progress};
use hfd::exit::ExitCode;
use hfd::net::Net;
use hfd::size::{Bytes, Rate, format_duration};
use hfd::ui::{self, Presenter, Term, Verbosity};
use tokio_util::sync::CancellationToken;

fn main() -> ProcessExit {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::BadOption
            } else {
                ExitCode::Ok
            };
            let _ = e.print();
            return code.into();
        }
    };
    if let Some(what) = &args.generate {
        return match hfd::cli::generate::print(what, Args::command()) {
            Ok(()) => ExitCode::Ok.into(),
            Err(e) => fail(ExitCode::Unknown, &format!("cannot write to stdout: {e}")).into(),
        };
    }
    ui::init_logging(args.verbosity(), Term::detect());
    let runtime = hfd::cli::runtime();
    runtime.block_on(run(args)).into()
}

async fn run(args: Args) -> ExitCode {
    let net_opts = match args.net_options() {
        Ok(o) => o,
        Err(e) => return fail(ExitCode::BadOption, &e),
    };
    net_opts.announce();
    let net = Net::new(net_opts);
    let cancel = CancellationToken::new();
    hfd::cli::cancel_on_signals(cancel.clone(), ExitCode::Interrupted.code() as i32);
    let v = args.verbosity();
    // One cap for everything this run downloads, if asked for.
    let overall = args.common.limit.overall();

    if args.common.bench.on {
        return bench(&net, &args).await;
    }
    let Some(input) = &args.input_file else {
        let spec = match args.spec() {
            Ok(mut s) => {
                s.limits.extend(overall);
                s
            }
            Err(e) => return fail(ExitCode::BadOption, &e),
        };
        return one(net, spec, v, cancel).await;
    };
    let reader = match File::open(input) {
        Ok(f) => BufReader::new(f),
        Err(e) => {
            return fail(
                ExitCode::BadOption,
                &format!("cannot open {}: {e}", input.display()),
            );
        }
    };
    // Entries are read as they are needed and run -j at a time.
    let mut running = tokio::task::JoinSet::new();
    let mut last_error = ExitCode::Ok;
    let mut entries = Entries::new(reader);
    loop {
        while running.len() < args.jobs as usize && !cancel.is_cancelled() {
            match entries.next() {
                None => break,
                Some(Err(e)) => {
                    last_error = fail(ExitCode::BadOption, &e);
                    continue;
                }
                Some(Ok(entry)) => match args.spec_for(&entry) {
                    Ok(mut spec) => {
                        spec.limits.extend(overall.clone());
                        running.spawn(one(net.clone(), spec, v, cancel.clone()));
                    }
                    Err(e) => last_error = fail(ExitCode::BadOption, &e),
                },
            }
        }
        match running.join_next().await {
            None => break,
            Some(Ok(ExitCode::Ok)) => {}
            Some(Ok(code)) => last_error = code,
            Some(Err(_)) => last_error = ExitCode::Unknown,
        }
    }
    last_error
}

/// `--bench`: measure every URL, print a table (or JSON); succeed when at
/// least one source works.
async fn bench(net: &Net, args: &Args) -> ExitCode {
    let opts = match args.bench_options() {
        Ok(o) => o,
        Err(e) => return fail(ExitCode::BadOption, &e),
    };
    let mut sources = Vec::new();
    for u in &args.urls {
        match hfd::cli::hfget::parse_url(u) {
            Ok(url) => sources.push((hfd::mirrors::label(&url), url)),
            Err(e) => return fail(ExitCode::BadOption, &e),
        }
    }
    if sources.is_empty() {
        return fail(ExitCode::BadOption, "--bench needs at least one URL");
    }
    if !args.common.bench.json && !args.common.quiet {
        hfd::tell!(
            "Measuring {} source{} ({} s with 1 connection, then {} s with {}) ...",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" },
            opts.seconds,
            opts.seconds,
            opts.connections
        );
    }
    let report = hfd::mirrors::measure(net, &sources, &opts).await;
    hfd::mirrors::print(&report, opts.connections, args.common.bench.json);
    if report.fastest.is_some() {
        ExitCode::Ok
    } else {
        ExitCode::NetworkGaveUp
    }
}

async fn one(net: Net, spec: DownloadSpec, v: Verbosity, cancel: CancellationToken) -> ExitCode {
    let label = spec
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let progress = Progress::new();
    let ui = Presenter::new(Term::detect(), v);
    let live = ui.show_file(label, progress.clone());
    let result = engine::download(&net, &spec, progress.clone(), cancel).await;
    live.finish().await;
    match result {
        Ok(o) => {
            if v != Verbosity::Quiet {
                hfd::say!("{}", summary(&o));
            }
            ExitCode::Ok
        }
        Err(e) => fail(e.exit_code(), &e.to_string()),
    }
}

fn summary(o: &Outcome) -> String {
    let name = o.path.display();
    if o.already_complete {
        return format!("{name}: already complete ({})", Bytes(o.total.unwrap_or(0)));
    }
    let secs = o.elapsed.as_secs_f64().max(1e-6);
    let mut s = format!(
        "{name}: {} in {} ({} average, {} connection{})",
        Bytes(o.total.unwrap_or(o.received)),
        format_duration(o.elapsed),
        Rate(o.received as f64 / secs),
        o.connections,
        if o.connections == 1 { "" } else { "s" }
    );
    if o.resumed > 0 {
        s.push_str(&format!("; resumed after {}", Bytes(o.resumed)));
    }
    if o.source_bytes.len() > 1 {
        let parts: Vec<String> = o
            .source_bytes
            .iter()
            .map(|b| Bytes(*b).to_string())
            .collect();
        s.push_str(&format!("; per source: {}", parts.join(" / ")));
    }
    s
}

fn fail(code: ExitCode, msg: &str) -> ExitCode {
    hfd::tell!("hfget: error: {msg}");
    code
}
