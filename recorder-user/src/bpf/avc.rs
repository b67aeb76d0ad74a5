//! SELinux denials from the `avc:selinux_audited` tracepoint, for the log enricher.

use std::path::Path;

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::TracePoint,
};
use recorder_ebpf::{
    AVC_COUNTER_DROPPED, AVC_COUNTER_TRUNCATED, AVC_COUNTER_UNREADABLE, AVC_COUNTERS_MAP,
    AVC_EVENTS_MAP, AVC_PROGRAM,
};

use super::{
    BpfError, avc_format, load_object,
    maps::{open_err, per_cpu_array, slot_err},
};

/// Where SELinux is on: denied decisions from the tracepoint `avc:selinux_audited`
/// (`syscribe_avc` → the `AVC_EVENTS` ring buffer), for the log enricher beside audit.
/// Attached while this lives. Records are decoded by the log enricher (`audit::avc_trace`).
pub struct AvcTracer {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

/// The tracepoint's format file, where tracefs is mounted.
pub const AVC_FORMAT_PATHS: [&str; 2] = [
    "/sys/kernel/tracing/events/avc/selinux_audited/format",
    "/sys/kernel/debug/tracing/events/avc/selinux_audited/format",
];

impl AvcTracer {
    /// Loads the object and attaches `syscribe_avc` (only that program), after checking the
    /// running kernel's format of the tracepoint (`format`: its tracefs `format` file's text)
    /// against the offsets the program reads.
    pub fn start(btf_path: &Path, format: &str) -> Result<Self, BpfError> {
        avc_format::check_format(format).map_err(|reason| BpfError::AvcFormat { reason })?;
        let mut ebpf = load_object(btf_path)?;
        let prog: &mut TracePoint = ebpf
            .program_mut(AVC_PROGRAM)
            .ok_or(BpfError::Missing {
                what: "program",
                name: AVC_PROGRAM,
            })?
            .try_into()
            .map_err(|source| BpfError::Program {
                name: AVC_PROGRAM,
                source,
            })?;
        prog.load().map_err(|source| BpfError::Program {
            name: AVC_PROGRAM,
            source,
        })?;
        prog.attach("avc", "selinux_audited")
            .map_err(|source| BpfError::Program {
                name: AVC_PROGRAM,
                source,
            })?;
        let ring = ebpf.take_map(AVC_EVENTS_MAP).ok_or(BpfError::Missing {
            what: "map",
            name: AVC_EVENTS_MAP,
        })?;
        let ring = RingBuf::try_from(ring).map_err(open_err(AVC_EVENTS_MAP))?;
        Ok(Self { ebpf, ring })
    }

    /// The ring buffer's descriptor: readable when records are waiting.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.ring.as_fd()
    }

    /// Hands each waiting record's bytes to `each`; returns how many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            each(&item);
            n += 1;
        }
        n
    }

    /// The kernel side's counters, summed over CPUs: (dropped, truncated, unreadable).
    pub fn counters(&mut self) -> Result<(u64, u64, u64), BpfError> {
        let counters = per_cpu_array(&mut self.ebpf, AVC_COUNTERS_MAP)?;
        let mut sum = [0u64; 3];
        for (i, index) in [
            AVC_COUNTER_DROPPED,
            AVC_COUNTER_TRUNCATED,
            AVC_COUNTER_UNREADABLE,
        ]
        .into_iter()
        .enumerate()
        {
            let values =
                counters
                    .get(&index, 0)
                    .map_err(slot_err(AVC_COUNTERS_MAP, "read", index))?;
            sum[i] = values.iter().sum();
        }
        Ok((sum[0], sum[1], sum[2]))
    }
}
