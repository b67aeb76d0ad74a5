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
        filter::{Aggregator, FilterRule, keeps},
        follow::Follower,
        parse::{Parsed, parse_line},
        source::Kmsg,
    },
    resolve::process::ProcResolver,
};

#[derive(Debug, clap::Args)]
pub struct EnrichArgs {
    /// Where the audit records come from: `auto` (auditd's log when auditd runs, else the
    /// kernel log; says which), `kmsg` (the kernel log, without auditd),
    /// `file=PATH` (e.g. auditd's audit.log; with --follow, across its rotations), or `-`
    /// (stdin).
    #[arg(long, default_value = "auto", value_parser = parse_source)]
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
    /// Keep or drop lines by field values: `PRIORITY:keep|drop:FIELD=VALUE[,FIELD=VALUE…]`
    /// (e.g. `10:drop:syscallName=futex`); the matching rule of highest priority decides.
    #[arg(long = "filter", value_name = "RULE")]
    pub filters: Vec<FilterRule>,
    /// Print one line per distinct (type, container, executable, syscall, action…) with a
    /// `count`, every SECONDS (or once at the end of a finite input).
    #[arg(long, value_name = "SECONDS")]
    pub aggregate: Option<u64>,
    /// The proc filesystem processes are resolved in.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc: PathBuf,
    /// The kernel log device.
    #[arg(long, default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Auto,
    Kmsg,
    File(PathBuf),
    Stdin,
}

fn parse_source(value: &str) -> Result<Source, String> {
    match value {
        "auto" => Ok(Source::Auto),
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
    filtered: u64,
}

/// auditd's log when auditd runs (it then takes the records away from the kernel log), else
/// the kernel log.
fn pick_source() -> Source {
    const AUDIT_LOG: &str = "/var/log/audit/audit.log";
    let auditd_runs = std::fs::read_to_string("/var/run/auditd.pid")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if auditd_runs && Path::new(AUDIT_LOG).exists() {
        eprintln!("syscribe: source: {AUDIT_LOG} (auditd is running)");
        Source::File(AUDIT_LOG.into())
    } else {
        eprintln!("syscribe: source: kmsg (no auditd running)");
        Source::Kmsg
    }
}

pub fn run(mut args: EnrichArgs) -> Result<i32, CliError> {
    if args.source == Source::Auto {
        args.source = pick_source();
    }
    // Buffered; flushed after each line when following, so lines stream.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut resolver = ProcResolver::new(args.proc.clone());
    let mut names = SyscallNames::default();
    let mut aggregator = args
        .aggregate
        .map(|_| (Aggregator::default(), std::time::Instant::now()));
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
                if args.filters.is_empty() && aggregator.is_none() {
                    // The common case, straight to the output.
                    match args.format {
                        OutputFormat::Json => serde_json::to_writer(&mut out, &enriched)
                            .map_err(|err| write_err(err.into()))?,
                        OutputFormat::Text => out
                            .write_all(render_text(&fields_of(&enriched)).as_bytes())
                            .map_err(write_err)?,
                    }
                    out.write_all(b"\n").map_err(write_err)?;
                } else {
                    let fields = fields_of(&enriched);
                    if !keeps(&args.filters, &fields) {
                        counts.filtered += 1;
                        return Ok(());
                    }
                    match aggregator.as_mut() {
                        Some((agg, _)) => agg.add(fields),
                        None => write_fields(&mut out, &fields, args.format).map_err(write_err)?,
                    }
                }
                if let Some((agg, since)) = aggregator.as_mut()
                    && args.follow
                    && since.elapsed().as_secs() >= args.aggregate.unwrap_or(0)
                {
                    for fields in agg.drain() {
                        write_fields(&mut out, &fields, args.format).map_err(write_err)?;
                    }
                    *since = std::time::Instant::now();
                }
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
        Source::Auto | Source::Kmsg => {
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
    if let Some((mut agg, _)) = aggregator {
        for fields in agg.drain() {
            write_fields(&mut out, &fields, args.format).map_err(write_err)?;
        }
        if agg.overflow > 0 {
            tracing::warn!(
                count = agg.overflow,
                "lines not aggregated: too many distinct keys in one interval"
            );
        }
    }
    out.flush().map_err(write_err)?;
    eprintln!(
        "syscribe: {} lines, {} denials, {} unparsable, {} filtered out, {} lost",
        counts.lines, counts.denials, counts.unparsable, counts.filtered, lost
    );
    Ok(0)
}

/// The line's fields, as printed.
fn fields_of(enriched: &Enriched) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(enriched).expect("serializes") {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    }
}

fn write_fields(
    out: &mut impl std::io::Write,
    fields: &serde_json::Map<String, serde_json::Value>,
    format: OutputFormat,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => serde_json::to_writer(&mut *out, fields)?,
        OutputFormat::Text => out.write_all(render_text(fields).as_bytes())?,
    }
    out.write_all(b"\n")
}

/// `key=value` pairs, quoted where a value has spaces.
fn render_text(fields: &serde_json::Map<String, serde_json::Value>) -> String {
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
