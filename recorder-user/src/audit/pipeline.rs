//! The enricher pipeline, source-independent: audit lines in, enriched lines out. Used by
//! `syscribe enrich` and by the daemon.
//!
//! line → parse → (denial) resolve pid → container → pod names → enrich → metrics →
//! filters → aggregation, or each source's fair share of printed lines (see [`super::fair`])
//! → the sink.
//!
//! Records of one event share a serial. An AVC (SELinux or AppArmor) has no `exe=`: it waits
//! (bounded, briefly) for its event's SYSCALL record, which names the executable and the
//! syscall, or for EOE; it goes out alone when neither comes within [`Pipeline::GROUP_WAIT`]
//! (without audit rules the kernel writes no SYSCALL record). Seccomp records are complete
//! and go out at once.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Map, Value};

use super::{
    avc_trace::{Pairing, Side},
    enrich::{Enriched, SyscallNames, enrich},
    fair::{FairShare, Share},
    filter::{Aggregator, FilterRule, keeps},
    metrics::Metrics,
    parse::{Denial, EventId, Parsed, parse_line},
    tap::AvcTap,
};
use crate::resolve::{
    container::ContainerRef,
    process::{BootClock, ProcResolver},
    runtime::RuntimeNames,
};

/// Where output lines go.
pub trait Sink {
    /// A line as enriched (no filters or aggregation configured: the fast path).
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()>;
    /// A line as fields (after filters; aggregated lines carry `count`).
    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()>;
}

/// What the pipeline saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub lines: u64,
    pub denials: u64,
    pub unparsable: u64,
    pub filtered: u64,
    /// AVCs completed by their event's SYSCALL record.
    pub grouped: u64,
    /// AVCs sent out before their SYSCALL record came: too many were waiting.
    pub group_overflow: u64,
    /// Denials read from the `avc:selinux_audited` tracepoint.
    pub avc_traced: u64,
}

/// What the AVC tracepoint's kernel side counted (given to [`Pipeline::publish`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceCounts {
    /// Denials lost because the ring buffer was full.
    pub dropped: u64,
    /// Denials with a context or class cut to its bound.
    pub truncated: u64,
    /// Trace entries the program could not read.
    pub unreadable: u64,
    /// Ring-buffer records that did not decode.
    pub undecodable: u64,
}

/// What the source dropped or could not take (given to [`Pipeline::publish`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceCounts {
    /// Records the source lost (kernel log overwritten, netlink socket overflowed).
    pub lost: u64,
    /// Records the netlink socket dropped because it was full (its drop counter).
    pub overflows: u64,
    /// Input lines dropped for being too long.
    pub too_long: u64,
    /// Records the kernel itself dropped meanwhile (its audit status' `lost`).
    pub kernel_lost: u64,
}

pub struct Options {
    pub node: Option<String>,
    pub filters: Vec<FilterRule>,
    /// Emit aggregated lines every this often (`Duration::ZERO`: only at the end).
    pub aggregate: Option<Duration>,
    pub metrics: Option<Arc<Mutex<Metrics>>>,
    /// Printed lines per second per source (0: no limit) and at once; see [`super::fair`].
    pub per_source_rate: u32,
    pub per_source_burst: u32,
    /// Where pods' AVCs go for SELinux recordings (the daemon's), before filters and shares.
    pub avc_tap: Option<AvcTap>,
}

struct Waiting {
    since: Instant,
    event: EventId,
    line: Enriched,
}

pub struct Pipeline {
    options: Options,
    node: Option<Arc<str>>,
    resolver: ProcResolver,
    runtime: RuntimeNames,
    names: SyscallNames,
    clock: BootClock,
    aggregator: Option<(Aggregator, Instant)>,
    fair: FairShare,
    /// A source's key, built per line without allocating.
    key: String,
    waiting: VecDeque<Waiting>,
    /// [`Self::GROUP_WAIT`]; a test that must not depend on the machine's speed waits longer.
    group_wait: Duration,
    /// While the AVC tracepoint is read too: pairs its denials with the audit path's.
    pairing: Option<Pairing>,
    pub counts: Counts,
}

impl Pipeline {
    /// How long an AVC waits for its SYSCALL record.
    pub const GROUP_WAIT: Duration = Duration::from_millis(50);
    /// How far back among the waiting AVCs a SYSCALL record looks for its event's.
    const GROUP_LOOKBACK: usize = 8;
    /// How many AVCs may wait at once.
    pub const MAX_WAITING: usize = 1024;

    pub fn new(options: Options, resolver: ProcResolver, runtime: RuntimeNames) -> Self {
        let aggregator = options
            .aggregate
            .map(|_| (Aggregator::default(), Instant::now()));
        Self {
            node: options.node.as_deref().map(Arc::from),
            fair: FairShare::new(options.per_source_rate, options.per_source_burst),
            key: String::with_capacity(128),
            options,
            resolver,
            runtime,
            names: SyscallNames::default(),
            clock: BootClock::default(),
            aggregator,
            waiting: VecDeque::new(),
            group_wait: Self::GROUP_WAIT,
            pairing: None,
            counts: Counts::default(),
        }
    }

    /// From now on SELinux denials come from the AVC tracepoint as well: each denial seen by
    /// both is printed once (see [`Pairing`]).
    pub fn pair_avcs(&mut self) {
        self.pairing.get_or_insert_with(Pairing::default);
    }

    /// Whether this AVC is the second copy of a denial the other side already gave.
    fn avc_duplicate(&mut self, denial: &Denial, side: Side, now: Instant) -> bool {
        match (&mut self.pairing, denial) {
            (Some(pairing), Denial::Selinux(avc)) => {
                pairing.is_duplicate(Pairing::key(avc), side, now)
            }
            _ => false,
        }
    }

    /// `record` enriched with its container and, where the runtime or the pod index knows
    /// them, the container's namespace, pod and name.
    fn enrich_named(
        &mut self,
        record: super::parse::AuditRecord,
        container: Option<&ContainerRef>,
    ) -> Enriched {
        let mut line = enrich(record, self.node.as_ref(), container, &mut self.names);
        if let Some(names) = container.and_then(|c| self.runtime.names_of(&c.container_id)) {
            line.namespace = names.namespace;
            line.pod = names.pod;
            line.container = names.container;
        }
        line
    }

    /// A denial read from the AVC tracepoint (see [`super::avc_trace`]): resolved, enriched
    /// and printed as the audit path's AVCs are, at once (no SYSCALL record will follow).
    pub fn traced_avc(
        &mut self,
        record: super::parse::AuditRecord,
        boot_ns: u64,
        sink: &mut dyn Sink,
    ) -> std::io::Result<()> {
        self.counts.avc_traced += 1;
        let now = Instant::now();
        if self.avc_duplicate(&record.denial, Side::Trace, now) {
            return Ok(());
        }
        let pid = match &record.denial {
            Denial::Selinux(a) => a.pid,
            _ => None,
        };
        let container = pid.and_then(|pid| self.resolver.container_of(pid, boot_ns, now));
        let line = self.enrich_named(record, container.as_ref());
        self.emit(&line, sink)
    }

    pub fn resolver(&self) -> &ProcResolver {
        &self.resolver
    }

    /// Handles one input line.
    pub fn line(&mut self, line: &str, sink: &mut dyn Sink) -> std::io::Result<()> {
        self.counts.lines += 1;
        match parse_line(line) {
            Ok(Parsed::Record(record))
                if self.avc_duplicate(&record.denial, Side::Audit, Instant::now()) =>
            {
                self.counts.denials += 1;
            }
            Ok(Parsed::Record(record)) => {
                self.counts.denials += 1;
                let pid = match &record.denial {
                    Denial::Seccomp(s) => Some(s.pid),
                    Denial::Selinux(a) => a.pid,
                    Denial::AppArmor(a) => a.pid,
                };
                let now = Instant::now();
                let at = self
                    .clock
                    .to_boot_ns(record.event.seconds, record.event.millis, now);
                let container = pid.and_then(|pid| self.resolver.container_of(pid, at, now));
                let is_seccomp = matches!(record.denial, Denial::Seccomp(_));
                let event = record.event;
                let line = self.enrich_named(*record, container.as_ref());
                if is_seccomp {
                    self.emit(&line, sink)?;
                } else {
                    if self.waiting.len() >= Self::MAX_WAITING
                        && let Some(oldest) = self.waiting.pop_front()
                    {
                        self.counts.group_overflow += 1;
                        self.emit(&oldest.line, sink)?;
                    }
                    self.waiting.push_back(Waiting {
                        since: now,
                        event,
                        line,
                    });
                }
            }
            Ok(Parsed::Syscall(context)) => {
                // An event's records arrive together: its AVCs are among the last few waiting.
                let mut at = self.waiting.len();
                let stop = at.saturating_sub(Self::GROUP_LOOKBACK);
                while at > stop {
                    at -= 1;
                    if self.waiting[at].event != context.event {
                        continue;
                    }
                    let Some(mut w) = self.waiting.remove(at) else {
                        break;
                    };
                    if w.line.executable.is_none() {
                        w.line.executable = context.exe.clone();
                    }
                    if let (Some(arch), Some(nr)) = (context.arch, context.syscall) {
                        w.line.syscall_id = Some(nr);
                        w.line.syscall_name = self.names.get(arch, nr);
                    }
                    self.counts.grouped += 1;
                    self.emit(&w.line, sink)?;
                }
            }
            Ok(Parsed::EndOfEvent(event)) => {
                while let Some(at) = self.waiting.iter().position(|w| w.event == event) {
                    if let Some(w) = self.waiting.remove(at) {
                        self.emit(&w.line, sink)?;
                    }
                }
            }
            Ok(Parsed::Ignored) => {}
            Err(err) => {
                self.counts.unparsable += 1;
                tracing::trace!(error = %err, "unparsable audit record");
            }
        }
        // Reading the clock for every line costs more than the wait is worth: every 64 lines
        // (and on every tick).
        if !self.waiting.is_empty() && self.counts.lines.is_multiple_of(64) {
            self.flush_waiting(false, sink)?;
        }
        Ok(())
    }

    /// Time passes (call it when the source is idle): AVCs that waited long enough go out,
    /// and aggregated lines when their interval is over.
    pub fn tick(&mut self, sink: &mut dyn Sink) -> std::io::Result<()> {
        self.flush_waiting(false, sink)?;
        if let Some(tap) = self.options.avc_tap.as_mut() {
            tap.end_burst();
        }
        if let (Some((agg, since)), Some(every)) =
            (self.aggregator.as_mut(), self.options.aggregate)
            && !every.is_zero()
            && since.elapsed() >= every
        {
            for fields in agg.drain() {
                sink.fields(&fields)?;
            }
            *since = Instant::now();
        }
        for summary in self.fair.drain() {
            sink.fields(&summary.fields())?;
        }
        Ok(())
    }

    /// The input ended: everything waiting goes out.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> std::io::Result<()> {
        self.flush_waiting(true, sink)?;
        if let Some((agg, _)) = self.aggregator.as_mut() {
            for fields in agg.drain() {
                sink.fields(&fields)?;
            }
        }
        for summary in self.fair.drain() {
            sink.fields(&summary.fields())?;
        }
        Ok(())
    }

    /// Lines counted in an aggregation's catch-all row (too many distinct keys).
    pub fn aggregate_overflow(&self) -> u64 {
        self.aggregator.as_ref().map_or(0, |(agg, _)| agg.overflow)
    }

    /// The AVC tap's drops (channel full or closed).
    pub fn avc_tap_dropped(&self) -> u64 {
        self.options.avc_tap.as_ref().map_or(0, AvcTap::dropped)
    }

    /// Lines held back by the per-source share (and summarised instead).
    pub fn suppressed(&self) -> u64 {
        self.fair.suppressed
    }

    /// Lines of sources beyond the per-source table (sharing one bucket).
    pub fn sources_overflow(&self) -> u64 {
        self.fair.sources_overflow
    }

    /// Publishes the counters to the metrics (if any), with the source's.
    pub fn publish(&self, source: SourceCounts) {
        self.publish_with(source, None);
    }

    /// As [`Self::publish`], with the AVC tracepoint's counts while it is read.
    pub fn publish_with(&self, source: SourceCounts, trace: Option<TraceCounts>) {
        let Some(metrics) = &self.options.metrics else {
            return;
        };
        let c = self.counts;
        let r = self.resolver.counts;
        if let Ok(mut m) = metrics.lock() {
            m.totals = vec![
                (
                    "syscribe_enricher_lines_total",
                    "Input lines read.",
                    c.lines,
                ),
                (
                    "syscribe_enricher_denials_total",
                    "Denial records parsed.",
                    c.denials,
                ),
                (
                    "syscribe_enricher_unparsable_total",
                    "Audit records that could not be parsed.",
                    c.unparsable,
                ),
                (
                    "syscribe_enricher_filtered_total",
                    "Lines dropped by filters.",
                    c.filtered,
                ),
                (
                    "syscribe_enricher_lost_total",
                    "Records the source lost (kernel log overwritten, netlink socket overflowed).",
                    source.lost,
                ),
                (
                    "syscribe_enricher_socket_overflows_total",
                    "Records the netlink socket dropped because it was full.",
                    source.overflows,
                ),
                (
                    "syscribe_enricher_kernel_lost_total",
                    "Records the kernel's audit dropped itself (rate limit, backlog) while read.",
                    source.kernel_lost,
                ),
                (
                    "syscribe_enricher_too_long_total",
                    "Input lines dropped for being longer than the line bound.",
                    source.too_long,
                ),
                (
                    "syscribe_enricher_aggregate_overflow_total",
                    "Denials aggregated into the (other) row: more distinct keys than the table.",
                    self.aggregate_overflow(),
                ),
                (
                    "syscribe_enricher_suppressed_total",
                    "Denials not printed beyond their source's share, summarised with counts.",
                    self.fair.suppressed,
                ),
                (
                    "syscribe_enricher_sources_overflow_total",
                    "Denials of sources beyond the per-source table (one shared share).",
                    self.fair.sources_overflow,
                ),
                (
                    "syscribe_enricher_avc_group_overflow_total",
                    "AVCs sent before their SYSCALL record: too many were waiting.",
                    c.group_overflow,
                ),
                (
                    "syscribe_enricher_avc_tap_dropped_total",
                    "SELinux denials of pods not handed to the recordings: the daemon's channel was full.",
                    self.avc_tap_dropped(),
                ),
                (
                    "syscribe_enricher_syscall_name_cache_resets_total",
                    "Times the syscall name cache was full and started over.",
                    self.names.resets,
                ),
                (
                    "syscribe_enricher_resolved_live_total",
                    "Records resolved from a live process.",
                    r.live,
                ),
                (
                    "syscribe_enricher_resolved_exited_total",
                    "Records resolved from the kernel's memory of exits.",
                    r.exited,
                ),
                (
                    "syscribe_enricher_pid_reused_total",
                    "Records whose pid was already reused.",
                    r.pid_reused,
                ),
                (
                    "syscribe_enricher_unresolved_total",
                    "Records whose process could not be resolved.",
                    r.unresolved,
                ),
            ];
            if let Some(t) = trace {
                let pairing = self.pairing.as_ref();
                m.totals.extend([
                    (
                        "syscribe_enricher_avc_traced_total",
                        "SELinux denials read from the avc:selinux_audited tracepoint.",
                        c.avc_traced,
                    ),
                    (
                        "syscribe_enricher_avc_trace_dropped_total",
                        "SELinux denials the tracepoint lost: its ring buffer was full.",
                        t.dropped,
                    ),
                    (
                        "syscribe_enricher_avc_trace_truncated_total",
                        "Traced SELinux denials with a context or class cut to its bound.",
                        t.truncated,
                    ),
                    (
                        "syscribe_enricher_avc_trace_unreadable_total",
                        "Tracepoint entries the eBPF program could not read, or records that did not decode.",
                        t.unreadable + t.undecodable,
                    ),
                    (
                        "syscribe_enricher_avc_duplicates_total",
                        "SELinux denials seen by both the tracepoint and audit, printed once.",
                        pairing.map_or(0, |p| p.duplicates),
                    ),
                ]);
            }
        }
    }

    fn flush_waiting(&mut self, all: bool, sink: &mut dyn Sink) -> std::io::Result<()> {
        while let Some(front) = self.waiting.front() {
            if !all && front.since.elapsed() < self.group_wait {
                break;
            }
            if let Some(w) = self.waiting.pop_front() {
                self.emit(&w.line, sink)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, line: &Enriched, sink: &mut dyn Sink) -> std::io::Result<()> {
        // Recordings see every AVC, whatever the filters, aggregation or shares print.
        if let Some(tap) = self.options.avc_tap.as_mut() {
            tap.offer(line);
        }
        if let Some(metrics) = &self.options.metrics
            && let Ok(mut m) = metrics.lock()
        {
            m.observe(line);
        }
        if self.options.filters.is_empty() && self.aggregator.is_none() {
            if !self.fair_share(line, sink)? {
                return Ok(());
            }
            return sink.enriched(line);
        }
        let fields = fields_of(line);
        if !keeps(&self.options.filters, &fields) {
            self.counts.filtered += 1;
            return Ok(());
        }
        match self.aggregator.as_mut() {
            Some((agg, _)) => {
                agg.add(fields);
                Ok(())
            }
            None => {
                if !self.fair_share(line, sink)? {
                    return Ok(());
                }
                sink.fields(&fields)
            }
        }
    }

    /// Whether `line` is within its source's share; a summary of what its source had held
    /// back goes out first.
    fn fair_share(&mut self, line: &Enriched, sink: &mut dyn Sink) -> std::io::Result<bool> {
        if self.fair.is_off() {
            return Ok(true);
        }
        let (kind, id) = source_of(line);
        self.key.clear();
        self.key.push_str(kind);
        self.key.push(' ');
        self.key.push_str(id);
        let at_ms = line
            .timestamp
            .seconds
            .saturating_mul(1000)
            .saturating_add(u64::from(line.timestamp.millis));
        let share = self.fair.admit(&self.key, at_ms, || {
            match (kind, &line.namespace, &line.pod) {
                ("pod", Some(namespace), Some(pod)) => format!("pod {namespace}/{pod}"),
                _ => format!("{kind} {id}"),
            }
        });
        match share {
            Share::Suppress => Ok(false),
            Share::Print(summary) => {
                if let Some(summary) = summary {
                    sink.fields(&summary.fields())?;
                }
                Ok(true)
            }
        }
    }
}

/// Where a denial comes from, for fair shares: its pod, else its container, else its
/// executable (or command name, or nothing known).
fn source_of(line: &Enriched) -> (&'static str, &str) {
    if let Some(uid) = &line.pod_uid {
        ("pod", uid)
    } else if let Some(id) = &line.container_id {
        ("container", id)
    } else if let Some(exe) = &line.executable {
        ("executable", exe)
    } else if let Some(comm) = &line.comm {
        ("command", comm)
    } else {
        ("unknown", "source")
    }
}

/// The line's fields, as printed.
pub fn fields_of(enriched: &Enriched) -> Map<String, Value> {
    match serde_json::to_value(enriched).expect("serializes") {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
