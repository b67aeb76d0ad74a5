//! Types shared by the eBPF recorder (kernel side) and `syscribe` (user side).
//!
//! Plain `#[repr(C)]` data with no padding, no bool/Option/enum fields, so the user side can read
//! the kernel's bytes as-is (`aya::Pod`, behind the `user` feature).
//!
//! ## Maps and the hot path
//! Every syscall of every task runs the recorder, so the question "is this task's cgroup being
//! recorded?" must cost next to nothing when the answer is no. A hash lookup costs a call, a
//! hash and a bucket walk; instead the kernel side reads one slot of a direct-mapped array
//! (`INDEX[cgroup_id % INDEX_SLOTS]`), which the verifier inlines into a few instructions:
//! - the slot holds the recorded cgroup's id → recorded; its `SyscallSet` is `SETS[entry.set]`;
//! - the slot holds another id (or none) and `collisions == 0` → not recorded (the common case);
//! - `collisions > 0` → look the id up in the `COLLIDED` hash map (rare: cgroup ids are
//!   sequential inode numbers, so recorded cgroups collide only 4096 ids apart).
//!
//! Even that costs a helper call (`bpf_get_current_cgroup_id`), and on machines with return-
//! thunk mitigations (SRSO "safe RET" here) every helper call costs ~20 ns. So each CPU keeps
//! the decision for the task it saw last (`TASK_CACHE`), keyed by the task's `pt_regs` pointer
//! — the raw tracepoint's first argument, the top of the task's kernel stack, unique among live
//! tasks — and by `GENERATION`. A task that keeps making syscalls on a CPU pays no helper call.
//! `GENERATION` changes to a never-seen value whenever a decision could change: a task is
//! created (a new task may reuse a freed kernel stack), a task moves to another cgroup, or
//! userspace starts or stops recording a cgroup.
#![no_std]

/// Syscall numbers `0..MAX_SYSCALLS` are recorded; larger ones (x32 ABI numbers carry bit 30,
/// or an unknown future syscall) are counted per cgroup in the `OUT_OF_RANGE` map and reported.
/// x86_64 and aarch64 numbers stay below 470 as of Linux 6.18.
pub const MAX_SYSCALLS: usize = 1024;

/// How many cgroups can be recorded at once (entries of `SETS` and `COLLIDED`). Registering
/// one more fails with a named error in userspace; nothing is silently dropped.
pub const MAX_RECORDED_CGROUPS: u32 = 1024;

/// How many cgroup subtrees (e.g. pods) can be recorded at once: every container cgroup that
/// appears directly below one gets its own set, claimed by the kernel side at the container's
/// first syscall. (8 refused the 9th of 20 pods a recording selected on the real cluster.) The
/// kernel side looks through the recorded ones in order, stopping at the first empty entry,
/// and only on the uncached path (a task's first syscall on a CPU, or after a change).
pub const MAX_SUBTREES: u32 = 64;

/// `SETS` slots userspace hands to the kernel side (`FREE_SLOTS`) for subtree discovery; the
/// rest stay for cgroups userspace records itself.
pub const DISCOVERY_SLOTS: u32 = MAX_RECORDED_CGROUPS / 2;

/// Indexes of the per-CPU `COUNTERS`.
pub const COUNTER_CLAIM_FAILED: u32 = 0;
pub const COUNTER_SLOTS: u32 = 1;

/// Slots of the direct-mapped `INDEX` (a power of two; 16 bytes each).
pub const INDEX_SLOTS: u32 = 4096;

/// Processes whose exit is remembered (least recently exited ones are forgotten first).
pub const EXITED_ENTRIES: u32 = 16384;

/// Map names, shared with userspace.
pub const INDEX_MAP: &str = "INDEX";
pub const SETS_MAP: &str = "SETS";
pub const COLLIDED_MAP: &str = "COLLIDED";
/// Recorded subtrees (`SubtreeEntry`, packed from index 0).
pub const SUBTREES_MAP: &str = "SUBTREES";
/// Queue of free `SETS` slots the kernel side may claim for discovered containers.
pub const FREE_SLOTS_MAP: &str = "FREE_SLOTS";
/// Discovered container cgroup id → its `SETS` slot.
pub const DISCOVERED_MAP: &str = "DISCOVERED";
/// Per-CPU counters (`COUNTER_*`).
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Per-CPU decision cache, one `TaskCache` per CPU.
pub const TASK_CACHE_MAP: &str = "TASK_CACHE";
/// One-entry array holding the current generation.
pub const GENERATION_MAP: &str = "GENERATION";
/// Per-CPU map `cgroup id → count of out-of-range syscall entries`.
pub const OUT_OF_RANGE_MAP: &str = "OUT_OF_RANGE";
/// Name of the program that records syscalls (raw tracepoint `sys_enter`).
/// `EXITED`: process id (tgid) → [`ExitEntry`].
pub const EXITED_MAP: &str = "EXITED";
pub const RECORDER_PROGRAM: &str = "syscribe_sys_enter";
/// Programs that change `GENERATION` (raw tracepoints `task_newtask`, `cgroup_attach_task`).
pub const NEW_TASK_PROGRAM: &str = "syscribe_task_new";
pub const CGROUP_ATTACH_PROGRAM: &str = "syscribe_cgroup_attach";
/// Name of the empty raw `sys_enter` program: the benchmark's floor, never used to record.
/// Remembers each exiting process's cgroup (for the log enricher).
pub const TASK_EXIT_PROGRAM: &str = "syscribe_task_exit";
pub const FLOOR_PROGRAM: &str = "syscribe_floor";

/// The `INDEX` slot a cgroup id belongs to.
#[inline(always)]
pub const fn index_slot(cgroup_id: u64) -> u32 {
    (cgroup_id & (INDEX_SLOTS as u64 - 1)) as u32
}

/// One slot of `INDEX`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// The recorded cgroup that owns this slot (0: none; cgroup ids are never 0).
    pub cgroup_id: u64,
    /// Its entry in `SETS`.
    pub set: u32,
    /// How many recorded cgroups with this slot live in `COLLIDED` instead.
    pub collisions: u32,
}

/// Generations are unique: the kernel side writes `cpu << 48 | per-CPU event count`, userspace
/// writes `USER_GENERATION_TAG | its own count` (no CPU number reaches 0xffff).
pub const USER_GENERATION_TAG: u64 = 0xffff << 48;

/// One recorded subtree: the cgroup (a pod's, say) and its depth below the cgroup2 root.
/// Tasks whose ancestor at `level` is `cgroup_id` belong to the container whose cgroup is
/// their ancestor at `level + 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubtreeEntry {
    /// 0: unused (entries are packed: the first unused one ends the list).
    pub cgroup_id: u64,
    pub level: u32,
    pub reserved: u32,
}

/// The last decision of one CPU (a value of the per-CPU `TASK_CACHE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskCache {
    /// The `pt_regs` pointer of the task the decision is for (0: none).
    pub regs: u64,
    /// `GENERATION` when the decision was taken.
    pub generation: u64,
    /// The task's `SETS` slot, if `recorded != 0`.
    pub set: u32,
    /// Whether the task's cgroup is recorded.
    pub recorded: u32,
}

/// A process that exited: the cgroup it was in and when (`CLOCK_BOOTTIME`), so that a denial
/// read after a `SCMP_ACT_KILL` can still be attributed. A value of `EXITED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEntry {
    pub cgroup_id: u64,
    pub boot_ns: u64,
}

/// `SyscallSet::flags`: a container's set, which forgets what was recorded before the container
/// runtime installed the container's seccomp filter (the runtime's own setup) and records from
/// there on. Set by the kernel side when it claims a set for a discovered container.
pub const SET_AWAIT_FILTER: u64 = 1;
/// `SyscallSet::flags`: the container's seccomp filter was installed; recorded from then on.
pub const SET_FILTER_SEEN: u64 = 2;

/// What one recorded cgroup did: a value of `SETS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallSet {
    /// `seen[nr] != 0` once syscall `nr` was entered by a task of this cgroup.
    ///
    /// One byte per syscall rather than one bit: setting a byte to 1 is idempotent, so CPUs
    /// racing on the same set need no atomic read-modify-write (which the bpf target lacks),
    /// and the hot path stores only when the byte is still 0 (no cache-line ping-pong once a
    /// syscall is known).
    pub seen: [u8; MAX_SYSCALLS],
    /// The last syscall number `>= MAX_SYSCALLS` entered (0: none).
    pub last_out_of_range: u64,
    /// `SET_*` flags.
    pub flags: u64,
}

impl SyscallSet {
    pub const EMPTY: Self = Self {
        seen: [0; MAX_SYSCALLS],
        last_out_of_range: 0,
        flags: 0,
    };

    /// The syscall numbers marked as seen, ascending.
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        (0u32..)
            .zip(self.seen.iter())
            .filter(|(_, seen)| **seen != 0)
            .map(|(nr, _)| nr)
    }
}

/// Name of the program on the classic tracepoint `avc:selinux_audited` (SELinux AVCs).
pub const AVC_PROGRAM: &str = "syscribe_avc";
/// Ring buffer of [`AvcEvent`]s (denials only).
pub const AVC_EVENTS_MAP: &str = "AVC_EVENTS";
/// Its size in bytes (a power-of-two multiple of the page size): 409 events of 640 bytes.
pub const AVC_EVENTS_BYTES: u32 = 256 * 1024;
/// Per-CPU counters of the AVC program (`AVC_COUNTER_*`).
pub const AVC_COUNTERS_MAP: &str = "AVC_COUNTERS";
/// Denials lost because the ring buffer was full.
pub const AVC_COUNTER_DROPPED: u32 = 0;
/// Denials with at least one string cut to its bound (sent, marked in `AvcEvent::truncated`).
pub const AVC_COUNTER_TRUNCATED: u32 = 1;
/// Denials whose trace entry could not be read (sent nothing).
pub const AVC_COUNTER_UNREADABLE: u32 = 2;
pub const AVC_COUNTER_SLOTS: u32 = 3;

/// Bytes kept of `scontext` / `tcontext` (NUL included) and of `tclass`.
pub const AVC_CONTEXT_BYTES: usize = 256;
pub const AVC_CLASS_BYTES: usize = 64;
/// `AvcEvent::truncated` bits: which string was longer than its bound.
pub const AVC_TRUNCATED_SCONTEXT: u32 = 1;
pub const AVC_TRUNCATED_TCONTEXT: u32 = 2;
pub const AVC_TRUNCATED_TCLASS: u32 = 4;

/// Offsets in the `avc:selinux_audited` trace entry (its `format` file, Linux 6.18; checked
/// against the running kernel's format by the user side before attaching).
pub mod avc_format {
    pub const REQUESTED: usize = 8;
    pub const DENIED: usize = 12;
    pub const AUDITED: usize = 16;
    pub const RESULT: usize = 20;
    /// `__data_loc char[]` fields: a u32 whose low 16 bits are the string's offset in the
    /// entry and whose high 16 bits its length (NUL included).
    pub const SCONTEXT: usize = 24;
    pub const TCONTEXT: usize = 28;
    pub const TCLASS: usize = 32;
}

/// One denied SELinux decision, as the `avc:selinux_audited` program copies it (a record of
/// `AVC_EVENTS`). The strings are NUL-terminated within their arrays; `*_len` is the length
/// the kernel gave (NUL included), which exceeds the array when `truncated` says so.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AvcEvent {
    /// `CLOCK_BOOTTIME` of the decision.
    pub boot_ns: u64,
    /// Process id (the audit record's `pid=`) and thread id.
    pub tgid: u32,
    pub tid: u32,
    pub requested: u32,
    pub denied: u32,
    pub audited: u32,
    /// 0 when the denial was not enforced (permissive domain or mode): `permissive=1`.
    pub result: i32,
    /// `AVC_TRUNCATED_*` bits.
    pub truncated: u32,
    pub scontext_len: u32,
    pub tcontext_len: u32,
    pub tclass_len: u32,
    pub comm: [u8; 16],
    pub scontext: [u8; AVC_CONTEXT_BYTES],
    pub tcontext: [u8; AVC_CONTEXT_BYTES],
    pub tclass: [u8; AVC_CLASS_BYTES],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for AvcEvent {}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for SyscallSet {}
#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for IndexEntry {}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for TaskCache {}
#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for SubtreeEntry {}
#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for ExitEntry {}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<SyscallSet>(), MAX_SYSCALLS + 16);
        assert_eq!(align_of::<SyscallSet>(), 8);
        assert_eq!(MAX_SYSCALLS % 8, 0, "the u64 field must start aligned");
        assert_eq!(size_of::<IndexEntry>(), 16);
        assert_eq!(size_of::<TaskCache>(), 24);
        assert_eq!(size_of::<SubtreeEntry>(), 16);
        assert_eq!(size_of::<ExitEntry>(), 16);
        assert_eq!(align_of::<IndexEntry>(), 8);
        assert_eq!(
            size_of::<AvcEvent>(),
            48 + 16 + 2 * AVC_CONTEXT_BYTES + AVC_CLASS_BYTES
        );
        assert_eq!(size_of::<AvcEvent>(), 640);
        assert_eq!(core::mem::offset_of!(AvcEvent, comm), 48);
        assert_eq!(core::mem::offset_of!(AvcEvent, scontext), 64);
        assert_eq!(core::mem::offset_of!(AvcEvent, tcontext), 320);
        assert_eq!(core::mem::offset_of!(AvcEvent, tclass), 576);
        assert_eq!(AVC_EVENTS_BYTES % 4096, 0);
        assert!(AVC_EVENTS_BYTES.is_power_of_two());
    }

    #[test]
    fn index_slots_wrap() {
        assert!(INDEX_SLOTS.is_power_of_two());
        assert_eq!(index_slot(5), 5);
        assert_eq!(index_slot(INDEX_SLOTS as u64 + 5), 5);
    }

    #[test]
    fn numbers_lists_seen_syscalls() {
        let mut set = SyscallSet::EMPTY;
        set.seen[0] = 1;
        set.seen[59] = 1;
        set.seen[MAX_SYSCALLS - 1] = 1;
        let mut numbers = set.numbers();
        assert_eq!(numbers.next(), Some(0));
        assert_eq!(numbers.next(), Some(59));
        assert_eq!(numbers.next(), Some(MAX_SYSCALLS as u32 - 1));
        assert_eq!(numbers.next(), None);
    }
}
