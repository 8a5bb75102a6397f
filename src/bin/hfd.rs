//! `hfd REPO_ID`: a drop-in for hfd.sh that downloads in-process.

use std::process::ExitCode;

use clap::Parser;
use hfd::cli::hfd::Args;
use hfd::hub::display::Printer;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // hfd.sh exits 1 on usage errors; help and version are not errors.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    hfd::ui::init_logging(args.verbosity());
    let opts = match args.options(|k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(e) => {
            Printer::from_env().error(&e);
            return ExitCode::from(1);
        }
    };
    let net_opts = match args.net_options() {
        Ok(o) => o,
        Err(e) => {
            Printer::from_env().error(&e);
            return ExitCode::from(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
        )
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let status = runtime.block_on(async move {
        for note in &net_opts.proxy.notes {
            tracing::warn!("{note}");
        }
        if !net_opts.tls.check_certificate {
            tracing::warn!(
                "--check-certificate=false: TLS certificates are NOT checked; anyone on the path can read and change the download"
            );
        }
        let net = hfd::net::Net::new(net_opts);
        let cancel = CancellationToken::new();
        hfd::cli::cancel_on_signals(cancel.clone(), 130);
        hfd::hub::run(&opts, net, cancel).await
    });
    ExitCode::from(status.exit_code())
}
