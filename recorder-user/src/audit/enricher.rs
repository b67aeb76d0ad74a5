//! The log enricher: reads audit records from a [`Source`] until its end or a [`Stop`], hands
//! each line to the [`Pipeline`] (enrichment, filters, per-source shares, aggregation) and
//! writes what comes out ([`Output`]); serves its counters on /metrics when asked. `syscribe
//! enrich` maps its flags to [`EnrichOptions`]; the daemon runs it with its own.

use std::{
    io::Write,
    net::SocketAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use thiserror::Error;

use super::{
    avc_trace,
    fair::FairShare,
    filter::FilterRule,
    follow::Follower,
    metrics::{self, Metrics},
    netlink::{AuditNetlink, AuditStatus, BufferHow},
    output::{Output, OutputFormat, SharedStdout},
    pipeline::{Options, Pipeline, Sink, SourceCounts, TraceCounts},
    source::{Kmsg, Lines, LinesError, Source, Stop, open_regular, wait_readable},
    tap::AvcTap,
};
use crate::{
    bpf::{AVC_FORMAT_PATHS, AvcTracer, ExitMemory},
    record::HostPaths,
    resolve::{
        cgroup::cgroup2_mount,
        process::{ExitLookup, ProcResolver},
        runtime::{KnownNames, RuntimeNames},
    },
};

/// What an enricher reads and how it writes.
#[derive(Debug)]
pub struct EnrichOptions {
    /// [`Source::Auto`]: the best one here ([`Source::pick`]).
    pub source: Source,
    /// Keep reading new records instead of stopping at the end.
    pub follow: bool,
    pub format: OutputFormat,
    /// The node name put on each line.
    pub node: Option<String>,
    pub filters: Vec<FilterRule>,
    /// Print one line per distinct denial with a `count`, this often (or once at the end of a
    /// finite input).
    pub aggregate: Option<Duration>,
    /// Serve the counters on /metrics (and /healthz, /readyz) here.
    pub metrics_addr: Option<SocketAddr>,
    /// Lines printed per second per source (0: every line), and at once; see [`FairShare`].
    pub per_source_rate: u32,
    pub per_source_burst: u32,
    /// The receive buffer asked for the netlink source, in bytes.
    pub netlink_buffer: usize,
    /// The proc filesystem processes are resolved in.
    pub proc: PathBuf,
    /// The kernel log device.
    pub kmsg: PathBuf,
    /// Following a file: start at its end (what was there before is not read).
    pub from_end: bool,
    /// While following, where SELinux is on: also read denials from the AVC tracepoint.
    pub avc_trace: bool,
}

impl EnrichOptions {
    /// The daemon's: the best source, following, JSON lines, metrics served.
    pub fn daemon(node: String, metrics_addr: SocketAddr) -> Self {
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
    pub fn daemon_file(node: String, path: PathBuf, from_end: bool) -> Self {
        Self {
            source: Source::File(path),
            metrics_addr: None,
            from_end,
            // The main enricher reads the tracepoint; twice would print each denial twice.
            avc_trace: false,
            ..Self::daemon(node, SocketAddr::from(([127, 0, 0, 1], 0)))
        }
    }
}

/// What an enricher shares with the rest of its process (the daemon's); none of it for
/// `syscribe enrich`.
#[derive(Debug, Default)]
pub struct Shared {
    /// Container names known from elsewhere (the daemon's pod index).
    pub known: Option<KnownNames>,
    /// Where pods' AVCs go (the daemon's SELinux recordings).
    pub avc_tap: Option<AvcTap>,
    /// The counters are kept here (the daemon's /metrics, which also holds its gauges).
    pub metrics: Option<Arc<Mutex<Metrics>>>,
}

#[derive(Debug, Error)]
pub enum EnrichError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Standard output (`-`).
    #[error("cannot write -: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Waits up to `limit` for enricher threads told to stop to end (their output flushed, their
/// counts said); false when one did not.
pub fn wait_stopped(threads: Vec<std::thread::JoinHandle<()>>, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while threads.iter().any(|t| !t.is_finished()) {
        if std::time::Instant::now() >= deadline {
            tracing::warn!("an enricher did not stop in time");
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// How long a following reader sleeps or waits for input between ticks, and how often it
/// ticks (aggregation, summaries, metrics) while input keeps coming.
const IDLE: Duration = Duration::from_millis(200);

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
/// where SELinux is on (see [`avc_trace`]; the pipeline prints the first copy of a denial
/// both report).
struct Traced {
    tracer: AvcTracer,
    perms: avc_trace::PermNames,
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
        let Some(format) = AVC_FORMAT_PATHS
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
        else {
            eprintln!(
                "syscribe: warning: SELinux is on but the avc:selinux_audited tracepoint is not visible (is tracefs mounted at /sys/kernel/tracing?): SELinux denials come from audit only"
            );
            return None;
        };
        match AvcTracer::start(&paths.btf, &format) {
            Ok(tracer) => {
                eprintln!(
                    "syscribe: SELinux denials are also read from the avc:selinux_audited tracepoint"
                );
                Some(Self {
                    tracer,
                    perms: avc_trace::PermNames::new(selinuxfs),
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
            match avc_trace::decode(bytes) {
                Ok(avc) => {
                    let names = perms.names(&avc.tclass, avc.denied);
                    let boot_ns = avc.boot_ns;
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let record = avc_trace::to_record(avc, names, wall);
                    result = pipeline.traced_avc(record, boot_ns, out);
                }
                Err(_) => *undecodable += 1,
            }
        });
        result
    }

    fn counts(&mut self) -> TraceCounts {
        let (dropped, truncated, unreadable) = self.tracer.counters().unwrap_or_default();
        TraceCounts {
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

/// Reads `options.source` until its end, or until `stop` is requested while following; the
/// caller decides what stops it (the enricher installs no signal handler). Its counts are
/// said on stderr at the end.
pub fn run(
    paths: &HostPaths,
    mut args: EnrichOptions,
    shared: Shared,
    stop: &Stop,
) -> Result<(), EnrichError> {
    if args.source == Source::Auto {
        args.source = Source::pick(args.follow, &args.proc);
    }
    if args.source == Source::Netlink && !args.follow {
        // The multicast group only carries what happens from now on.
        args.follow = true;
    }
    let Shared {
        known,
        avc_tap,
        metrics: shared,
    } = shared;
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let metrics = shared.unwrap_or_default();
            let bound = metrics::serve(addr, metrics.clone())
                .map_err(|source| EnrichError::Serve { addr, source })?;
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
            aggregate: args.aggregate,
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
    let mut out = Output::new(
        std::io::BufWriter::with_capacity(1 << 16, SharedStdout),
        args.format,
    );
    // Only while following: the tracepoint reports what happens from now on.
    let trace = if args.follow && args.avc_trace {
        Traced::start(paths)
    } else {
        None
    };
    if trace.is_some() {
        pipeline.pair_avcs();
    }
    let counts = read_source(&args, &mut pipeline, &mut out, trace, stop)?;
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
    Ok(())
}

fn write_err(source: std::io::Error) -> EnrichError {
    EnrichError::Write { source }
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> EnrichError {
    let path = path.to_owned();
    move |source| EnrichError::Read { path, source }
}

/// Reads the source until its end or a stop signal; returns what it dropped.
fn read_source<W: Write>(
    args: &EnrichOptions,
    pipeline: &mut Pipeline,
    out: &mut Output<W>,
    trace: Option<Traced>,
    stop: &Stop,
) -> Result<SourceCounts, EnrichError> {
    let mut ticker = Ticker::new(None).with_trace(trace);
    match &args.source {
        Source::Auto | Source::Kmsg => {
            let mut kmsg = Kmsg::open(&args.kmsg, args.follow).map_err(read_err(&args.kmsg))?;
            while !stop.requested() {
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
                match kmsg.next_message(stop).map_err(read_err(&args.kmsg))? {
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
        Source::Netlink => read_netlink(args, pipeline, out, ticker.trace.take(), stop),
        Source::File(path) if args.follow => {
            let mut follower = Follower::open(path, args.from_end).map_err(read_err(path))?;
            while !stop.requested() {
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
            read_lines(file, path, pipeline, out, stop)
        }
        Source::Stdin => {
            let stdin = std::os::fd::AsFd::as_fd(&std::io::stdin())
                .try_clone_to_owned()
                .map_err(read_err(Path::new("-")))?;
            read_lines(
                std::fs::File::from(stdin),
                Path::new("-"),
                pipeline,
                out,
                stop,
            )
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
    stop: &Stop,
) -> Result<SourceCounts, EnrichError> {
    let mut lines = Lines::default();
    let mut ticker = Ticker::new(None);
    while !stop.requested() {
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
    args: &EnrichOptions,
    pipeline: &mut Pipeline,
    out: &mut Output<W>,
    trace: Option<Traced>,
    stop: &Stop,
) -> Result<SourceCounts, EnrichError> {
    let netlink_err = |source| EnrichError::Read {
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
    while !stop.requested() {
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
fn lines_err(err: LinesError, path: &Path) -> EnrichError {
    match err {
        LinesError::Read(source) => EnrichError::Read {
            path: path.to_owned(),
            source,
        },
        LinesError::Handle(source) => EnrichError::Write { source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signal's disposition in this process.
    fn handler_of(signal: libc::c_int) -> libc::sighandler_t {
        // SAFETY: reading the current action only (null new action); `old` is plain data.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old);
            old.sa_sigaction
        }
    }

    #[test]
    fn a_following_reader_ends_when_its_caller_asks_and_takes_no_signal() {
        let dir = std::env::temp_dir().join(format!("syscribe-enricher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.log");
        std::fs::write(&log, "").unwrap();
        let before = [libc::SIGINT, libc::SIGTERM].map(handler_of);
        let options = EnrichOptions {
            metrics_addr: None,
            ..EnrichOptions::daemon_file("node1".into(), log, false)
        };
        let paths = HostPaths {
            // No BTF: killed processes are not remembered (said on stderr), nothing loaded.
            btf: dir.join("no-btf"),
            mountinfo: "/proc/self/mountinfo".into(),
        };
        let stop = Stop::default();
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || run(&paths, options, Shared::default(), &stop))
        };
        std::thread::sleep(IDLE * 2);
        assert!(!reader.is_finished(), "a follower waits for more");
        assert_eq!(
            [libc::SIGINT, libc::SIGTERM].map(handler_of),
            before,
            "the enricher leaves the process's signal handling alone"
        );
        stop.request();
        let deadline = std::time::Instant::now() + IDLE * 10;
        while !reader.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "still reading after the stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        reader.join().unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
