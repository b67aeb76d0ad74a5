use std::io::IsTerminal as _;

use clap::Parser as _;
use syscribe::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// stderr for logs: a log line that cannot be written (stderr closed, a full pipe's reader
/// gone) is lost, and the process goes on — a daemon must not die of its own logging.
struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() {
    let cli = Cli::parse();
    // kube's client logs every request that got no answer at ERROR (its tower trace layer):
    // an API server restarting made dozens of lines. syscribe says what failed itself (each
    // watch once a minute, each operation with its context) and counts every failed request
    // on /metrics (`syscribe_api_errors_total`); SYSCRIBE_LOG brings them back.
    let filter = EnvFilter::try_from_env("SYSCRIBE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube_client::client::builder=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogSink)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.global.log_format {
        LogFormat::Text => builder.compact().without_time().with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
    std::process::exit(cli.run());
}
