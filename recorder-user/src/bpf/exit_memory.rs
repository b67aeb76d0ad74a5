//! The kernel's memory of exited processes, for the log enricher.

use std::path::Path;

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError},
};
use recorder_ebpf::{EXITED_MAP, ExitEntry, TASK_EXIT_PROGRAM};

use super::{
    BpfError, load_object,
    maps::{map, open_err, program},
};

/// The kernel's memory of exited processes (`sched_process_exit` → `EXITED`), for the log
/// enricher: a process killed by its seccomp filter is gone from /proc before its denial is
/// read, but its cgroup is still known here. Attached while this lives.
pub struct ExitMemory {
    ebpf: Ebpf,
}

impl ExitMemory {
    /// Loads the object and attaches `syscribe_task_exit` (only that program).
    pub fn start(btf_path: &Path) -> Result<Self, BpfError> {
        let mut ebpf = load_object(btf_path)?;
        let prog = program(&mut ebpf, TASK_EXIT_PROGRAM)?;
        prog.load().map_err(|source| BpfError::Program {
            name: TASK_EXIT_PROGRAM,
            source,
        })?;
        prog.attach("sched_process_exit")
            .map_err(|source| BpfError::Program {
                name: TASK_EXIT_PROGRAM,
                source,
            })?;
        Ok(Self { ebpf })
    }

    /// The last exit of process `pid` still remembered.
    pub fn exited(&mut self, pid: u32) -> Result<Option<ExitEntry>, BpfError> {
        let map: HashMap<&mut MapData, u32, ExitEntry> =
            HashMap::try_from(map(&mut self.ebpf, EXITED_MAP)?).map_err(open_err(EXITED_MAP))?;
        match map.get(&pid, 0) {
            Ok(entry) => Ok(Some(entry)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(BpfError::Map {
                map: EXITED_MAP,
                op: "look up",
                cgroup_id: u64::from(pid),
                source,
            }),
        }
    }
}

impl crate::resolve::process::ExitLookup for ExitMemory {
    fn exited(&mut self, pid: u32) -> Option<(u64, u64)> {
        match ExitMemory::exited(self, pid) {
            Ok(entry) => entry.map(|e| (e.cgroup_id, e.boot_ns)),
            Err(err) => {
                tracing::warn!(error = %err, pid, "cannot read the exit memory");
                None
            }
        }
    }
}
