//! The loaded recorder: which cgroups and subtrees it records, their sets, and attaching it to
//! `sys_enter` (with the programs that keep its per-CPU cache honest).

use std::{
    collections::{HashMap as StdHashMap, VecDeque},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, PerCpuValues, Queue},
    programs::{
        links::{FdLink, PinnedLink},
        raw_trace_point::RawTracePointLinkId,
    },
};
use aya_log::EbpfLogger;
use recorder_ebpf::SET_WHOLE_CGROUP;
use recorder_ebpf::{
    CGROUP_ATTACH_PROGRAM, COLLIDED_MAP, COUNTER_CLAIM_FAILED, COUNTERS_MAP, DISCOVERED_MAP,
    DISCOVERY_SLOTS, FLOOR_PROGRAM, FREE_SLOTS_MAP, GENERATION_MAP, INDEX_MAP, IndexEntry,
    LAYOUT_MAP, MAX_SUBTREE_LEVELS, MAX_SUBTREES, NEW_TASK_PROGRAM, OUT_OF_RANGE_MAP, PIN_LAYOUT,
    RECORDER_PROGRAM, SETS_MAP, SUBTREE_LEVELS_MAP, SUBTREES_MAP, SubtreeEntry, SyscallSet,
    USER_GENERATION_TAG, index_slot,
};

use super::{
    BpfError, EbpfLog, MAX_RECORDED_CGROUPS, capable, load_object_pinned,
    maps::{
        array, cgroup_err, collided, map, open_err, per_cpu_array, program, slot_err, subtrees,
    },
    on_bpffs, same_pin_layout, subtree_levels,
};

/// The loaded recorder. Attached to `sys_enter` only while [`Recorder::attach`]ed: a machine
/// where nothing is recorded runs no syscribe program at all.
pub struct Recorder {
    pub(super) ebpf: Ebpf,
    /// While attached: the recorder and the generation programs, with their links.
    pub(super) links: Vec<(&'static str, RawTracePointLinkId)>,
    /// How many times userspace changed `GENERATION`.
    pub(super) generations: u64,
    /// cgroup id → its `SETS` slot: what the kernel maps hold, mirrored.
    pub(super) watched: StdHashMap<u64, u32>,
    /// Recorded subtrees: (cgroup id, level).
    pub(super) subtrees: Vec<(u64, u32)>,
    /// Whether the kernel side got its `DISCOVERY_SLOTS` sets.
    pub(super) discovery_reserved: bool,
    /// Possible CPUs (per-CPU map values).
    pub(super) cpus: usize,
    /// Free `SETS` slots, reused first-in first-out: a slot just freed is reused last, so a
    /// task of a cgroup that stopped being recorded cannot mark a newly recorded one's set.
    pub(super) free: VecDeque<u32>,
    /// Pinned mode: where the maps and links are pinned.
    pub(super) pin_dir: Option<std::path::PathBuf>,
    /// Pinned mode: the attached links, pinned (they outlive this process).
    pub(super) pinned_links: Vec<PinnedLink>,
    /// The capability program and its links to recorded cgroups.
    pub(super) capable: capable::Capable,
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
        let adopting = match pin_dir {
            Some(dir) => same_pin_layout(dir)?,
            None => false,
        };
        let mut ebpf = load_object_pinned(btf_path, pin_dir)?;
        let capable = capable::Capable::load(&mut ebpf, btf_path);
        if pin_dir.is_some() {
            array::<u32>(&mut ebpf, LAYOUT_MAP)?
                .set(0, PIN_LAYOUT, 0)
                .map_err(slot_err(LAYOUT_MAP, "write", 0))?;
        }
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
        self.subtrees = subtrees(&mut self.ebpf)?
            .iter()
            .map(|entry| entry.map(|(id, e)| (id, e.level)))
            .collect::<Result<_, _>>()
            .map_err(cgroup_err(SUBTREES_MAP, "list", 0))?;
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
        if subtree_levels(self.subtrees.iter().chain([&(cgroup_id, level)])).len()
            > MAX_SUBTREE_LEVELS as usize
        {
            return Err(BpfError::SubtreeLevelsFull { cgroup_id, level });
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
        let entry = SubtreeEntry {
            cgroup_id,
            level,
            reserved: 0,
        };
        subtrees(&mut self.ebpf)?
            .insert(cgroup_id, entry, 0)
            .map_err(cgroup_err(SUBTREES_MAP, "add", cgroup_id))?;
        self.subtrees.push((cgroup_id, level));
        self.write_subtree_levels(cgroup_id)?;
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
        match subtrees(&mut self.ebpf)?.remove(&cgroup_id) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(cgroup_err(SUBTREES_MAP, "remove", cgroup_id)(source)),
        }
        self.write_subtree_levels(cgroup_id)?;
        self.new_generation(cgroup_id)
    }

    /// Writes the distinct levels of the recorded subtrees, shallowest first, 0 after them.
    fn write_subtree_levels(&mut self, cgroup_id: u64) -> Result<(), BpfError> {
        let levels = subtree_levels(&self.subtrees);
        let mut map = array::<u32>(&mut self.ebpf, SUBTREE_LEVELS_MAP)?;
        for i in 0..MAX_SUBTREE_LEVELS {
            let level = levels.iter().nth(i as usize).copied().unwrap_or(0);
            map.set(i, level, 0).map_err(cgroup_err(
                SUBTREE_LEVELS_MAP,
                "update for",
                cgroup_id,
            ))?;
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
