//! [E] The `sparrow` binary. Exit codes: 0 success, 1 runtime failure, 2 config or command line
//! refused.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use sparrow_node::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        // hickory-server logs every query at info: a query log is for -v, not the default.
        (false, 0) => "info,hickory_server=warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        // Colour only on a terminal: journald and log files get plain text.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    cli::main(cli)
}
