//! `syscribe enrich`.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::ValueEnum;
use serde_json::{Map, Value};

use super::CliError;
use crate::{
    audit::{
        enrich::Enriched,
        filter::FilterRule,
        follow::Follower,
        metrics::{self, Metrics},
        pipeline::{Options, Pipeline, Sink, fields_of},
        source::{
            AuditNetlink, Kmsg, LinesError, for_each_line, stop_on_signals, stop_requested,
            wait_readable,
        },
    },
    bpf::ExitMemory,
    record::HostPaths,
    resolve::{
        cgroup::cgroup2_mount,
        process::{ExitLookup, ProcResolver},
        runtime::{KnownNames, RuntimeNames},
    },
};

#[derive(Debug, clap::Args)]
pub struct EnrichArgs {
    /// Where the audit records come from: `auto` (the best available, said on stderr: with
    /// --follow the netlink audit group, else auditd's log when auditd runs, else the kernel
    /// log), `audit-log[=PATH]` (auditd's file; with --follow, across its rotations), `kmsg`
    /// (the kernel log, without auditd), `netlink` (the audit multicast group, beside auditd;
    /// always follows), `file=PATH` (any file of audit lines), or `-` (stdin).
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
    /// Serve Prometheus metrics (upstream counter names) on /metrics, and /healthz, /readyz
    /// (e.g. `127.0.0.1:9100`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// The proc filesystem processes are resolved in.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc: PathBuf,
    /// The kernel log device.
    #[arg(long, default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
}

impl EnrichArgs {
    /// What the daemon runs: the best source, following, JSON lines, metrics served.
    pub fn for_daemon(node: String, metrics_addr: SocketAddr) -> Self {
        Self {
            source: Source::Auto,
            follow: true,
            format: OutputFormat::Json,
            node: Some(node),
            filters: Vec::new(),
            aggregate: None,
            metrics_addr: Some(metrics_addr),
            proc: "/proc".into(),
            kmsg: "/dev/kmsg".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Auto,
    Kmsg,
    Netlink,
    /// auditd's log (`audit-log` alone: /var/log/audit/audit.log), or any file.
    File(PathBuf),
    Stdin,
}

const AUDIT_LOG: &str = "/var/log/audit/audit.log";

fn parse_source(value: &str) -> Result<Source, String> {
    match value {
        "auto" => Ok(Source::Auto),
        "kmsg" => Ok(Source::Kmsg),
        "netlink" => Ok(Source::Netlink),
        "audit-log" => Ok(Source::File(AUDIT_LOG.into())),
        "-" => Ok(Source::Stdin),
        _ => match value
            .strip_prefix("file=")
            .or_else(|| value.strip_prefix("audit-log="))
        {
            Some(path) if !path.is_empty() => Ok(Source::File(path.into())),
            _ => Err(format!(
                "unknown source {value:?}: expected auto, audit-log[=PATH], kmsg, netlink, file=PATH or -"
            )),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

/// The best source there is. Following: the audit netlink multicast group (every record, beside
/// auditd or without it, no rate limit); else auditd's log when auditd runs (it then takes the
/// records away from the kernel log); else the kernel log.
fn pick_source(follow: bool) -> Source {
    if follow {
        match AuditNetlink::open() {
            Ok(_) => {
                eprintln!("syscribe: source: netlink (audit multicast group)");
                return Source::Netlink;
            }
            Err(err) => eprintln!("syscribe: netlink audit group unavailable ({err})"),
        }
    }
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

/// Writes lines to stdout, as JSON or text; flushed after each line when following.
struct Output<W: Write> {
    out: W,
    /// One line's JSON, reused.
    line: Vec<u8>,
    format: OutputFormat,
    flush_each: bool,
}

impl<W: Write> Sink for Output<W> {
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Json => {
                self.line.clear();
                line.write_json(&mut self.line);
                self.out.write_all(&self.line)?;
            }
            OutputFormat::Text => self
                .out
                .write_all(render_text(&fields_of(line)).as_bytes())?,
        }
        self.end_line()
    }

    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Json => serde_json::to_writer(&mut self.out, line)?,
            OutputFormat::Text => self.out.write_all(render_text(line).as_bytes())?,
        }
        self.end_line()
    }
}

impl<W: Write> Output<W> {
    fn end_line(&mut self) -> std::io::Result<()> {
        self.out.write_all(b"\n")?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }
}

/// How long a following reader sleeps or waits for input between ticks.
const IDLE: Duration = Duration::from_millis(200);

pub fn run(paths: &HostPaths, args: EnrichArgs) -> Result<i32, CliError> {
    run_with(paths, args, None)
}

/// `run`, with container names known from elsewhere (the daemon's pod index).
pub fn run_with(
    paths: &HostPaths,
    mut args: EnrichArgs,
    known: Option<KnownNames>,
) -> Result<i32, CliError> {
    if args.source == Source::Auto {
        args.source = pick_source(args.follow);
    }
    if args.source == Source::Netlink && !args.follow {
        // The multicast group only carries what happens from now on.
        args.follow = true;
    }
    stop_on_signals();
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let metrics = Arc::new(Mutex::new(Metrics::default()));
            let bound =
                metrics::serve(addr, metrics.clone()).map_err(|source| CliError::Serve {
                    addr: addr.to_string(),
                    source,
                })?;
            eprintln!("syscribe: metrics on http://{bound}/metrics");
            Some(metrics)
        }
        None => None,
    };
    let cgroup2 = cgroup2_mount(&paths.mountinfo).unwrap_or_else(|err| {
        tracing::warn!(error = %err, "containers of exited processes cannot be found");
        PathBuf::from("/sys/fs/cgroup")
    });
    // Only a reader that follows benefits: the kernel remembers exits from now on.
    let exit_memory = if args.follow {
        Some(ExitMemory::start(&paths.btf))
    } else {
        None
    };
    let exits: Option<Box<dyn ExitLookup>> = match exit_memory {
        None => None,
        Some(Ok(memory)) => {
            eprintln!(
                "syscribe: remembering process exits for {} s (killed processes stay attributed)",
                ProcResolver::EXIT_GRACE.as_secs()
            );
            Some(Box::new(memory))
        }
        Some(Err(err)) => {
            eprintln!(
                "syscribe: warning: killed processes cannot be attributed (needs root): {err}"
            );
            None
        }
    };
    let mut pipeline = Pipeline::new(
        Options {
            node: args.node.clone(),
            filters: std::mem::take(&mut args.filters),
            aggregate: args.aggregate.map(Duration::from_secs),
            metrics,
        },
        ProcResolver::new(args.proc.clone(), cgroup2, exits),
        match known {
            Some(known) => RuntimeNames::default().with_known(known),
            None => RuntimeNames::default(),
        },
    );
    let mut out = Output {
        out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
        line: Vec::with_capacity(1024),
        format: args.format,
        flush_each: args.follow,
    };
    let write_err = |source| CliError::Write {
        path: "-".into(),
        source,
    };
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Read { path, source }
    };
    let mut lost = 0;
    match &args.source {
        Source::Auto | Source::Kmsg => {
            let mut kmsg = Kmsg::open(&args.kmsg, args.follow).map_err(read_err(&args.kmsg))?;
            while !stop_requested() {
                if args.follow && !wait_readable(kmsg.fd(), IDLE) {
                    pipeline.tick(&mut out).map_err(write_err)?;
                    pipeline.publish(kmsg.lost);
                    continue;
                }
                match kmsg.next_message().map_err(read_err(&args.kmsg))? {
                    Some(message) => pipeline.line(&message, &mut out).map_err(write_err)?,
                    None if args.follow => {}
                    None => break,
                }
            }
            lost = kmsg.lost;
        }
        Source::Netlink => {
            let mut netlink = AuditNetlink::open().map_err(|source| CliError::Read {
                path: "netlink audit multicast group (needs CAP_AUDIT_READ)".into(),
                source,
            })?;
            eprintln!("syscribe: reading the audit netlink multicast group");
            while !stop_requested() {
                if !wait_readable(netlink.fd(), IDLE) {
                    pipeline.tick(&mut out).map_err(write_err)?;
                    pipeline.publish(netlink.lost);
                    continue;
                }
                if let Some(line) = netlink
                    .next_record()
                    .map_err(read_err(Path::new("netlink")))?
                {
                    pipeline.line(&line, &mut out).map_err(write_err)?;
                }
            }
            lost = netlink.lost;
        }
        Source::File(path) if args.follow => {
            let mut follower = Follower::open(path, false).map_err(read_err(path))?;
            while !stop_requested() {
                for line in follower.poll().map_err(read_err(path))? {
                    pipeline.line(&line, &mut out).map_err(write_err)?;
                }
                pipeline.tick(&mut out).map_err(write_err)?;
                pipeline.publish(0);
                std::thread::sleep(IDLE);
            }
        }
        Source::File(path) => {
            let file = std::fs::File::open(path).map_err(read_err(path))?;
            for_each_line(file, |line| pipeline.line(line, &mut out))
                .map_err(|err| lines_err(err, path))?;
        }
        Source::Stdin => {
            for_each_line(std::io::stdin().lock(), |line| {
                pipeline.line(line, &mut out)
            })
            .map_err(|err| lines_err(err, Path::new("-")))?;
        }
    }
    pipeline.finish(&mut out).map_err(write_err)?;
    pipeline.publish(lost);
    out.out.flush().map_err(write_err)?;
    let c = pipeline.counts;
    let r = pipeline.resolver().counts;
    eprintln!(
        "syscribe: {} lines, {} denials, {} unparsable, {} filtered out, {} lost; processes: {} live, {} exited, {} pid reused, {} unresolved",
        c.lines,
        c.denials,
        c.unparsable,
        c.filtered,
        lost,
        r.live,
        r.exited,
        r.pid_reused,
        r.unresolved
    );
    Ok(0)
}

/// A line-reading failure: reading `path`, or writing the output.
fn lines_err(err: LinesError, path: &Path) -> CliError {
    match err {
        LinesError::Read(source) => CliError::Read {
            path: path.to_owned(),
            source,
        },
        LinesError::Handle(source) => CliError::Write {
            path: "-".into(),
            source,
        },
    }
}

/// `key=value` pairs, quoted where a value has spaces.
fn render_text(fields: &Map<String, Value>) -> String {
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
        assert_eq!(parse_source("netlink"), Ok(Source::Netlink));
        assert_eq!(
            parse_source("audit-log"),
            Ok(Source::File(AUDIT_LOG.into()))
        );
        assert_eq!(
            parse_source("audit-log=/tmp/a.log"),
            Ok(Source::File("/tmp/a.log".into()))
        );
        assert!(
            parse_source("journal")
                .unwrap_err()
                .contains("expected auto, audit-log[=PATH], kmsg, netlink, file=PATH or -")
        );
    }
}
