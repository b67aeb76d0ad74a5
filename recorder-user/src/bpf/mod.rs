//! Everything that touches aya: loading the recorder object, attaching it to `sys_enter`, the
//! `RECORDED` map, and forwarding the eBPF side's aya-log diagnostics into tracing.

use std::{io, path::Path};

use aya::{
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Endianness,
    maps::{HashMap, MapData, MapError, PerCpuHashMap},
    programs::{ProgramError, RawTracePoint, raw_trace_point::RawTracePointLinkId},
};
use aya_log::EbpfLogger;
use recorder_ebpf::{
    FLOOR_PROGRAM, MAX_RECORDED_CGROUPS, OUT_OF_RANGE_MAP, RECORDED_MAP, RECORDER_PROGRAM,
    SyscallSet,
};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tracing::Instrument as _;

/// The eBPF object built by build.rs (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/recorder"));

#[derive(Debug, Error)]
pub enum BpfError {
    #[error(
        "this syscribe was built with AYA_BUILD_SKIP=1 and carries no eBPF program; rebuild without it"
    )]
    NotBuilt,
    #[error("cannot read the kernel's BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)", path = .path.display())]
    Btf {
        path: std::path::PathBuf,
        #[source]
        source: BtfError,
    },
    #[error("cannot load the eBPF recorder: {source}")]
    Load {
        #[source]
        source: EbpfError,
    },
    #[error("the eBPF object has no {what} named {name}")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "the recording table is full ({MAX_RECORDED_CGROUPS} cgroups are being recorded); cgroup {cgroup_id} was not added"
    )]
    TableFull { cgroup_id: u64 },
    #[error("map {map}: cannot {op} cgroup {cgroup_id}: {source}")]
    Map {
        map: &'static str,
        op: &'static str,
        cgroup_id: u64,
        #[source]
        source: MapError,
    },
    #[error("eBPF diagnostics: {source}")]
    Log {
        #[source]
        source: io::Error,
    },
}

/// The loaded recorder. Attached to `sys_enter` only while [`Recorder::attach`]ed: a machine
/// where nothing is recorded runs no syscribe program at all.
pub struct Recorder {
    ebpf: Ebpf,
    link: Option<RawTracePointLinkId>,
}

impl Recorder {
    /// Loads (verifies) the programs and creates the maps, using the kernel BTF at `btf_path`.
    /// Nothing is attached yet. Returns the eBPF diagnostics logger too, to be drained with
    /// [`forward_logs`].
    pub fn load(
        btf_path: &Path,
    ) -> Result<(Self, Option<EbpfLogger<&'static dyn log::Log>>), BpfError> {
        if OBJECT.is_empty() {
            return Err(BpfError::NotBuilt);
        }
        let btf =
            Btf::parse_file(btf_path, Endianness::default()).map_err(|source| BpfError::Btf {
                path: btf_path.to_owned(),
                source,
            })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|source| BpfError::Load { source })?;
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %err, "eBPF diagnostics unavailable");
                None
            }
        };
        for name in [RECORDER_PROGRAM, FLOOR_PROGRAM] {
            program(&mut ebpf, name)?
                .load()
                .map_err(|source| BpfError::Program { name, source })?;
        }
        Ok((Self { ebpf, link: None }, logger))
    }

    /// Starts recording the cgroup with this v2 id (its set starts empty).
    pub fn watch(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        const BPF_NOEXIST: u64 = 1;
        let mut map = self.recorded()?;
        match map.insert(cgroup_id, SyscallSet::EMPTY, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::E2BIG) =>
            {
                Err(BpfError::TableFull { cgroup_id })
            }
            Err(source) => Err(BpfError::Map {
                map: RECORDED_MAP,
                op: "add",
                cgroup_id,
                source,
            }),
        }
    }

    /// What the cgroup did so far, and how many syscall entries were out of range.
    pub fn read(&mut self, cgroup_id: u64) -> Result<(SyscallSet, u64), BpfError> {
        let set = self
            .recorded()?
            .get(&cgroup_id, 0)
            .map_err(|source| BpfError::Map {
                map: RECORDED_MAP,
                op: "read",
                cgroup_id,
                source,
            })?;
        let out_of_range = match self.out_of_range()?.get(&cgroup_id, 0) {
            Ok(per_cpu) => per_cpu.iter().sum(),
            Err(MapError::KeyNotFound) => 0,
            Err(source) => {
                return Err(BpfError::Map {
                    map: OUT_OF_RANGE_MAP,
                    op: "read",
                    cgroup_id,
                    source,
                });
            }
        };
        Ok((set, out_of_range))
    }

    /// Stops recording the cgroup and frees its entries.
    pub fn unwatch(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        self.recorded()?
            .remove(&cgroup_id)
            .map_err(|source| BpfError::Map {
                map: RECORDED_MAP,
                op: "remove",
                cgroup_id,
                source,
            })?;
        match self.out_of_range()?.remove(&cgroup_id) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(source) => Err(BpfError::Map {
                map: OUT_OF_RANGE_MAP,
                op: "remove",
                cgroup_id,
                source,
            }),
        }
    }

    /// Attaches the recorder to `sys_enter` (idempotent).
    pub fn attach(&mut self) -> Result<(), BpfError> {
        if self.link.is_none() {
            self.link = Some(attach(&mut self.ebpf, RECORDER_PROGRAM)?);
        }
        Ok(())
    }

    /// Detaches the recorder: from here on syscalls cost nothing.
    pub fn detach(&mut self) -> Result<(), BpfError> {
        if let Some(link) = self.link.take() {
            program(&mut self.ebpf, RECORDER_PROGRAM)?
                .detach(link)
                .map_err(|source| BpfError::Program {
                    name: RECORDER_PROGRAM,
                    source,
                })?;
        }
        Ok(())
    }

    /// Attaches the empty program (the benchmark's floor). It stays attached until `self` drops.
    pub fn attach_floor(&mut self) -> Result<(), BpfError> {
        attach(&mut self.ebpf, FLOOR_PROGRAM).map(drop)
    }

    fn recorded(&mut self) -> Result<HashMap<&mut MapData, u64, SyscallSet>, BpfError> {
        let map = self.map(RECORDED_MAP)?;
        HashMap::try_from(map).map_err(|source| BpfError::Map {
            map: RECORDED_MAP,
            op: "open",
            cgroup_id: 0,
            source,
        })
    }

    fn out_of_range(&mut self) -> Result<PerCpuHashMap<&mut MapData, u64, u64>, BpfError> {
        let map = self.map(OUT_OF_RANGE_MAP)?;
        PerCpuHashMap::try_from(map).map_err(|source| BpfError::Map {
            map: OUT_OF_RANGE_MAP,
            op: "open",
            cgroup_id: 0,
            source,
        })
    }

    fn map(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, BpfError> {
        self.ebpf
            .map_mut(name)
            .ok_or(BpfError::Missing { what: "map", name })
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut RawTracePoint, BpfError> {
    ebpf.program_mut(name)
        .ok_or(BpfError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(|source| BpfError::Program { name, source })
}

fn attach(ebpf: &mut Ebpf, name: &'static str) -> Result<RawTracePointLinkId, BpfError> {
    program(ebpf, name)?
        .attach("sys_enter")
        .map_err(|source| BpfError::Program { name, source })
}

/// Spawns a task that forwards the eBPF side's aya-log records into tracing (through `log`).
pub fn forward_logs(
    logger: EbpfLogger<&'static dyn log::Log>,
) -> Result<tokio::task::JoinHandle<()>, BpfError> {
    // SAFETY: the logger owns its ring buffer's fd, which stays open and unchanged until the
    // AsyncFd (which owns the logger) drops.
    let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
        .map_err(|err| BpfError::Log { source: err.into() })?;
    Ok(tokio::spawn(
        async move {
            loop {
                let mut guard = match fd.readable_mut().await {
                    Ok(guard) => guard,
                    Err(err) => {
                        tracing::warn!(error = %err, "eBPF diagnostics stopped");
                        return;
                    }
                };
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        }
        .instrument(tracing::info_span!("ebpf_log")),
    ))
}
