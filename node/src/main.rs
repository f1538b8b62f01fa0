//! `yui`: parses the command line, sets up logging, runs the command.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use yui_node::cli::{Cli, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    yui_node::peer::tls::install_crypto_provider();
    // The demo prints its own story; its logs would drown it. Automerge
    // opens an INFO span for every document it loads: formatting those was
    // 4 % of a node's CPU while it received a peer's records.
    let default = if matches!(cli.command, yui_node::cli::Command::Demo { .. }) {
        "warn"
    } else {
        "info,automerge=warn"
    };
    let filter = EnvFilter::try_from_env("YUI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Every event is escaped into one line (`logging`): values from
    // requests and peers must not start lines or reach a terminal as escape
    // sequences, so the formatter's own colours are off too.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        // A line that cannot be written is dropped by the writer; the
        // subscriber's own report of it would go to a failing stderr.
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Json => builder
            .json()
            .with_writer(yui_node::logging::Escaping::json())
            .init(),
        LogFormat::Text => builder
            .with_writer(yui_node::logging::Escaping::text())
            .init(),
    }
    // Automerge panics on some hostile input; the node contains those panics
    // (a copy is discarded), so log them as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic (contained if it came from peer input)");
    }));
    match yui_node::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, with each cause after a colon; `eprintln!` would
            // panic if stderr cannot be written.
            let _ = writeln!(std::io::stderr(), "yui: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
