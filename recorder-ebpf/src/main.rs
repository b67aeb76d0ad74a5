//! The kernel side of the syscall recorder.
//!
//! `syscribe_sys_enter` runs on the raw `sys_enter` tracepoint for every task on the machine.
//! It asks one question — is the current task's cgroup (v2 id) being recorded? — answered from
//! this CPU's cached decision for the task when it is still valid, else by reading one inlined
//! array slot (see the crate docs); if so it marks the syscall in that cgroup's set.
//! Nothing crosses to userspace per syscall: userspace reads the set when the recording ends.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, Queue, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use recorder_ebpf::{
    AVC_COUNTER_DROPPED, AVC_COUNTER_SLOTS, AVC_COUNTER_TRUNCATED, AVC_COUNTER_UNREADABLE,
    AVC_EVENTS_BYTES, AVC_TRUNCATED_SCONTEXT, AVC_TRUNCATED_TCLASS, AVC_TRUNCATED_TCONTEXT,
    AvcEvent, COUNTER_CLAIM_FAILED, COUNTER_SLOTS, EXITED_ENTRIES, ExitEntry, INDEX_SLOTS,
    IndexEntry, LAYOUT_MAP_ENTRIES, MAX_RECORDED_CGROUPS, MAX_SUBTREE_LEVELS, MAX_SUBTREES, SEEN,
    SEEN_BEFORE, SET_AWAIT_BOUNDARY, SET_EXECED, SET_FILTER_SEEN, SET_ROOT_SWITCHED, SubtreeEntry,
    SyscallSet, TaskCache, avc_format, index_slot,
};

/// Direct-mapped `cgroup id % INDEX_SLOTS → IndexEntry`. Written by userspace only.
#[map]
static INDEX: Array<IndexEntry> = Array::with_max_entries(INDEX_SLOTS, 0);

/// The syscall sets of recorded cgroups, by the slot userspace assigned.
#[map]
static SETS: Array<SyscallSet> = Array::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// Recorded cgroups whose `INDEX` slot was already taken: cgroup id → `SETS` slot.
#[map]
static COLLIDED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// `SETS` slot → syscall entries with a number beyond `MAX_SYSCALLS` (counted, not recorded).
/// Per-CPU so the count is exact without atomics; userspace zeroes a slot's counts with its set.
#[map]
static OUT_OF_RANGE: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// Recorded subtrees: subtree cgroup id → entry. Written by userspace only.
#[map]
static SUBTREES: HashMap<u64, SubtreeEntry> = HashMap::with_max_entries(MAX_SUBTREES, 0);

/// The distinct levels of the recorded subtrees, shallowest first, packed from index 0 (0 ends
/// the list). Written by userspace only.
#[map]
static SUBTREE_LEVELS: Array<u32> = Array::with_max_entries(MAX_SUBTREE_LEVELS, 0);

/// `LAYOUT[0]`: the `PIN_LAYOUT` of these maps, written by userspace (read only by userspace).
#[map]
static LAYOUT: Array<u32> = Array::with_max_entries(LAYOUT_MAP_ENTRIES, 0);

/// Free `SETS` slots (zeroed by userspace) for containers discovered in a subtree.
#[map]
static FREE_SLOTS: Queue<u32> = Queue::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// Container cgroup id → `SETS` slot, for containers discovered in a subtree. Inserted by the
/// kernel side (the insert decides between CPUs racing for the same container), removed by
/// userspace when the container's cgroup is gone.
#[map]
static DISCOVERED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// Per-CPU counters of things that went wrong (see `COUNTER_*`); userspace reports them.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Per CPU: the decision for the task this CPU saw last (see the crate docs).
#[map]
static TASK_CACHE: PerCpuArray<TaskCache> = PerCpuArray::with_max_entries(1, 0);

/// `GENERATION[0]`: changes whenever a cached decision may have become wrong.
#[map]
static GENERATION: Array<u64> = Array::with_max_entries(1, 0);

/// Per CPU: how many generation changes this CPU made (makes its generations unique).
#[map]
static GENERATION_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The `SETS` slot of the current task's cgroup, if it is recorded (the uncached path).
#[inline(always)]
fn lookup_slot() -> Option<u32> {
    // SAFETY: the helper has no preconditions; it reads the current task's default cgroup.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let entry = INDEX.get(index_slot(cgroup_id))?;
    if entry.cgroup_id == cgroup_id {
        return Some(entry.set);
    }
    if entry.collisions != 0 {
        // SAFETY: a plain u32 value, copied out immediately.
        if let Some(slot) = unsafe { COLLIDED.get(cgroup_id) } {
            return Some(*slot);
        }
    }
    subtree_slot()
}

/// The `SETS` slot of the container the current task belongs to, if it lives in a recorded
/// subtree: the container is the task's ancestor one level below the subtree's root. One
/// ancestor and one hash lookup per distinct subtree level (see the crate docs).
#[inline(always)]
fn subtree_slot() -> Option<u32> {
    for i in 0..MAX_SUBTREE_LEVELS {
        let level = *SUBTREE_LEVELS.get(i)?;
        if level == 0 {
            return None;
        }
        let level = level as i32;
        // SAFETY: the helper has no preconditions (0 when the task is not that deep).
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if ancestor == 0 {
            // Not that deep: not deeper either (levels ascend).
            return None;
        }
        // SAFETY: a plain value, only tested for presence.
        if unsafe { SUBTREES.get(ancestor) }.is_none() {
            continue;
        }
        // SAFETY: the helper has no preconditions.
        let container = unsafe { bpf_get_current_ancestor_cgroup_id(level + 1) };
        if container == 0 {
            // In the subtree's root itself (not in a container).
            return None;
        }
        // SAFETY: a plain u32 value, copied out immediately.
        if let Some(slot) = unsafe { DISCOVERED.get(container) } {
            return Some(*slot);
        }
        return claim(container);
    }
    None
}

/// Gives a newly seen container a free `SETS` slot.
#[inline(always)]
fn claim(container: u64) -> Option<u32> {
    const BPF_NOEXIST: u64 = 1;
    let Ok(Some(slot)) = FREE_SLOTS.pop() else {
        if let Some(count) = COUNTERS.get_ptr_mut(COUNTER_CLAIM_FAILED) {
            // SAFETY: this CPU's counter.
            unsafe { *count += 1 };
        }
        return None;
    };
    if DISCOVERED.insert(container, slot, BPF_NOEXIST).is_ok() {
        if let Some(set) = SETS.get_ptr_mut(slot) {
            // SAFETY: the set userspace emptied before handing the slot over.
            unsafe { (*set).flags = SET_AWAIT_BOUNDARY };
        }
        return Some(slot);
    }
    // Another CPU claimed this container first: give the slot back, use its slot.
    let _ = FREE_SLOTS.push(slot, 0);
    // SAFETY: a plain u32 value, copied out immediately.
    unsafe { DISCOVERED.get(container) }.copied()
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscribe_sys_enter(ctx: RawTracePointContext) -> i32 {
    // sys_enter's TP_PROTO is (struct pt_regs *regs, long id).
    let regs: u64 = ctx.arg(0);
    // Read before deciding: a change after this read makes the cached decision stale.
    let generation = match GENERATION.get(0) {
        Some(generation) => *generation,
        None => return 0,
    };
    let Some(cache) = TASK_CACHE.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's value of a per-CPU map, valid for this program run.
    let cache = unsafe { &mut *cache };
    let set_slot = if cache.regs == regs && cache.generation == generation {
        if cache.recorded == 0 {
            return 0;
        }
        cache.set
    } else {
        let slot = lookup_slot();
        cache.regs = regs;
        cache.generation = generation;
        cache.recorded = u32::from(slot.is_some());
        cache.set = slot.unwrap_or(0);
        match slot {
            Some(slot) => slot,
            None => return 0,
        }
    };
    let Some(set) = SETS.get_ptr_mut(set_slot) else {
        return 0;
    };
    // SAFETY: `set` points into a map value that stays valid for this program run.
    let set = unsafe { &mut *set };
    let nr: u64 = ctx.arg(1);
    if set.flags & SET_EXECED == 0 {
        if set.flags & SET_AWAIT_BOUNDARY != 0 {
            if boundary_step(set, regs, nr) {
                return 0;
            }
        } else if set.flags & SET_FILTER_SEEN != 0 && (nr == ABI.execve || nr == ABI.execveat) {
            // Under its filter, the container's own process starts at this exec: its
            // capability checks count from here (`counts_capabilities`).
            set.flags |= SET_EXECED;
        }
    }
    if let Some(seen) = set.seen.get_mut(nr as usize) {
        if *seen & SEEN == 0 {
            *seen |= SEEN;
        }
    } else {
        // Rare path: a number outside the recorded range. Counted, and logged the first time.
        set.last_out_of_range = nr;
        if let Some(count) = OUT_OF_RANGE.get_ptr_mut(set_slot) {
            // SAFETY: this CPU's counter for the slot.
            let count = unsafe { &mut *count };
            if *count == 0 {
                warn!(
                    &ctx,
                    "set {}: syscall number {} is outside the recorded range", set_slot, nr
                );
            }
            *count += 1;
        }
    }
    0
}

#[cfg(bpf_target_arch = "x86_64")]
use recorder_ebpf::ABI_X86_64 as ABI;

#[cfg(bpf_target_arch = "aarch64")]
use recorder_ebpf::ABI_AARCH64 as ABI;

/// One step of a discovered container's boundary state machine (see "Where a container's
/// profile starts" in the crate docs), for a set still awaiting its boundary. Returns whether
/// the syscall was consumed (a boundary step: not recorded as seen since the boundary).
#[inline(always)]
fn boundary_step(set: &mut SyscallSet, regs: u64, nr: u64) -> bool {
    let switched = set.flags & SET_ROOT_SWITCHED != 0;
    if nr == ABI.seccomp || nr == ABI.prctl {
        if !installs_seccomp_filter(regs, nr) {
            return false;
        }
        // The runtime boundary: everything so far was the runtime setting the container up;
        // from the next syscall on, the container runs under its filter.
        set.forget_all();
        set.flags = SET_FILTER_SEEN;
        return true;
    }
    if nr == ABI.root_switch[0] || nr == ABI.root_switch[1] || (switched && ABI.is_setup(nr)) {
        // The runtime is still setting the container up: what came before is its setup.
        set.forget_before();
        if let Some(seen) = set.seen.get_mut(nr as usize) {
            *seen = SEEN_BEFORE;
        }
        set.flags = SET_AWAIT_BOUNDARY | SET_ROOT_SWITCHED;
        return true;
    }
    if switched && (nr == ABI.execve || nr == ABI.execveat) {
        // The entrypoint (or whatever runs next) is exec'd: the boundary was the last setup
        // step. The exec itself is the container's.
        set.flags = SET_ROOT_SWITCHED | SET_EXECED;
    }
    false
}

/// Whether this syscall installs a seccomp filter: `seccomp(SECCOMP_SET_MODE_FILTER, flags,
/// prog)` or `prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog)` with a program. libseccomp
/// probes which flags the kernel supports with a NULL program (EFAULT means "supported"): those
/// install nothing. Reads arguments only for these two syscall numbers.
#[inline(always)]
fn installs_seccomp_filter(regs: u64, nr: u64) -> bool {
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    const PR_SET_SECCOMP: u64 = 22;
    const SECCOMP_MODE_FILTER: u64 = 2;
    let arg = |i: usize| -> u64 {
        let ptr = (regs + ABI.arg_offsets[i]) as *const u64;
        // SAFETY: a kernel pointer read through the helper, which fails instead of faulting.
        unsafe { bpf_probe_read_kernel(ptr) }.unwrap_or(u64::MAX)
    };
    if nr == ABI.seccomp {
        arg(0) == SECCOMP_SET_MODE_FILTER && arg(2) != 0
    } else if nr == ABI.prctl {
        arg(0) == PR_SET_SECCOMP && arg(1) == SECCOMP_MODE_FILTER && arg(2) != 0
    } else {
        false
    }
}

/// Gives `GENERATION` a value never used before: `cpu << 48 | this CPU's event count`.
#[inline(always)]
fn new_generation() {
    // SAFETY: the helper has no preconditions.
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() });
    let (Some(events), Some(generation)) =
        (GENERATION_EVENTS.get_ptr_mut(0), GENERATION.get_ptr_mut(0))
    else {
        return;
    };
    // SAFETY: this CPU's counter (no other CPU writes it) and the one-entry array's value.
    unsafe {
        *events += 1;
        *generation = (cpu << 48) | (*events & 0xffff_ffff_ffff);
    }
}

/// A new task may reuse a freed kernel stack, hence a `pt_regs` pointer some CPU cached.
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn syscribe_task_new(_ctx: RawTracePointContext) -> i32 {
    new_generation();
    0
}

/// A task moved to another cgroup: its cached decision may be wrong.
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn syscribe_cgroup_attach(_ctx: RawTracePointContext) -> i32 {
    new_generation();
    0
}

/// Exited processes (tgid) → their cgroup and exit time; least recently written forgotten first.
#[map]
static EXITED: LruHashMap<u32, ExitEntry> = LruHashMap::with_max_entries(EXITED_ENTRIES, 0);

/// A task exits (every thread; the process id is the key, so the last one's entry stays): a
/// denial that killed it is read later, when /proc no longer knows the process.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn syscribe_task_exit(_ctx: RawTracePointContext) -> i32 {
    // SAFETY: these helpers have no preconditions; they read the current task.
    let (tgid, entry) = unsafe {
        (
            (bpf_get_current_pid_tgid() >> 32) as u32,
            ExitEntry {
                cgroup_id: bpf_get_current_cgroup_id(),
                boot_ns: bpf_ktime_get_boot_ns(),
            },
        )
    };
    // A full map forgets its least recently used entry; nothing else can fail here.
    let _ = EXITED.insert(&tgid, &entry, 0);
    0
}

/// Denied SELinux decisions for userspace (see `AvcEvent`).
#[map]
static AVC_EVENTS: RingBuf = RingBuf::with_byte_size(AVC_EVENTS_BYTES, 0);

/// `AVC_COUNTER_*`, per CPU.
#[map]
static AVC_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(AVC_COUNTER_SLOTS, 0);

#[inline(always)]
fn avc_count(counter: u32) {
    if let Some(count) = AVC_COUNTERS.get_ptr_mut(counter) {
        // SAFETY: this CPU's counter.
        unsafe { *count += 1 };
    }
}

/// Every audited SELinux decision (where SELinux is on): denials go to `AVC_EVENTS`.
#[tracepoint(category = "avc", name = "selinux_audited")]
pub fn syscribe_avc(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of the running kernel's format (checked by userspace before attaching);
    // the helper fails instead of faulting.
    let denied: u32 = match unsafe { ctx.read_at(avc_format::DENIED) } {
        Ok(denied) => denied,
        Err(_) => {
            avc_count(AVC_COUNTER_UNREADABLE);
            return 0;
        }
    };
    if denied == 0 {
        return 0;
    }
    let Some(mut entry) = AVC_EVENTS.reserve::<AvcEvent>(0) else {
        avc_count(AVC_COUNTER_DROPPED);
        return 0;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` is the reserved record (exclusively ours until submitted); every field
    // is written before submission; trace-entry reads go through the helper.
    let truncated = unsafe {
        let id = bpf_get_current_pid_tgid();
        (*event).boot_ns = bpf_ktime_get_boot_ns();
        (*event).tgid = (id >> 32) as u32;
        (*event).tid = id as u32;
        (*event).denied = denied;
        (*event).requested = ctx.read_at(avc_format::REQUESTED).unwrap_or(0);
        (*event).audited = ctx.read_at(avc_format::AUDITED).unwrap_or(0);
        (*event).result = ctx.read_at(avc_format::RESULT).unwrap_or(0);
        (*event).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let base = ctx.as_ptr() as *const u8;
        let (len, cut) = data_loc_str(&ctx, base, avc_format::SCONTEXT, &mut (*event).scontext);
        (*event).scontext_len = len;
        let mut truncated = if cut { AVC_TRUNCATED_SCONTEXT } else { 0 };
        let (len, cut) = data_loc_str(&ctx, base, avc_format::TCONTEXT, &mut (*event).tcontext);
        (*event).tcontext_len = len;
        if cut {
            truncated |= AVC_TRUNCATED_TCONTEXT;
        }
        let (len, cut) = data_loc_str(&ctx, base, avc_format::TCLASS, &mut (*event).tclass);
        (*event).tclass_len = len;
        if cut {
            truncated |= AVC_TRUNCATED_TCLASS;
        }
        (*event).truncated = truncated;
        truncated
    };
    if truncated != 0 {
        avc_count(AVC_COUNTER_TRUNCATED);
    }
    entry.submit(0);
    0
}

/// Copies the `__data_loc` string whose descriptor is at `field` into `dest` (NUL-terminated,
/// cut to its size). Returns the kernel's length (NUL included) and whether it was cut.
#[inline(always)]
fn data_loc_str(
    ctx: &TracePointContext,
    base: *const u8,
    field: usize,
    dest: &mut [u8],
) -> (u32, bool) {
    // SAFETY: the helper fails instead of faulting.
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(field) }) else {
        dest[0] = 0;
        return (0, false);
    };
    let (offset, len) = ((loc & 0xffff) as usize, loc >> 16);
    // SAFETY: a kernel address inside the trace entry, read through the helper (which stops
    // at the NUL or at `dest`'s end, always NUL-terminating).
    if unsafe { bpf_probe_read_kernel_str_bytes(base.wrapping_add(offset), dest) }.is_err() {
        dest[0] = 0;
    }
    (len, len as usize > dest.len())
}

/// An empty program on the same tracepoint: the benchmark's floor (cost of any attached program).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscribe_floor(_ctx: RawTracePointContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// The capabilities a recorded cgroup's tasks use (see `recorder_ebpf::CAPABLE_PROGRAM`).
mod capabilities {
    use aya_ebpf::{
        EbpfContext as _,
        helpers::{bpf_get_current_task, bpf_get_stack, bpf_probe_read_kernel},
        macros::{map, raw_tracepoint},
        maps::Array,
        programs::RawTracePointContext,
    };
    use recorder_ebpf::{CAP_PROBE_FRAMES, CodeRange, MAX_CAP_PROBES, counts_capabilities};

    use super::{SETS, lookup_slot};

    /// The kernel functions that make silent capability probes (written by userspace).
    #[map]
    static CAP_PROBES: Array<CodeRange> = Array::with_max_entries(MAX_CAP_PROBES, 0);

    /// Where `struct task_struct` holds `real_cred` (written by userspace from the kernel's
    /// BTF; 0: unknown, every passed check counts).
    #[map]
    static CAP_TASK: Array<u64> = Array::with_max_entries(1, 0);

    /// Every capability check commoncap decides, on every CPU, while recording.
    #[raw_tracepoint(tracepoint = "cap_capable")]
    pub fn syscribe_capable(ctx: RawTracePointContext) -> i32 {
        note_capability(&ctx);
        0
    }

    /// Marks the checked capability in the current task's set when the check passed, the set
    /// counts capabilities, and it was not a silent probe.
    #[inline(always)]
    fn note_capability(ctx: &RawTracePointContext) {
        // cap_capable's TP_PROTO: (const struct cred *cred, struct user_namespace *target_ns,
        // const struct user_namespace *capable_ns, int cap, int ret).
        let ret: u64 = ctx.arg(4);
        if ret as i32 != 0 {
            return;
        }
        let cap: u64 = ctx.arg(3);
        let Some(slot) = lookup_slot() else {
            return;
        };
        let Some(set) = SETS.get_ptr_mut(slot) else {
            return;
        };
        // SAFETY: `set` points into a map value that stays valid for this program run.
        let set = unsafe { &mut *set };
        if !counts_capabilities(set.flags) {
            return;
        }
        // A negative or unknown number is no capability (`get_mut` fails for it).
        let Some(used) = set.capabilities.get_mut(cap as i32 as usize) else {
            return;
        };
        if *used == 0 && own_credentials(ctx) && !silent_probe(ctx) {
            *used = 1;
        }
    }

    /// Whether the check was made with the current task's own credentials (`cred` is its
    /// `real_cred`), not with credentials the kernel put on for it: overlayfs checks the
    /// *mounter's* (the runtime's) capabilities on the layers beneath a container's root —
    /// `CAP_SYS_ADMIN` for its trusted xattrs at lookups, `CAP_DAC_OVERRIDE` and
    /// `CAP_DAC_READ_SEARCH` at copy-up — which the container neither has nor needs. Unknown offset or unreadable: counts as own.
    #[inline(always)]
    fn own_credentials(ctx: &RawTracePointContext) -> bool {
        let offset = match CAP_TASK.get(0) {
            Some(&offset) if offset != 0 => offset,
            _ => return true,
        };
        let cred: u64 = ctx.arg(0);
        // SAFETY: a kernel read through the helper, which fails cleanly on a bad address.
        let task = unsafe { bpf_get_current_task() };
        let real = unsafe { bpf_probe_read_kernel((task + offset) as *const u64) };
        real.map_or(true, |real| real == cred)
    }

    /// Whether one of the current kernel stack's frames is in a probing function. A stack that
    /// cannot be read counts as no probe: a capability too many rather than one missing.
    #[inline(always)]
    fn silent_probe(ctx: &RawTracePointContext) -> bool {
        let mut frames = [0u64; CAP_PROBE_FRAMES];
        // SAFETY: the helper writes at most `size` bytes into `frames` (kernel stack, flags 0).
        let written = unsafe {
            bpf_get_stack(
                ctx.as_ptr(),
                frames.as_mut_ptr().cast(),
                (CAP_PROBE_FRAMES * 8) as u32,
                0,
            )
        };
        if written <= 0 {
            return false;
        }
        let count = (written as usize / 8).min(CAP_PROBE_FRAMES);
        for (i, ip) in frames.iter().enumerate() {
            if i >= count {
                break;
            }
            for r in 0..MAX_CAP_PROBES {
                let Some(range) = CAP_PROBES.get(r) else {
                    break;
                };
                if range.start == 0 {
                    break;
                }
                if *ip >= range.start && *ip < range.end {
                    return true;
                }
            }
        }
        false
    }
}
