//! `syscribe enrich`: its flags, mapped to the enricher's options (`audit::enricher`), and the
//! signals that stop it.

use std::{net::SocketAddr, path::PathBuf, sync::OnceLock};

use clap::{ValueEnum, builder::PossibleValue};

use super::CliError;
use crate::{
    audit::{
        enricher::{self, EnrichOptions, Shared},
        fair::FairShare,
        filter::FilterRule,
        netlink::AuditNetlink,
        output::OutputFormat,
        source::{Source, Stop},
    },
    record::HostPaths,
};

#[derive(Debug, clap::Args)]
pub struct EnrichArgs {
    /// Where the audit records come from: `auto` (the best available, said on stderr: with
    /// --follow the netlink audit group, else auditd's log when auditd runs, else the kernel
    /// log), `audit-log[=PATH]` (auditd's file; with --follow, across its rotations), `kmsg`
    /// (the kernel log, without auditd), `netlink` (the audit multicast group, beside auditd;
    /// always follows), `file=PATH` (any file of audit lines), or `-` (stdin).
    #[arg(long, default_value = "auto", value_parser = Source::parse)]
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
    /// While following, where SELinux is on: also read denials from the AVC tracepoint
    /// (root; tracefs mounted). Off: SELinux denials come from the audit source only.
    #[arg(long = "no-avc-trace", action = clap::ArgAction::SetFalse)]
    pub avc_trace: bool,
}

impl From<EnrichArgs> for EnrichOptions {
    fn from(args: EnrichArgs) -> Self {
        Self {
            source: args.source,
            follow: args.follow,
            format: args.format,
            node: args.node,
            filters: args.filters,
            aggregate: args.aggregate.map(std::time::Duration::from_secs),
            metrics_addr: args.metrics_addr,
            per_source_rate: args.per_source_rate,
            per_source_burst: args.per_source_burst,
            netlink_buffer: args.netlink_buffer,
            proc: args.proc,
            kmsg: args.kmsg,
            from_end: false,
            avc_trace: args.avc_trace,
        }
    }
}

impl ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Json, Self::Text]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Json => "json",
            Self::Text => "text",
        }))
    }
}

pub fn run(paths: &HostPaths, args: EnrichArgs) -> Result<i32, CliError> {
    let stop = stop_on_signals();
    enricher::run(paths, args.into(), Shared::default(), &stop)?;
    Ok(0)
}

/// The stop SIGINT and SIGTERM request.
static SIGNALLED: OnceLock<Stop> = OnceLock::new();

extern "C" fn request_stop(_: libc::c_int) {
    // Async-signal-safe: an atomic load (set before the handler was installed), an atomic store.
    if let Some(stop) = SIGNALLED.get() {
        stop.request();
    }
}

/// SIGINT and SIGTERM request the returned stop and interrupt blocking reads (no
/// `SA_RESTART`), so a following reader can finish its output and report its counts. The
/// command line's own: the daemon, which runs enrichers beside its tokio signal handling,
/// stops them through their [`Stop`] instead.
fn stop_on_signals() -> Stop {
    let stop = SIGNALLED.get_or_init(Stop::default).clone();
    // SAFETY: the handler only loads and stores atomics (async-signal-safe); the sigaction
    // struct is zeroed then filled with valid values.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = request_stop as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    stop
}
