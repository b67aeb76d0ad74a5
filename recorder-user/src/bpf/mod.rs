//! Everything that touches aya: loading the recorder object, attaching it to `sys_enter`, the
//! `RECORDED` map, and forwarding the eBPF side's aya-log diagnostics into tracing.

mod capable;

use std::{
    collections::{HashMap as StdHashMap, VecDeque},
    io,
    path::Path,
};

use aya::{
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Endianness,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, Queue, RingBuf},
    pin::PinError,
    programs::{
        ProgramError, RawTracePoint, TracePoint,
        links::{FdLink, PinnedLink},
        raw_trace_point::RawTracePointLinkId,
    },
};
use aya_log::EbpfLogger;
use recorder_ebpf::SET_WHOLE_CGROUP;
use recorder_ebpf::{
    AVC_COUNTER_DROPPED, AVC_COUNTER_TRUNCATED, AVC_COUNTER_UNREADABLE, AVC_COUNTERS_MAP,
    AVC_EVENTS_MAP, AVC_PROGRAM, CGROUP_ATTACH_PROGRAM, COLLIDED_MAP, COUNTER_CLAIM_FAILED,
    COUNTERS_MAP, DISCOVERED_MAP, DISCOVERY_SLOTS, EXITED_MAP, ExitEntry, FLOOR_PROGRAM,
    FREE_SLOTS_MAP, GENERATION_MAP, INDEX_MAP, IndexEntry, MAX_SUBTREES, NEW_TASK_PROGRAM,
    OUT_OF_RANGE_MAP, RECORDER_PROGRAM, SETS_MAP, SUBTREES_MAP, SubtreeEntry, SyscallSet,
    TASK_CACHE_MAP, TASK_EXIT_PROGRAM, USER_GENERATION_TAG, index_slot,
};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tracing::Instrument as _;

/// Bounds of the kernel maps.
pub use recorder_ebpf::{INDEX_SLOTS, MAX_RECORDED_CGROUPS, MAX_SYSCALLS, SET_FILTER_SEEN};

/// Reads the eBPF side's aya-log records (see [`LogForwarder`]).
pub type EbpfLog = EbpfLogger<&'static dyn log::Log>;

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

/// The loaded recorder. Attached to `sys_enter` only while [`Recorder::attach`]ed: a machine
/// where nothing is recorded runs no syscribe program at all.
pub struct Recorder {
    ebpf: Ebpf,
    /// While attached: the recorder and the generation programs, with their links.
    links: Vec<(&'static str, RawTracePointLinkId)>,
    /// How many times userspace changed `GENERATION`.
    generations: u64,
    /// cgroup id → its `SETS` slot: what the kernel maps hold, mirrored.
    watched: StdHashMap<u64, u32>,
    /// Recorded subtrees: (cgroup id, level).
    subtrees: Vec<(u64, u32)>,
    /// Whether the kernel side got its `DISCOVERY_SLOTS` sets.
    discovery_reserved: bool,
    /// Possible CPUs (per-CPU map values).
    cpus: usize,
    /// Free `SETS` slots, reused first-in first-out: a slot just freed is reused last, so a
    /// task of a cgroup that stopped being recorded cannot mark a newly recorded one's set.
    free: VecDeque<u32>,
    /// Pinned mode: where the maps and links are pinned.
    pin_dir: Option<std::path::PathBuf>,
    /// Pinned mode: the attached links, pinned (they outlive this process).
    pinned_links: Vec<PinnedLink>,
    /// The capability program and its links to recorded cgroups.
    capable: capable::Capable,
}

impl Recorder {
    /// Loads (verifies) the programs and creates the maps, using the kernel BTF at `btf_path`.
    /// Nothing is attached yet. Returns the eBPF diagnostics logger too, to be drained with
    /// [`LogForwarder`].
    pub fn load(btf_path: &Path) -> Result<(Self, Option<EbpfLog>), BpfError> {
        Self::load_in(btf_path, None)
    }

    /// Like [`Recorder::load`], with the kernel state pinned in `dir` (on bpffs): the maps, and
    /// once attached, the links, so the programs keep recording when this process dies. A
    /// recorder pinned there before (a previous syscribe, killed or stopped) is adopted: its
    /// sets, discovered containers and subtrees carry on.
    pub fn load_pinned(btf_path: &Path, dir: &Path) -> Result<(Self, Option<EbpfLog>), BpfError> {
        std::fs::create_dir_all(dir).map_err(|source| BpfError::Pin {
            path: dir.to_owned(),
            source,
        })?;
        if !on_bpffs(dir) {
            return Err(BpfError::NotBpffs {
                path: dir.to_owned(),
            });
        }
        Self::load_in(btf_path, Some(dir))
    }

    fn load_in(
        btf_path: &Path,
        pin_dir: Option<&Path>,
    ) -> Result<(Self, Option<EbpfLog>), BpfError> {
        let adopting = pin_dir.is_some_and(|dir| dir.join(SUBTREES_MAP).exists());
        let mut ebpf = load_object_pinned(btf_path, pin_dir)?;
        let capable = capable::Capable::load(&mut ebpf);
        let logger = match EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(err) => {
                tracing::warn!(error = %err, "eBPF diagnostics unavailable");
                None
            }
        };
        for name in ATTACHED_PROGRAMS.into_iter().chain([FLOOR_PROGRAM]) {
            program(&mut ebpf, name)?
                .load()
                .map_err(|source| BpfError::Program { name, source })?;
        }
        let mut recorder = Self {
            ebpf,
            links: Vec::new(),
            generations: 0,
            watched: StdHashMap::new(),
            subtrees: Vec::new(),
            discovery_reserved: false,
            cpus: aya::util::nr_cpus().map_err(|(_, source)| BpfError::Cpus { source })?,
            free: (0..MAX_RECORDED_CGROUPS).collect(),
            pin_dir: pin_dir.map(Path::to_owned),
            pinned_links: Vec::new(),
            capable,
        };
        if adopting {
            recorder.adopt()?;
        }
        recorder.new_generation(0)?;
        Ok((recorder, logger))
    }

    /// Takes over the state a previous recorder left in the pinned maps: its subtrees, the
    /// sets the kernel side holds (discovered containers' and the free queue's). Its
    /// generations are not reused: ours start from the clock.
    fn adopt(&mut self) -> Result<(), BpfError> {
        let entries: Vec<SubtreeEntry> = {
            let map = array::<SubtreeEntry>(&mut self.ebpf, SUBTREES_MAP)?;
            (0..MAX_SUBTREES)
                .filter_map(|i| map.get(&i, 0).ok())
                .take_while(|e| e.cgroup_id != 0)
                .collect()
        };
        self.subtrees = entries.iter().map(|e| (e.cgroup_id, e.level)).collect();
        let mut kernel_held: Vec<u32> = self
            .discovered()?
            .into_iter()
            .map(|(_, slot)| slot)
            .collect();
        {
            let mut queue: Queue<&mut MapData, u32> =
                Queue::try_from(map(&mut self.ebpf, FREE_SLOTS_MAP)?)
                    .map_err(open_err(FREE_SLOTS_MAP))?;
            let mut queued = Vec::new();
            while let Ok(slot) = queue.pop(0) {
                queued.push(slot);
            }
            for slot in &queued {
                queue
                    .push(slot, 0)
                    .map_err(slot_err(FREE_SLOTS_MAP, "push back", *slot))?;
            }
            kernel_held.extend(queued);
        }
        self.discovery_reserved = !kernel_held.is_empty() || !self.subtrees.is_empty();
        self.free.retain(|slot| !kernel_held.contains(slot));
        self.generations = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 & 0x0000_ffff_ffff_ffff);
        tracing::info!(
            subtrees = self.subtrees.len(),
            kernel_sets = kernel_held.len(),
            "adopted the recorder state pinned by a previous syscribe"
        );
        Ok(())
    }

    /// Pinned mode, at a clean end: removes the pins (the kernel frees what nothing holds).
    pub fn unpin(&mut self) -> Result<(), BpfError> {
        let Some(dir) = self.pin_dir.take() else {
            return Ok(());
        };
        self.detach()?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Starts recording the cgroup with this v2 id (its set starts empty). Call it before any
    /// task runs in the cgroup: the index entry and the set are written one after the other.
    pub fn watch(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        if self.watched.contains_key(&cgroup_id) {
            return Ok(());
        }
        let slot = self
            .free
            .pop_front()
            .ok_or(BpfError::TableFull { cgroup_id })?;
        match self.register(cgroup_id, slot) {
            Ok(()) => {
                self.watched.insert(cgroup_id, slot);
                self.new_generation(cgroup_id)
            }
            Err(err) => {
                self.free.push_front(slot);
                Err(err)
            }
        }
    }

    fn register(&mut self, cgroup_id: u64, slot: u32) -> Result<(), BpfError> {
        let err = |map, op| cgroup_err(map, op, cgroup_id);
        self.reset_slot(slot)?;
        // Registered before anything runs in it: no runtime boundary to wait for.
        array::<SyscallSet>(&mut self.ebpf, SETS_MAP)?
            .set(
                slot,
                SyscallSet {
                    flags: SET_WHOLE_CGROUP,
                    ..SyscallSet::EMPTY
                },
                0,
            )
            .map_err(err(SETS_MAP, "initialize"))?;
        let pos = index_slot(cgroup_id);
        let index = array::<IndexEntry>(&mut self.ebpf, INDEX_MAP)?;
        let mut entry = index.get(&pos, 0).map_err(err(INDEX_MAP, "read"))?;
        if entry.cgroup_id == 0 {
            entry.cgroup_id = cgroup_id;
            entry.set = slot;
        } else {
            collided(&mut self.ebpf)?
                .insert(cgroup_id, slot, 0)
                .map_err(err(COLLIDED_MAP, "add"))?;
            entry.collisions += 1;
        }
        array::<IndexEntry>(&mut self.ebpf, INDEX_MAP)?
            .set(pos, entry, 0)
            .map_err(err(INDEX_MAP, "add"))
    }

    /// What the cgroup did so far, and how many syscall entries were out of range.
    pub fn read(&mut self, cgroup_id: u64) -> Result<(SyscallSet, u64), BpfError> {
        let slot = *self
            .watched
            .get(&cgroup_id)
            .ok_or(BpfError::NotWatched { cgroup_id })?;
        self.read_slot(slot)
    }

    /// What the set in `slot` holds, and how many syscall entries were out of range.
    pub fn read_slot(&mut self, slot: u32) -> Result<(SyscallSet, u64), BpfError> {
        let err = |map, op| slot_err(map, op, slot);
        let set = array::<SyscallSet>(&mut self.ebpf, SETS_MAP)?
            .get(&slot, 0)
            .map_err(err(SETS_MAP, "read"))?;
        let out_of_range = per_cpu_array(&mut self.ebpf, OUT_OF_RANGE_MAP)?
            .get(&slot, 0)
            .map_err(err(OUT_OF_RANGE_MAP, "read"))?
            .iter()
            .sum();
        Ok((set, out_of_range))
    }

    /// Empties the set in `slot` and its out-of-range counts.
    fn reset_slot(&mut self, slot: u32) -> Result<(), BpfError> {
        let err = |map, op| slot_err(map, op, slot);
        array::<SyscallSet>(&mut self.ebpf, SETS_MAP)?
            .set(slot, SyscallSet::EMPTY, 0)
            .map_err(err(SETS_MAP, "reset"))?;
        let zeros = PerCpuValues::try_from(vec![0u64; self.cpus])
            .map_err(|source| BpfError::Cpus { source })?;
        per_cpu_array(&mut self.ebpf, OUT_OF_RANGE_MAP)?
            .set(slot, zeros, 0)
            .map_err(err(OUT_OF_RANGE_MAP, "reset"))
    }

    /// Starts recording every container cgroup directly below the cgroup `cgroup_id` (at
    /// depth `level` below the cgroup2 root), each in its own set, from its first syscall: the
    /// kernel side claims a set when a container's first task makes its first syscall, so a
    /// container created after this call misses nothing. See [`Recorder::discovered`].
    pub fn watch_subtree(&mut self, cgroup_id: u64, level: u32) -> Result<(), BpfError> {
        if self.subtrees.contains(&(cgroup_id, level)) {
            return Ok(());
        }
        if self.subtrees.len() >= MAX_SUBTREES as usize {
            return Err(BpfError::SubtreesFull { cgroup_id });
        }
        if !self.discovery_reserved {
            // Hand the kernel side its share of the sets, emptied.
            for _ in 0..DISCOVERY_SLOTS {
                let Some(slot) = self.free.pop_back() else {
                    break;
                };
                self.give_to_kernel(slot)?;
            }
            self.discovery_reserved = true;
        }
        self.subtrees.push((cgroup_id, level));
        self.write_subtrees(cgroup_id)?;
        self.new_generation(cgroup_id)
    }

    /// The subtrees being recorded (cgroup ids), e.g. those adopted from a previous syscribe.
    pub fn watched_subtrees(&self) -> Vec<u64> {
        self.subtrees.iter().map(|(id, _)| *id).collect()
    }

    /// Stops discovering containers below `cgroup_id` (those discovered stay recorded until
    /// [`Recorder::release`]d).
    pub fn unwatch_subtree(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        self.subtrees.retain(|(id, _)| *id != cgroup_id);
        self.write_subtrees(cgroup_id)?;
        self.new_generation(cgroup_id)
    }

    fn write_subtrees(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        let mut map = array::<SubtreeEntry>(&mut self.ebpf, SUBTREES_MAP)?;
        for i in 0..MAX_SUBTREES {
            let entry = self
                .subtrees
                .get(i as usize)
                .map(|&(cgroup_id, level)| SubtreeEntry {
                    cgroup_id,
                    level,
                    reserved: 0,
                })
                .unwrap_or_default();
            map.set(i, entry, 0)
                .map_err(cgroup_err(SUBTREES_MAP, "update for", cgroup_id))?;
        }
        Ok(())
    }

    fn give_to_kernel(&mut self, slot: u32) -> Result<(), BpfError> {
        self.reset_slot(slot)?;
        Queue::<_, u32>::try_from(map(&mut self.ebpf, FREE_SLOTS_MAP)?)
            .map_err(open_err(FREE_SLOTS_MAP))?
            .push(slot, 0)
            .map_err(slot_err(FREE_SLOTS_MAP, "free", slot))
    }

    /// Containers the kernel side discovered in watched subtrees: (container cgroup id, slot).
    pub fn discovered(&mut self) -> Result<Vec<(u64, u32)>, BpfError> {
        let map = HashMap::<_, u64, u32>::try_from(map(&mut self.ebpf, DISCOVERED_MAP)?)
            .map_err(open_err(DISCOVERED_MAP))?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(cgroup_err(DISCOVERED_MAP, "list", 0))
    }

    /// Frees a discovered container's set (after reading it): its slot goes back to the kernel.
    pub fn release(&mut self, container_id: u64, slot: u32) -> Result<(), BpfError> {
        HashMap::<_, u64, u32>::try_from(map(&mut self.ebpf, DISCOVERED_MAP)?)
            .map_err(open_err(DISCOVERED_MAP))?
            .remove(&container_id)
            .map_err(cgroup_err(DISCOVERED_MAP, "remove", container_id))?;
        self.new_generation(container_id)?;
        self.give_to_kernel(slot)
    }

    /// How many times a container could not get a set because all discovery sets were taken.
    pub fn claim_failures(&mut self) -> Result<u64, BpfError> {
        let slot = COUNTER_CLAIM_FAILED;
        Ok(per_cpu_array(&mut self.ebpf, COUNTERS_MAP)?
            .get(&slot, 0)
            .map_err(slot_err(COUNTERS_MAP, "read", slot))?
            .iter()
            .sum())
    }

    /// Stops recording the cgroup and frees its entries.
    pub fn unwatch(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        let Some(slot) = self.watched.remove(&cgroup_id) else {
            return Ok(());
        };
        let err = |map, op| cgroup_err(map, op, cgroup_id);
        let pos = index_slot(cgroup_id);
        let mut entry = array::<IndexEntry>(&mut self.ebpf, INDEX_MAP)?
            .get(&pos, 0)
            .map_err(err(INDEX_MAP, "read"))?;
        if entry.cgroup_id == cgroup_id {
            entry.cgroup_id = 0;
            entry.set = 0;
        } else {
            collided(&mut self.ebpf)?
                .remove(&cgroup_id)
                .map_err(err(COLLIDED_MAP, "remove"))?;
            entry.collisions = entry.collisions.saturating_sub(1);
        }
        array::<IndexEntry>(&mut self.ebpf, INDEX_MAP)?
            .set(pos, entry, 0)
            .map_err(err(INDEX_MAP, "remove"))?;
        self.free.push_back(slot);
        self.new_generation(cgroup_id)
    }

    /// Invalidates every CPU's cached decision (after the recorded set changed).
    fn new_generation(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        self.generations += 1;
        array::<u64>(&mut self.ebpf, GENERATION_MAP)?
            .set(0, USER_GENERATION_TAG | self.generations, 0)
            .map_err(cgroup_err(GENERATION_MAP, "update for", cgroup_id))
    }

    /// Attaches the recorder to `sys_enter`, and the programs that keep its per-CPU decision
    /// cache honest to `task_newtask` and `cgroup_attach_task` (idempotent).
    pub fn attach(&mut self) -> Result<(), BpfError> {
        if !self.links.is_empty() || !self.pinned_links.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.pin_dir.clone() {
            self.attach_pinned(&dir)?;
            self.attach_capabilities();
            return Ok(());
        }
        // Cache keepers first: the recorder must never run without them.
        for name in ATTACHED_PROGRAMS.into_iter().rev() {
            match attach(&mut self.ebpf, name) {
                Ok(link) => self.links.push((name, link)),
                Err(err) => {
                    let _ = self.detach();
                    return Err(err);
                }
            }
        }
        self.attach_capabilities();
        Ok(())
    }

    /// Pinned mode: attaches our programs, then replaces the links a previous recorder pinned
    /// (its programs ran until ours were attached: nothing is missed), and pins ours.
    fn attach_pinned(&mut self, dir: &Path) -> Result<(), BpfError> {
        let mut fresh = Vec::new();
        for name in ATTACHED_PROGRAMS.into_iter().rev() {
            let prog = program(&mut self.ebpf, name)?;
            let id = prog
                .attach(tracepoint_of(name))
                .map_err(|source| BpfError::Program { name, source })?;
            let link = prog
                .take_link(id)
                .map_err(|source| BpfError::Program { name, source })?;
            fresh.push((name, FdLink::from(link)));
        }
        for (name, link) in fresh {
            let path = dir.join(format!("link-{name}"));
            if let Ok(old) = PinnedLink::from_pin(&path) {
                // Dropping the unpinned link detaches the previous recorder's program.
                let _ = old.unpin();
            }
            let pinned = link.pin(&path).map_err(|source| BpfError::PinLink {
                path: path.clone(),
                source,
            })?;
            self.pinned_links.push(pinned);
        }
        Ok(())
    }

    /// Detaches everything: from here on syscalls cost nothing.
    pub fn detach(&mut self) -> Result<(), BpfError> {
        self.detach_capabilities()?;
        for link in self.pinned_links.drain(..) {
            let _ = link.unpin();
        }
        // The recorder first (attached last), then the cache keepers.
        while let Some((name, link)) = self.links.pop() {
            program(&mut self.ebpf, name)?
                .detach(link)
                .map_err(|source| BpfError::Program { name, source })?;
        }
        Ok(())
    }

    /// Attaches the empty program (the benchmark's floor). It stays attached until `self` drops.
    pub fn attach_floor(&mut self) -> Result<(), BpfError> {
        attach(&mut self.ebpf, FLOOR_PROGRAM).map(drop)
    }
}

/// Parses the kernel BTF and loads the object: maps created, no program loaded yet.
fn load_object(btf_path: &Path) -> Result<Ebpf, BpfError> {
    load_object_pinned(btf_path, None)
}

/// The recorder's maps, by name: what is pinned in pinned mode.
const PINNED_MAPS: [&str; 12] = [
    INDEX_MAP,
    SETS_MAP,
    COLLIDED_MAP,
    OUT_OF_RANGE_MAP,
    SUBTREES_MAP,
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
fn load_object_pinned(btf_path: &Path, pin_dir: Option<&Path>) -> Result<Ebpf, BpfError> {
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

/// Whether `dir` is on a bpf filesystem (where maps and links can be pinned).
fn on_bpffs(dir: &Path) -> bool {
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

/// Where SELinux is on: denied decisions from the tracepoint `avc:selinux_audited`
/// (`syscribe_avc` → the `AVC_EVENTS` ring buffer), for the log enricher beside audit.
/// Attached while this lives. Records are decoded by [`crate::audit::avc_trace`].
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
        crate::audit::avc_trace::check_format(format)
            .map_err(|reason| BpfError::AvcFormat { reason })?;
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

/// A map operation on a cgroup's entry failed.
fn cgroup_err(
    map: &'static str,
    op: &'static str,
    cgroup_id: u64,
) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map {
        map,
        op,
        cgroup_id,
        source,
    }
}

/// A map operation on a set's slot failed.
fn slot_err(map: &'static str, op: &'static str, slot: u32) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Slot {
        map,
        op,
        slot,
        source,
    }
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, BpfError> {
    ebpf.map_mut(name)
        .ok_or(BpfError::Missing { what: "map", name })
}

fn open_err(map: &'static str) -> impl FnOnce(MapError) -> BpfError {
    cgroup_err(map, "open", 0)
}

fn array<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, V>, BpfError> {
    Array::try_from(map(ebpf, name)?).map_err(open_err(name))
}

fn collided(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u64, u32>, BpfError> {
    HashMap::try_from(map(ebpf, COLLIDED_MAP)?).map_err(open_err(COLLIDED_MAP))
}

fn per_cpu_array<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<&'a mut MapData, u64>, BpfError> {
    PerCpuArray::try_from(map(ebpf, name)?).map_err(open_err(name))
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

/// The programs `attach` attaches, in order of importance: the recorder, then the raw
/// tracepoints whose programs change `GENERATION`.
const ATTACHED_PROGRAMS: [&str; 3] = [RECORDER_PROGRAM, NEW_TASK_PROGRAM, CGROUP_ATTACH_PROGRAM];

fn tracepoint_of(name: &str) -> &'static str {
    match name {
        NEW_TASK_PROGRAM => "task_newtask",
        CGROUP_ATTACH_PROGRAM => "cgroup_attach_task",
        _ => "sys_enter",
    }
}

fn attach(ebpf: &mut Ebpf, name: &'static str) -> Result<RawTracePointLinkId, BpfError> {
    program(ebpf, name)?
        .attach(tracepoint_of(name))
        .map_err(|source| BpfError::Program { name, source })
}

/// Forwards the eBPF side's aya-log records into tracing (through `log`) until stopped.
pub struct LogForwarder {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogForwarder {
    /// Spawns the forwarding task (needs a tokio runtime).
    pub fn spawn(logger: EbpfLog) -> Result<Self, BpfError> {
        // SAFETY: the logger owns its ring buffer's fd, which stays open and unchanged until
        // the AsyncFd (which owns the logger) drops.
        let mut fd =
            unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|err| BpfError::Log { source: err.into() })?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(
            async move {
                loop {
                    tokio::select! {
                        ready = fd.readable_mut() => match ready {
                            Ok(mut guard) => {
                                guard.get_inner_mut().flush();
                                guard.clear_ready();
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "eBPF diagnostics stopped");
                                return;
                            }
                        },
                        _ = &mut stopped => {
                            // Whatever the programs logged before they were detached.
                            fd.get_mut().flush();
                            return;
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("ebpf_log")),
        );
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Forwards what is left, then stops.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
