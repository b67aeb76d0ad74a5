//! `syscribe enrich`.

use std::{
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
};

use clap::ValueEnum;

use super::CliError;
use crate::{
    audit::{
        enrich::{Enriched, SyscallNames, enrich},
        follow::Follower,
        parse::{Parsed, parse_line},
        source::Kmsg,
    },
    resolve::process::ProcResolver,
};

#[derive(Debug, clap::Args)]
pub struct EnrichArgs {
    /// Where the audit records come from: `kmsg` (the kernel log, without auditd),
    /// `file=PATH` (e.g. auditd's audit.log; with --follow, across its rotations), or `-`
    /// (stdin).
    #[arg(long, default_value = "kmsg", value_parser = parse_source)]
    pub source: Source,
    /// Keep reading new records instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// Output: one JSON object per line, or `key=value` text.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
    /// The node name to put on each line.
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// The proc filesystem processes are resolved in.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc: PathBuf,
    /// The kernel log device.
    #[arg(long, default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Kmsg,
    File(PathBuf),
    Stdin,
}

fn parse_source(value: &str) -> Result<Source, String> {
    match value {
        "kmsg" => Ok(Source::Kmsg),
        "-" => Ok(Source::Stdin),
        _ => match value.strip_prefix("file=") {
            Some(path) if !path.is_empty() => Ok(Source::File(path.into())),
            _ => Err(format!(
                "unknown source {value:?}: expected kmsg, file=PATH or -"
            )),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

/// What one run saw.
#[derive(Debug, Default)]
struct Counts {
    lines: u64,
    denials: u64,
    unparsable: u64,
}

pub fn run(args: EnrichArgs) -> Result<i32, CliError> {
    // Buffered; flushed after each line when following, so lines stream.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut resolver = ProcResolver::new(args.proc.clone());
    let mut names = SyscallNames::default();
    let mut counts = Counts::default();
    let write_err = |source| CliError::Write {
        path: "-".into(),
        source,
    };
    let mut handle = |line: &str, counts: &mut Counts| -> Result<(), CliError> {
        counts.lines += 1;
        match parse_line(line) {
            Ok(Parsed::Record(record)) => {
                counts.denials += 1;
                let pid = match &record.denial {
                    crate::audit::parse::Denial::Seccomp(s) => Some(s.pid),
                    crate::audit::parse::Denial::Selinux(a) => a.pid,
                    crate::audit::parse::Denial::AppArmor(a) => a.pid,
                };
                let container = pid.and_then(|pid| resolver.container_of(pid));
                let enriched = enrich(
                    &record,
                    args.node.as_deref(),
                    container.as_ref(),
                    &mut names,
                );
                match args.format {
                    OutputFormat::Json => serde_json::to_writer(&mut out, &enriched)
                        .map_err(|err| write_err(err.into()))?,
                    OutputFormat::Text => out
                        .write_all(render_text(&enriched).as_bytes())
                        .map_err(write_err)?,
                }
                out.write_all(b"\n").map_err(write_err)?;
                if args.follow {
                    out.flush().map_err(write_err)?;
                }
                Ok(())
            }
            Ok(Parsed::Ignored) => Ok(()),
            Err(err) => {
                counts.unparsable += 1;
                tracing::trace!(error = %err, "unparsable audit record");
                Ok(())
            }
        }
    };
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Read { path, source }
    };
    let mut lost = 0;
    match &args.source {
        Source::Kmsg => {
            let mut kmsg = Kmsg::open(&args.kmsg, args.follow).map_err(read_err(&args.kmsg))?;
            while let Some(message) = kmsg.next_message().map_err(read_err(&args.kmsg))? {
                handle(&message, &mut counts)?;
            }
            lost = kmsg.lost;
        }
        Source::File(path) if args.follow => {
            let mut follower = Follower::open(path, false).map_err(read_err(path))?;
            loop {
                for line in follower.poll().map_err(read_err(path))? {
                    handle(&line, &mut counts)?;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        Source::File(path) => {
            let file = std::fs::File::open(path).map_err(read_err(path))?;
            let mut reader = std::io::BufReader::new(file);
            let mut line = String::new();
            // One buffer for every line.
            while {
                line.clear();
                reader.read_line(&mut line).map_err(read_err(path))? > 0
            } {
                handle(line.trim_end_matches('\n'), &mut counts)?;
            }
        }
        Source::Stdin => {
            for line in std::io::stdin().lock().lines() {
                handle(&line.map_err(read_err(Path::new("-")))?, &mut counts)?;
            }
        }
    }
    out.flush().map_err(write_err)?;
    eprintln!(
        "syscribe: {} lines, {} denials, {} unparsable, {} lost",
        counts.lines, counts.denials, counts.unparsable, lost
    );
    Ok(0)
}

/// `key=value` pairs, quoted where a value has spaces.
fn render_text(enriched: &Enriched) -> String {
    let value = serde_json::to_value(enriched).expect("serializes");
    let Some(fields) = value.as_object() else {
        return String::new();
    };
    fields
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) if s.contains(' ') => format!("{k}={s:?}"),
            Some(s) => format!("{k}={s}"),
            None => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_with_named_errors() {
        assert_eq!(parse_source("kmsg"), Ok(Source::Kmsg));
        assert_eq!(parse_source("-"), Ok(Source::Stdin));
        assert_eq!(
            parse_source("file=/var/log/audit/audit.log"),
            Ok(Source::File("/var/log/audit/audit.log".into()))
        );
        assert!(
            parse_source("file=")
                .unwrap_err()
                .contains("unknown source")
        );
        assert!(
            parse_source("netlink")
                .unwrap_err()
                .contains("expected kmsg, file=PATH or -")
        );
    }
}
