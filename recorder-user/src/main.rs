use std::io::IsTerminal as _;

use clap::Parser as _;
use syscribe::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("SYSCRIBE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.global.log_format {
        LogFormat::Text => builder.compact().without_time().with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
    std::process::exit(cli.run());
}
