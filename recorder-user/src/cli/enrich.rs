//! `syscribe enrich`.

use std::{
    io::Write,
    net::SocketAddr,
    os::fd::AsFd as _,
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
        fair::FairShare,
        filter::FilterRule,
        follow::Follower,
        metrics::{self, Metrics},
        netlink::{AuditNetlink, AuditStatus, BufferHow},
        pipeline::{Options, Pipeline, Sink, SourceCounts, fields_of},
        source::{
            Kmsg, Lines, LinesError, open_regular, stop_on_signals, stop_requested, wait_readable,
        },
        tap::AvcTap,
        text,
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
    /// Lines printed per second per source (pod, else container, else executable), so that a
    /// storm from one cannot bury another's denials; beyond it lines are counted and
    /// summarised ("N more denials from SOURCE summarised"). 0: print every line.
    #[arg(long, value_name = "LINES", default_value_t = FairShare::DEFAULT_RATE)]
    pub per_source_rate: u32,
    /// Lines a source may print at once before its rate applies.
    #[arg(long, value_name = "LINES", default_value_t = FairShare::DEFAULT_BURST)]
    pub per_source_burst: u32,
    /// The receive buffer asked for the netlink source, in bytes (forced past
    /// net.core.rmem_max as root; the size granted is said on stderr).
    #[arg(long, value_name = "BYTES", default_value_t = AuditNetlink::DEFAULT_RCVBUF)]
    pub netlink_buffer: usize,
    /// The proc filesystem processes are resolved in.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc: PathBuf,
    /// The kernel log device.
    #[arg(long, default_value = "/dev/kmsg", hide = true)]
    pub kmsg: PathBuf,
    /// Following a file: start at its end (what was there before is not read).
    #[arg(skip)]
    pub from_end: bool,
    /// While following, where SELinux is on: also read denials from the AVC tracepoint
    /// (root; tracefs mounted). Off: SELinux denials come from the audit source only.
    #[arg(long = "no-avc-trace", action = clap::ArgAction::SetFalse)]
    pub avc_trace: bool,
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
            per_source_rate: FairShare::DEFAULT_RATE,
            per_source_burst: FairShare::DEFAULT_BURST,
            netlink_buffer: AuditNetlink::DEFAULT_RCVBUF,
            proc: "/proc".into(),
            kmsg: "/dev/kmsg".into(),
            from_end: false,
            avc_trace: true,
        }
    }

    /// The daemon's extra source: `path` followed (`from_end`: from its end), no metrics of
    /// its own (the main enricher serves them).
    pub fn for_daemon_file(node: String, path: PathBuf, from_end: bool) -> Self {
        Self {
            source: Source::File(path),
            metrics_addr: None,
            from_end,
            // The main enricher reads the tracepoint; twice would print each denial twice.
            avc_trace: false,
            ..Self::for_daemon(node, SocketAddr::from(([127, 0, 0, 1], 0)))
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
fn pick_source(follow: bool, proc: &Path) -> Source {
    // The kernel sends the audit multicast group to sockets of the host's (initial) network
    // namespace only: a pod without hostNetwork would open it and never read a record.
    let host_network = match (
        std::fs::metadata(proc.join("self/ns/net")),
        std::fs::metadata(proc.join("1/ns/net")),
    ) {
        (Ok(own), Ok(init)) => {
            use std::os::unix::fs::MetadataExt as _;
            (own.dev(), own.ino()) == (init.dev(), init.ino())
        }
        // pid 1's namespaces need ptrace access, which a process with fewer capabilities
        // than init (the daemon's pod) lacks; its network devices are readable by anyone.
        _ => match (
            interfaces(&proc.join("self/net/dev")),
            interfaces(&proc.join("1/net/dev")),
        ) {
            (Some(own), Some(init)) => own == init,
            // Not knowable: try it.
            _ => true,
        },
    };
    if follow && !host_network {
        eprintln!(
            "syscribe: not in the host's network namespace, where alone the kernel sends the audit multicast group: not reading it"
        );
    } else if follow {
        match AuditNetlink::open(4096) {
            Ok(_) => {
                eprintln!("syscribe: source: netlink (audit multicast group)");
                return Source::Netlink;
            }
            Err(err) => eprintln!("syscribe: netlink audit group unavailable ({err})"),
        }
    }
    let auditd_runs = auditd_runs(proc);
    if auditd_runs && Path::new(AUDIT_LOG).exists() {
        eprintln!("syscribe: source: {AUDIT_LOG} (auditd is running)");
        Source::File(AUDIT_LOG.into())
    } else {
        eprintln!("syscribe: source: kmsg (no auditd running)");
        Source::Kmsg
    }
}

/// The network devices a `/proc/<pid>/net/dev` lists (its network namespace's).
fn interfaces(path: &Path) -> Option<std::collections::BTreeSet<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .skip(2)
            .filter_map(|l| Some(l.split_once(':')?.0.trim().to_owned()))
            .collect(),
    )
}

/// Whether auditd runs: its pid file names a live process, or (seeing the host's processes,
/// as the daemon does) a process is named auditd.
fn auditd_runs(proc: &Path) -> bool {
    let by_pid_file = std::fs::read_to_string("/var/run/auditd.pid")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| proc.join(pid.to_string()).exists());
    by_pid_file
        || std::fs::read_dir(proc).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    && std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == "auditd")
            })
        })
}

/// Writes lines to stdout, as JSON or text (escaped: see [`text`]). Buffered: a following
/// reader flushes whenever its source has nothing more queued.
struct Output<W: Write> {
    out: W,
    /// One line's JSON, reused.
    line: Vec<u8>,
    format: OutputFormat,
}

// Each line, newline included, is handed to the writer in one call: with [`SharedStdout`]
// behind a BufWriter, lines of two enrichers (the daemon's kernel source and its `--audit-log`
// follower) are never cut into each other.
impl<W: Write> Sink for Output<W> {
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()> {
        self.line.clear();
        match self.format {
            OutputFormat::Json => line.write_json(&mut self.line),
            OutputFormat::Text => self
                .line
                .extend_from_slice(text::render(&fields_of(line)).as_bytes()),
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()> {
        self.line.clear();
        match self.format {
            OutputFormat::Json => serde_json::to_writer(&mut self.line, line)?,
            OutputFormat::Text => self.line.extend_from_slice(text::render(line).as_bytes()),
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

/// Standard output taken for each write only, and written whole under it: several enrichers
/// in one process share it (holding `stdout().lock()` for a whole run, as this once did,
/// blocked the daemon's second enricher forever).
struct SharedStdout;

impl Write for SharedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// How long a following reader sleeps or waits for input between ticks, and how often it
/// ticks (aggregation, summaries, metrics) while input keeps coming.
const IDLE: Duration = Duration::from_millis(200);

pub fn run(paths: &HostPaths, args: EnrichArgs) -> Result<i32, CliError> {
    run_with(paths, args, None, None, None)
}

/// Periodic work while reading: due lines out, metrics published, the kernel's drops read.
struct Ticker {
    last: std::time::Instant,
    /// The kernel's audit status when reading started (netlink only).
    kernel_before: Option<AuditStatus>,
    counts: SourceCounts,
    /// The AVC tracepoint, drained at every tick (so within IDLE while the source is quiet).
    trace: Option<Traced>,
}

/// The `avc:selinux_audited` tracepoint as a second source of SELinux denials beside audit,
/// where SELinux is on (see `audit::avc_trace`; the pipeline prints the first copy of a denial
/// both report).
struct Traced {
    tracer: crate::bpf::AvcTracer,
    perms: crate::audit::avc_trace::PermNames,
    undecodable: u64,
}

impl Traced {
    /// Attached where SELinux is on and tracefs shows the tracepoint; otherwise None, said
    /// once when SELinux is on (off, there is nothing to trace).
    fn start(paths: &HostPaths) -> Option<Self> {
        let selinuxfs = Path::new(crate::selinux::SELINUXFS);
        if !selinuxfs.join("enforce").exists() {
            return None;
        }
        let Some(format) = crate::bpf::AVC_FORMAT_PATHS
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
        else {
            eprintln!(
                "syscribe: warning: SELinux is on but the avc:selinux_audited tracepoint is not visible (is tracefs mounted at /sys/kernel/tracing?): SELinux denials come from audit only"
            );
            return None;
        };
        match crate::bpf::AvcTracer::start(&paths.btf, &format) {
            Ok(tracer) => {
                eprintln!(
                    "syscribe: SELinux denials are also read from the avc:selinux_audited tracepoint"
                );
                Some(Self {
                    tracer,
                    perms: crate::audit::avc_trace::PermNames::new(selinuxfs),
                    undecodable: 0,
                })
            }
            Err(err) => {
                eprintln!(
                    "syscribe: warning: the avc:selinux_audited tracepoint cannot be used ({err}): SELinux denials come from audit only"
                );
                None
            }
        }
    }

    /// Hands every waiting denial to the pipeline.
    fn pump(&mut self, pipeline: &mut Pipeline, out: &mut dyn Sink) -> std::io::Result<()> {
        let Self {
            tracer,
            perms,
            undecodable,
        } = self;
        let mut result = Ok(());
        tracer.drain(|bytes| {
            if result.is_err() {
                return;
            }
            match crate::audit::avc_trace::decode(bytes) {
                Ok(avc) => {
                    let names = perms.names(&avc.tclass, avc.denied);
                    let boot_ns = avc.boot_ns;
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let record = crate::audit::avc_trace::to_record(avc, names, wall);
                    result = pipeline.traced_avc(record, boot_ns, out);
                }
                Err(_) => *undecodable += 1,
            }
        });
        result
    }

    fn counts(&mut self) -> crate::audit::pipeline::TraceCounts {
        let (dropped, truncated, unreadable) = self.tracer.counters().unwrap_or_default();
        crate::audit::pipeline::TraceCounts {
            dropped,
            truncated,
            unreadable,
            undecodable: self.undecodable,
        }
    }
}

impl Ticker {
    fn new(kernel_before: Option<AuditStatus>) -> Self {
        Self {
            last: std::time::Instant::now(),
            kernel_before,
            counts: SourceCounts::default(),
            trace: None,
        }
    }

    fn with_trace(mut self, trace: Option<Traced>) -> Self {
        self.trace = trace;
        self
    }

    /// Ticks if `IDLE` passed (or `now`), with the source's counts.
    fn tick(
        &mut self,
        now: bool,
        pipeline: &mut Pipeline,
        out: &mut dyn Sink,
        counts: SourceCounts,
    ) -> std::io::Result<()> {
        if let Some(trace) = &mut self.trace {
            trace.pump(pipeline, out)?;
        }
        if !now && self.last.elapsed() < IDLE {
            return Ok(());
        }
        self.last = std::time::Instant::now();
        self.counts = SourceCounts {
            kernel_lost: self.kernel_lost(),
            ..counts
        };
        pipeline.tick(out)?;
        let trace = self.trace.as_mut().map(Traced::counts);
        pipeline.publish_with(self.counts, trace);
        Ok(())
    }

    /// What the kernel dropped since reading started.
    fn kernel_lost(&self) -> u64 {
        let Some(before) = self.kernel_before else {
            return 0;
        };
        AuditStatus::read().map_or(self.counts.kernel_lost, |now| {
            u64::from(now.lost.wrapping_sub(before.lost))
        })
    }
}

/// `run`, with container names known from elsewhere (the daemon's pod index), pods' AVCs
/// handed to the daemon's SELinux recordings through `avc_tap`, and the counters kept in
/// `shared` (the daemon's /metrics, which also holds its gauges) when given.
pub fn run_with(
    paths: &HostPaths,
    mut args: EnrichArgs,
    known: Option<KnownNames>,
    avc_tap: Option<AvcTap>,
    shared: Option<Arc<Mutex<Metrics>>>,
) -> Result<i32, CliError> {
    if args.source == Source::Auto {
        args.source = pick_source(args.follow, &args.proc);
    }
    if args.source == Source::Netlink && !args.follow {
        // The multicast group only carries what happens from now on.
        args.follow = true;
    }
    stop_on_signals();
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let metrics = shared.unwrap_or_default();
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
            metrics: metrics.clone(),
            per_source_rate: args.per_source_rate,
            per_source_burst: args.per_source_burst,
            avc_tap,
        },
        ProcResolver::new(args.proc.clone(), cgroup2, exits),
        match known {
            Some(known) => RuntimeNames::default().with_known(known),
            None => RuntimeNames::default(),
        },
    );
    let mut out = Output {
        out: std::io::BufWriter::with_capacity(1 << 16, SharedStdout),
        line: Vec::with_capacity(1024),
        format: args.format,
    };
    // Only while following: the tracepoint reports what happens from now on.
    let trace = if args.follow && args.avc_trace {
        Traced::start(paths)
    } else {
        None
    };
    if trace.is_some() {
        pipeline.pair_avcs();
    }
    let counts = read_source(&args, &mut pipeline, &mut out, trace)?;
    pipeline.finish(&mut out).map_err(write_err)?;
    pipeline.publish(counts);
    out.out.flush().map_err(write_err)?;
    let c = pipeline.counts;
    let r = pipeline.resolver().counts;
    let mut bounds = format!(
        "{} too long, {} summarised (per-source share), {} aggregated as (other)",
        counts.too_long,
        pipeline.suppressed(),
        pipeline.aggregate_overflow(),
    );
    if pipeline.avc_tap_dropped() > 0 {
        bounds += &format!(
            ", {} SELinux denials not handed to recordings (channel full)",
            pipeline.avc_tap_dropped()
        );
    }
    if pipeline.sources_overflow() > 0 {
        bounds += &format!(
            ", {} from sources beyond the table",
            pipeline.sources_overflow()
        );
    }
    if args.source == Source::Netlink {
        bounds += &format!(
            ", {} socket overflows, {} lost by the kernel",
            counts.overflows, counts.kernel_lost
        );
    }
    if let Some(metrics) = &metrics
        && let Ok(m) = metrics.lock()
    {
        bounds += &format!(", {} beyond the metrics series bound", m.series_overflow);
    }
    eprintln!(
        "syscribe: {} lines, {} denials, {} unparsable, {} filtered out, {} lost, {bounds}; processes: {} live, {} exited, {} pid reused, {} unresolved",
        c.lines,
        c.denials,
        c.unparsable,
        c.filtered,
        counts.lost,
        r.live,
        r.exited,
        r.pid_reused,
        r.unresolved
    );
    Ok(0)
}

fn write_err(source: std::io::Error) -> CliError {
    CliError::Write {
        path: "-".into(),
        source,
    }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.to_owned();
    move |source| CliError::Read { path, source }
}

/// Reads the source until its end or a stop signal; returns what it dropped.
fn read_source<W: Write>(
    args: &EnrichArgs,
    pipeline: &mut Pipeline,
    out: &mut Output<W>,
    trace: Option<Traced>,
) -> Result<SourceCounts, CliError> {
    let mut ticker = Ticker::new(None).with_trace(trace);
    match &args.source {
        Source::Auto | Source::Kmsg => {
            let mut kmsg = Kmsg::open(&args.kmsg, args.follow).map_err(read_err(&args.kmsg))?;
            while !stop_requested() {
                let counts = SourceCounts {
                    lost: kmsg.lost,
                    ..SourceCounts::default()
                };
                if args.follow && !wait_readable(kmsg.fd(), Duration::ZERO) {
                    out.out.flush().map_err(write_err)?;
                    let idle = !wait_readable(kmsg.fd(), IDLE);
                    ticker
                        .tick(idle, pipeline, out, counts)
                        .map_err(write_err)?;
                    if idle {
                        continue;
                    }
                }
                match kmsg.next_message().map_err(read_err(&args.kmsg))? {
                    Some(message) => pipeline.line(&message, out).map_err(write_err)?,
                    None if args.follow => {}
                    None => break,
                }
            }
            Ok(SourceCounts {
                lost: kmsg.lost,
                ..SourceCounts::default()
            })
        }
        Source::Netlink => read_netlink(args, pipeline, out, ticker.trace.take()),
        Source::File(path) if args.follow => {
            let mut follower = Follower::open(path, args.from_end).map_err(read_err(path))?;
            while !stop_requested() {
                for line in follower.poll().map_err(read_err(path))? {
                    pipeline.line(&line, out).map_err(write_err)?;
                }
                out.out.flush().map_err(write_err)?;
                let counts = SourceCounts {
                    too_long: follower.too_long,
                    ..SourceCounts::default()
                };
                ticker
                    .tick(true, pipeline, out, counts)
                    .map_err(write_err)?;
                std::thread::sleep(IDLE);
            }
            Ok(SourceCounts {
                too_long: follower.too_long,
                ..SourceCounts::default()
            })
        }
        Source::File(path) => {
            let file = open_regular(path).map_err(read_err(path))?;
            read_lines(file, path, pipeline, out)
        }
        Source::Stdin => {
            let stdin = std::os::fd::AsFd::as_fd(&std::io::stdin())
                .try_clone_to_owned()
                .map_err(read_err(Path::new("-")))?;
            read_lines(std::fs::File::from(stdin), Path::new("-"), pipeline, out)
        }
    }
}

/// Lines of a file or stdin to their end; while the input is idle (a pipe), due lines go out
/// and a stop signal is noticed.
fn read_lines<W: Write>(
    mut input: std::fs::File,
    path: &Path,
    pipeline: &mut Pipeline,
    out: &mut Output<W>,
) -> Result<SourceCounts, CliError> {
    let mut lines = Lines::default();
    let mut ticker = Ticker::new(None);
    while !stop_requested() {
        let counts = SourceCounts {
            too_long: lines.too_long,
            ..SourceCounts::default()
        };
        if !wait_readable(input.as_fd(), Duration::ZERO) {
            out.out.flush().map_err(write_err)?;
            let idle = !wait_readable(input.as_fd(), IDLE);
            ticker
                .tick(idle, pipeline, out, counts)
                .map_err(write_err)?;
            if idle {
                continue;
            }
        }
        if !lines
            .read_from(&mut input, |line| pipeline.line(line, out))
            .map_err(|err| lines_err(err, path))?
        {
            break;
        }
    }
    Ok(SourceCounts {
        too_long: lines.too_long,
        ..SourceCounts::default()
    })
}

fn read_netlink<W: Write>(
    args: &EnrichArgs,
    pipeline: &mut Pipeline,
    out: &mut Output<W>,
    trace: Option<Traced>,
) -> Result<SourceCounts, CliError> {
    let netlink_err = |source| CliError::Read {
        path: "netlink audit multicast group (needs CAP_AUDIT_READ)".into(),
        source,
    };
    let mut netlink = AuditNetlink::open(args.netlink_buffer).map_err(netlink_err)?;
    eprintln!(
        "syscribe: netlink receive buffer: {} KiB granted for {} KiB asked ({})",
        netlink.rcvbuf >> 10,
        args.netlink_buffer >> 10,
        match netlink.how {
            BufferHow::Forced => "SO_RCVBUFFORCE",
            BufferHow::Capped =>
                "SO_RCVBUF, capped by net.core.rmem_max: forcing needs CAP_NET_ADMIN",
        }
    );
    let kernel_before = match AuditStatus::read() {
        Ok(status) => {
            eprintln!(
                "syscribe: kernel audit: rate_limit {} /s, backlog_limit {}, {} lost before we started (records it drops are counted as lost by the kernel)",
                status.rate_limit, status.backlog_limit, status.lost
            );
            Some(status)
        }
        Err(err) => {
            eprintln!(
                "syscribe: warning: the kernel's own audit drops cannot be read (AUDIT_GET needs CAP_AUDIT_CONTROL): {err}"
            );
            None
        }
    };
    let mut ticker = Ticker::new(kernel_before).with_trace(trace);
    eprintln!("syscribe: reading the audit netlink multicast group");
    let counts = |n: &mut AuditNetlink| SourceCounts {
        lost: n.lost(),
        overflows: n.drops.max(n.overflows),
        ..SourceCounts::default()
    };
    let mut write_error = None;
    while !stop_requested() {
        let read = netlink
            .read_batch(|line| {
                pipeline.line(line, out).map_err(|err| {
                    // Kept apart from read errors; stops the batch.
                    let kind = err.kind();
                    write_error = Some(err);
                    std::io::Error::from(kind)
                })
            })
            .map_err(|err| match write_error.take() {
                Some(err) => write_err(err),
                None => netlink_err(err),
            })?;
        if read < AuditNetlink::BATCH {
            // Nothing more queued: what was printed goes out now.
            out.out.flush().map_err(write_err)?;
        }
        let idle = read == 0 && !wait_readable(netlink.fd(), IDLE);
        ticker
            .tick(idle, pipeline, out, counts(&mut netlink))
            .map_err(write_err)?;
    }
    // The kernel's drops up to the end.
    ticker
        .tick(true, pipeline, out, counts(&mut netlink))
        .map_err(write_err)?;
    Ok(ticker.counts)
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
