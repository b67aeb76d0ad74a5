//! Recording the capabilities recorded cgroups' tasks use: the program `syscribe_capable` on
//! the raw tracepoint `cap_capable` (kernel side: see `recorder_ebpf::CAPABLE_PROGRAM`),
//! attached with the recorder and detached with it. What it marks is read with each set
//! (`SyscallSet::capabilities`). The kernel side tells silent probes from real checks by
//! their callers: the code ranges of the probing functions, found here in /proc/kallsyms; and
//! checks made with another's credentials (overlayfs' mounter's) by the task's `real_cred`,
//! whose place in `task_struct` is found here in the kernel's BTF.

use std::{
    io::{BufRead, BufReader},
    path::Path,
};

use aya::{
    Ebpf,
    maps::Array,
    programs::{
        RawTracePoint,
        links::{FdLink, PinnedLink},
        raw_trace_point::RawTracePointLinkId,
    },
};
use recorder_ebpf::{
    CAP_PROBES_MAP, CAP_TASK_MAP, CAPABLE_PROGRAM, CAPABLE_TRACEPOINT, CodeRange, MAX_CAP_PROBES,
};

use super::{
    BpfError, Recorder, btf,
    maps::{map, open_err, program as program_named, slot_err},
};

/// The kernel functions whose capability checks are silent probes (`CAP_OPT_NOAUDIT`, Linux
/// 6.18): the `*_noaudit` wrappers and the overcommit check (which tail-calls `cap_capable`
/// from `security_vm_enough_memory_mm`, so that caller is on the stack instead of it).
pub const PROBING_FUNCTIONS: [&str; 5] = [
    "ns_capable_noaudit",
    "has_ns_capability_noaudit",
    "has_capability_noaudit",
    "cap_vm_enough_memory",
    "security_vm_enough_memory_mm",
];

/// Where the kernel lists its symbols.
const KALLSYMS: &str = "/proc/kallsyms";
/// Lines of /proc/kallsyms read at most (a kernel has ~200k; modules add some).
const MAX_KALLSYMS_LINES: usize = 4_000_000;

/// The capability program's state in a [`Recorder`].
pub(super) struct Capable {
    /// Why capabilities are not recorded (None: they are, whenever the recorder is attached).
    unavailable: Option<String>,
    /// While attached.
    link: Option<Link>,
}

enum Link {
    Owned(RawTracePointLinkId),
    /// Pinned mode: the link outlives this process, like the recorder's own.
    Pinned(PinnedLink),
}

impl Capable {
    /// Loads the program and gives it the probing functions' code and where a task's
    /// `real_cred` is (from the kernel BTF at `btf_path`, the recorder's); says once why
    /// capabilities will not be recorded, or may be overstated.
    pub(super) fn load(ebpf: &mut Ebpf, btf_path: &Path) -> Self {
        let loaded = program(ebpf).and_then(|prog| {
            prog.load().map_err(|source| BpfError::Program {
                name: CAPABLE_PROGRAM,
                source,
            })
        });
        if let Err(err) = loaded {
            return Self::unavailable(err.to_string());
        }
        let ranges = std::fs::File::open(KALLSYMS)
            .map_err(|err| err.to_string())
            .and_then(|file| probe_ranges(BufReader::new(file)));
        match ranges {
            Ok(ranges) if !ranges.is_empty() => {
                if let Err(err) = write_ranges(ebpf, &ranges) {
                    return Self::unavailable(err.to_string());
                }
            }
            found => tracing::warn!(
                reason = %found.err().unwrap_or_else(|| format!("none of {PROBING_FUNCTIONS:?} in {KALLSYMS} (kernel addresses hidden by kernel.kptr_restrict?)")),
                "the kernel's silent capability probes cannot be told from real checks: recorded capabilities may include some a container has but does not need"
            ),
        }
        let own_credentials = btf::member_offset_in(btf_path, "task_struct", "real_cred")
            .map_err(|err| err.to_string())
            .and_then(|offset| write_task_offset(ebpf, offset).map_err(|err| err.to_string()));
        if let Err(reason) = own_credentials {
            tracing::warn!(
                reason = %reason,
                "capability checks the kernel makes with another's credentials (overlayfs checks its mounter's on a container's root layers) cannot be told from the container's own: recorded capabilities may include CAP_SYS_ADMIN and others a container neither has nor needs"
            );
        }
        Self {
            unavailable: None,
            link: None,
        }
    }

    fn unavailable(reason: String) -> Self {
        tracing::warn!(reason = %reason, "the capabilities containers use are not recorded");
        Self {
            unavailable: Some(reason),
            link: None,
        }
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut RawTracePoint, BpfError> {
    program_named(ebpf, CAPABLE_PROGRAM)
}

fn write_ranges(ebpf: &mut Ebpf, ranges: &[CodeRange]) -> Result<(), BpfError> {
    let mut map: Array<_, CodeRange> =
        Array::try_from(map(ebpf, CAP_PROBES_MAP)?).map_err(open_err(CAP_PROBES_MAP))?;
    for (i, range) in (0..MAX_CAP_PROBES).zip(ranges) {
        map.set(i, *range, 0)
            .map_err(slot_err(CAP_PROBES_MAP, "write", i))?;
    }
    Ok(())
}

fn write_task_offset(ebpf: &mut Ebpf, offset: u64) -> Result<(), BpfError> {
    let mut map: Array<_, u64> =
        Array::try_from(map(ebpf, CAP_TASK_MAP)?).map_err(open_err(CAP_TASK_MAP))?;
    map.set(0, offset, 0)
        .map_err(slot_err(CAP_TASK_MAP, "write", 0))
}

/// The code ranges of [`PROBING_FUNCTIONS`] in a /proc/kallsyms listing: from a function's
/// address to the next text symbol's. Functions absent (inlined) are left out; all-zero
/// addresses (hidden by `kernel.kptr_restrict`) give none.
pub fn probe_ranges(kallsyms: impl BufRead) -> Result<Vec<CodeRange>, String> {
    let mut text: Vec<u64> = Vec::new();
    let mut wanted: Vec<u64> = Vec::new();
    for (n, line) in kallsyms.lines().enumerate() {
        if n >= MAX_KALLSYMS_LINES {
            return Err(format!(
                "{KALLSYMS} has more than {MAX_KALLSYMS_LINES} lines"
            ));
        }
        let line = line.map_err(|err| format!("{KALLSYMS} line {}: {err}", n + 1))?;
        let mut fields = line.split_whitespace();
        let (Some(address), Some(kind), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(address) = u64::from_str_radix(address, 16) else {
            continue;
        };
        if address == 0 {
            continue;
        }
        text.push(address);
        // Module symbols carry a fourth field ("[module]"): ours are all built in.
        if fields.next().is_none() && PROBING_FUNCTIONS.contains(&name) {
            wanted.push(address);
        }
    }
    text.sort_unstable();
    text.dedup();
    let mut ranges: Vec<CodeRange> = wanted
        .into_iter()
        .filter_map(|start| {
            let next = text.partition_point(|&a| a <= start);
            text.get(next).map(|&end| CodeRange { start, end })
        })
        .collect();
    ranges.sort_unstable_by_key(|r| r.start);
    ranges.dedup();
    ranges.truncate(MAX_CAP_PROBES as usize);
    Ok(ranges)
}

impl Recorder {
    /// Attaches the capability program (with the recorder; a failure is said and leaves
    /// capabilities unrecorded, the syscalls recorded all the same).
    pub(super) fn attach_capabilities(&mut self) {
        if self.capable.unavailable.is_some() || self.capable.link.is_some() {
            return;
        }
        match self.attach_capable_link() {
            Ok(link) => self.capable.link = Some(link),
            Err(err) => {
                let reason = err.to_string();
                tracing::warn!(reason = %reason, "the capabilities containers use are not recorded");
                self.capable.unavailable = Some(reason);
            }
        }
    }

    fn attach_capable_link(&mut self) -> Result<Link, BpfError> {
        let err = |source| BpfError::Program {
            name: CAPABLE_PROGRAM,
            source,
        };
        let prog = program(&mut self.ebpf)?;
        let id = prog.attach(CAPABLE_TRACEPOINT).map_err(err)?;
        let Some(dir) = &self.pin_dir else {
            return Ok(Link::Owned(id));
        };
        let link = FdLink::from(prog.take_link(id).map_err(err)?);
        let path = dir.join(format!("link-{CAPABLE_PROGRAM}"));
        // A previous syscribe's link: ours replaces it (both ran meanwhile; marks are
        // idempotent).
        if let Ok(old) = PinnedLink::from_pin(&path) {
            let _ = old.unpin();
        }
        link.pin(&path)
            .map(Link::Pinned)
            .map_err(|source| BpfError::PinLink { path, source })
    }

    /// Detaches the capability program (and removes its pin).
    pub(super) fn detach_capabilities(&mut self) -> Result<(), BpfError> {
        match self.capable.link.take() {
            None => Ok(()),
            Some(Link::Pinned(link)) => {
                let _ = link.unpin();
                Ok(())
            }
            Some(Link::Owned(id)) => {
                program(&mut self.ebpf)?
                    .detach(id)
                    .map_err(|source| BpfError::Program {
                        name: CAPABLE_PROGRAM,
                        source,
                    })
            }
        }
    }

    /// Whether the capabilities used are being recorded (the program is attached).
    pub fn records_capabilities(&self) -> bool {
        self.capable.link.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS_FIXTURE: &str = "\
ffffffff813660d0 T has_capability_noaudit
ffffffff81366130 T ns_capable_setid
ffffffff813661a0 T ns_capable
ffffffff81366280 T ns_capable_noaudit
ffffffff8120790e t ns_capable_noaudit.cold
ffffffff81366390 T has_ns_capability
ffffffff813663f0 T has_ns_capability_noaudit
ffffffff813664f0 T capable_wrt_inode_uidgid
ffffffff82a00000 D some_data
ffffffff81a85b30 T security_vm_enough_memory_mm
ffffffff81a85c00 t security_vm_enough_memory_mm.part.0
ffffffffc0001000 t ns_capable_noaudit\t[fake_module]
";

    #[test]
    fn probing_functions_end_where_the_next_text_symbol_starts() {
        let ranges = probe_ranges(KALLSYMS_FIXTURE.as_bytes()).unwrap();
        assert_eq!(
            ranges,
            [
                CodeRange {
                    start: 0xffffffff813660d0,
                    end: 0xffffffff81366130
                },
                CodeRange {
                    start: 0xffffffff81366280,
                    end: 0xffffffff81366390
                },
                CodeRange {
                    start: 0xffffffff813663f0,
                    end: 0xffffffff813664f0
                },
                CodeRange {
                    start: 0xffffffff81a85b30,
                    end: 0xffffffff81a85c00
                },
            ]
        );
    }

    #[test]
    fn hidden_addresses_give_no_ranges() {
        let hidden = "0000000000000000 T ns_capable_noaudit\n0000000000000000 T capable\n";
        assert_eq!(probe_ranges(hidden.as_bytes()).unwrap(), []);
        assert_eq!(probe_ranges("garbage\n\n".as_bytes()).unwrap(), []);
    }
}
