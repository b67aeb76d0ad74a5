//! Everything that touches aya: loading the eBPF object, the recorder (its `INDEX`, `SETS` and
//! discovery maps, attached to `sys_enter`), the enricher's exit memory (`EXITED`) and AVC
//! tracer (`AVC_EVENTS`), and forwarding the eBPF side's aya-log diagnostics into tracing.
//!
//! The seams: `recorder` (the [`Recorder`]: its maps, attaching and detaching), `exit_memory`
//! and `avc` (what the log enricher asks the kernel; `avc_format` checks the running kernel's
//! tracepoint format first), `ebpf_log` (aya-log into tracing), `maps` (typed access to the
//! object's maps and programs). Here: the object and how it is loaded.

use std::{io, path::Path};

use aya::{
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Endianness, maps::MapError, pin::PinError,
    programs::ProgramError,
};
use recorder_ebpf::{
    COLLIDED_MAP, COUNTERS_MAP, DISCOVERED_MAP, EXITED_MAP, FREE_SLOTS_MAP, GENERATION_MAP,
    INDEX_MAP, LAYOUT_MAP, OUT_OF_RANGE_MAP, PIN_LAYOUT, SETS_MAP, SUBTREE_LEVELS_MAP,
    SUBTREES_MAP, TASK_CACHE_MAP,
};
use thiserror::Error;

mod avc;
pub mod btf;
mod capable;
mod ebpf_log;
mod exit_memory;
mod maps;
mod recorder;

pub use avc::{AVC_FORMAT_PATHS, AvcTracer};
pub use ebpf_log::{EbpfLog, LogForwarder};
pub use exit_memory::ExitMemory;
pub use recorder::Recorder;

pub mod avc_format;

/// Bounds of the kernel maps.
pub use recorder_ebpf::{
    DISCOVERY_SLOTS, INDEX_SLOTS, MAX_RECORDED_CGROUPS, MAX_SUBTREE_LEVELS, MAX_SUBTREES,
    MAX_SYSCALLS, SET_FILTER_SEEN,
};

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
    #[error("{MAX_SUBTREES} subtrees are already being recorded; cgroup {cgroup_id} was not added")]
    SubtreesFull { cgroup_id: u64 },
    #[error(
        "the recorded subtrees already sit at {MAX_SUBTREE_LEVELS} different depths; cgroup {cgroup_id} (depth {level}) was not added"
    )]
    SubtreeLevelsFull { cgroup_id: u64, level: u32 },
    #[error("map {map}: cannot {op} slot {slot}: {source}")]
    Slot {
        map: &'static str,
        op: &'static str,
        slot: u32,
        #[source]
        source: MapError,
    },
    #[error("cgroup {cgroup_id} is not being recorded")]
    NotWatched { cgroup_id: u64 },
    #[error("map {map}: cannot {op} cgroup {cgroup_id}: {source}")]
    Map {
        map: &'static str,
        op: &'static str,
        cgroup_id: u64,
        #[source]
        source: MapError,
    },
    #[error("cannot count the possible CPUs: {source}")]
    Cpus {
        #[source]
        source: io::Error,
    },
    #[error("cannot create the pin directory {path}: {source}", path = .path.display())]
    Pin {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not on a bpf filesystem: mount one (mount -t bpf bpf /sys/fs/bpf) to keep recordings across restarts", path = .path.display())]
    NotBpffs { path: std::path::PathBuf },
    #[error("the kernel's avc:selinux_audited tracepoint is not the one syscribe reads: {reason}")]
    AvcFormat { reason: String },
    #[error("cannot pin a link at {path}: {source}", path = .path.display())]
    PinLink {
        path: std::path::PathBuf,
        #[source]
        source: PinError,
    },
    #[error("eBPF diagnostics: {source}")]
    Log {
        #[source]
        source: io::Error,
    },
}

/// Parses the kernel BTF and loads the object: maps created, no program loaded yet.
pub(super) fn load_object(btf_path: &Path) -> Result<Ebpf, BpfError> {
    load_object_pinned(btf_path, None)
}

/// The recorder's maps, by name: what is pinned in pinned mode.
const PINNED_MAPS: [&str; 14] = [
    INDEX_MAP,
    SETS_MAP,
    COLLIDED_MAP,
    OUT_OF_RANGE_MAP,
    SUBTREES_MAP,
    SUBTREE_LEVELS_MAP,
    LAYOUT_MAP,
    FREE_SLOTS_MAP,
    DISCOVERED_MAP,
    COUNTERS_MAP,
    TASK_CACHE_MAP,
    GENERATION_MAP,
    "GENERATION_EVENTS",
    EXITED_MAP,
];

/// With `pin_dir`, every recorder map is opened from `pin_dir/<name>` when pinned there, else
/// created and pinned there.
pub(super) fn load_object_pinned(
    btf_path: &Path,
    pin_dir: Option<&Path>,
) -> Result<Ebpf, BpfError> {
    if OBJECT.is_empty() {
        return Err(BpfError::NotBuilt);
    }
    let btf = Btf::parse_file(btf_path, Endianness::default()).map_err(|source| BpfError::Btf {
        path: btf_path.to_owned(),
        source,
    })?;
    let mut loader = EbpfLoader::new();
    loader.btf(Some(&btf));
    if let Some(dir) = pin_dir {
        for name in PINNED_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    loader
        .load(OBJECT)
        .map_err(|source| BpfError::Load { source })
}

/// Whether `dir` holds maps a recorder of this layout pinned (to adopt). Maps pinned there
/// with another layout (an older syscribe's) cannot be: their pins are removed (the kernel
/// frees them once the old programs' links are replaced), said in a warning.
pub(super) fn same_pin_layout(dir: &Path) -> Result<bool, BpfError> {
    if !dir.join(SUBTREES_MAP).exists() {
        return Ok(false);
    }
    let layout = aya::maps::MapData::from_pin(dir.join(LAYOUT_MAP))
        .ok()
        .and_then(|data| aya::maps::Array::<_, u32>::try_from(aya::maps::Map::Array(data)).ok())
        .and_then(|map| map.get(&0, 0).ok());
    if layout == Some(PIN_LAYOUT) {
        return Ok(true);
    }
    tracing::warn!(
        dir = %dir.display(),
        found = layout,
        expected = PIN_LAYOUT,
        "the recorder state pinned here has another layout (an older syscribe's): it cannot be adopted, its recordings are dropped"
    );
    for name in PINNED_MAPS {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|source| BpfError::Pin {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(false)
}

/// The distinct levels of `subtrees`, ascending.
pub(super) fn subtree_levels<'a>(
    subtrees: impl IntoIterator<Item = &'a (u64, u32)>,
) -> std::collections::BTreeSet<u32> {
    subtrees.into_iter().map(|(_, level)| *level).collect()
}

/// Whether `dir` is on a bpf filesystem (where maps and links can be pinned).
pub(super) fn on_bpffs(dir: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c_dir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is valid; the path is NUL-terminated.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(c_dir.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == BPF_FS_MAGIC
    }
}
