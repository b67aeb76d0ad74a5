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
//!
//! ## Subtrees: a node's worth of pods
//! A decision not in the cache, for a cgroup userspace does not record itself, then asks
//! whether the task lives below a recorded subtree (a pod's cgroup). `SUBTREES` is a hash map
//! keyed by the subtree's cgroup id, and `SUBTREE_LEVELS` lists the few distinct depths the
//! subtrees sit at (a node's pods: one to three): at each depth, shallowest first, the task's
//! ancestor there (`bpf_get_current_ancestor_cgroup_id`) is looked up in `SUBTREES`; the first
//! hit makes the task's ancestor one level deeper its container (`DISCOVERED`, or claimed from
//! `FREE_SLOTS`). A miss costs at most `levels × (helper call + hash lookup)`, the same for 1
//! recorded pod as for 110 (at most `MAX_SUBTREES`), and a cached decision nothing more.
#![no_std]

/// Syscall numbers `0..MAX_SYSCALLS` are recorded; larger ones (x32 ABI numbers carry bit 30,
/// or an unknown future syscall) are counted per cgroup in the `OUT_OF_RANGE` map and reported.
/// x86_64 and aarch64 numbers stay below 470 as of Linux 6.18.
pub const MAX_SYSCALLS: usize = 1024;

/// How many cgroups can be recorded at once (entries of `SETS` and `COLLIDED`). Registering
/// one more fails with a named error in userspace; nothing is silently dropped.
pub const MAX_RECORDED_CGROUPS: u32 = 2048;

/// How many cgroup subtrees (e.g. pods) can be recorded at once: every container cgroup that
/// appears directly below one gets its own set, claimed by the kernel side at the container's
/// first syscall. A node runs up to 110 pods by the kubelet's default (`maxPods`, which some
/// clusters raise to 250).
pub const MAX_SUBTREES: u32 = 512;

/// How many distinct depths (below the cgroup2 root) the recorded subtrees may sit at: pods sit
/// at one to three (the kubelet's QoS classes, cgroupfs or systemd driver). The kernel side
/// looks a task's ancestor up at each, so this bounds its cost, whatever the number of subtrees.
pub const MAX_SUBTREE_LEVELS: u32 = 8;

/// `SETS` slots userspace hands to the kernel side (`FREE_SLOTS`) for subtree discovery; the
/// rest stay for cgroups userspace records itself. A full node's 512 containers and the 110
/// pods' sandboxes hold 622 at once, and a finished container's set comes back at the next
/// poll (50 ms).
pub const DISCOVERY_SLOTS: u32 = MAX_RECORDED_CGROUPS / 2;

/// The layout of the pinned maps (`record --pin`, the daemon): a recorder finding maps pinned
/// with another layout (a syscribe from before a map changed type or size) does not adopt
/// them. Bump it whenever a pinned map changes, or what its values mean (3: `SET_EXECED` is
/// also set at the exec after a filter, and capabilities count from it — a set of layout 2
/// with a filter would never count one again).
pub const PIN_LAYOUT: u32 = 3;

/// Index in the per-CPU `COUNTERS`: a discovered container found no free set to claim.
pub const COUNTER_CLAIM_FAILED: u32 = 0;
/// How many `COUNTERS` there are.
pub const COUNTER_SLOTS: u32 = 1;

/// Slots of the direct-mapped `INDEX` (a power of two; 16 bytes each).
pub const INDEX_SLOTS: u32 = 4096;

/// Processes whose exit is remembered (least recently exited ones are forgotten first).
pub const EXITED_ENTRIES: u32 = 16384;

// Map and program names, shared with userspace.

/// The direct-mapped index: `INDEX_SLOTS` [`IndexEntry`]s, by [`index_slot`].
pub const INDEX_MAP: &str = "INDEX";
/// The recorded sets: one [`SyscallSet`] per slot.
pub const SETS_MAP: &str = "SETS";
/// Recorded cgroup id → its `SETS` slot, for ids whose `INDEX` slot another one holds.
pub const COLLIDED_MAP: &str = "COLLIDED";
/// Recorded subtrees: subtree cgroup id → `SubtreeEntry`.
pub const SUBTREES_MAP: &str = "SUBTREES";
/// The distinct levels of the recorded subtrees, shallowest first, packed from index 0 (a 0
/// ends the list: a subtree is never the root).
pub const SUBTREE_LEVELS_MAP: &str = "SUBTREE_LEVELS";
/// One-entry array: the `PIN_LAYOUT` of the pinned maps.
pub const LAYOUT_MAP: &str = "LAYOUT";
pub const LAYOUT_MAP_ENTRIES: u32 = 1;
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
/// Per-CPU array: out-of-range syscall entries counted per `SETS` slot.
pub const OUT_OF_RANGE_MAP: &str = "OUT_OF_RANGE";
/// `EXITED`: process id (tgid) → [`ExitEntry`].
pub const EXITED_MAP: &str = "EXITED";
/// Name of the program that records syscalls (raw tracepoint `sys_enter`).
pub const RECORDER_PROGRAM: &str = "syscribe_sys_enter";
/// The program that changes `GENERATION` when a task is created (raw tracepoint
/// `task_newtask`).
pub const NEW_TASK_PROGRAM: &str = "syscribe_task_new";
/// The program that changes `GENERATION` when a task changes cgroup (raw tracepoint
/// `cgroup_attach_task`).
pub const CGROUP_ATTACH_PROGRAM: &str = "syscribe_cgroup_attach";
/// Remembers each exiting process's cgroup in `EXITED`, for the log enricher (raw tracepoint
/// `sched_process_exit`).
pub const TASK_EXIT_PROGRAM: &str = "syscribe_task_exit";
/// Name of the empty raw `sys_enter` program: the benchmark's floor, never used to record.
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

/// One recorded subtree (a value of `SUBTREES`, keyed by `cgroup_id`): the cgroup (a pod's,
/// say) and its depth below the cgroup2 root. Tasks whose ancestor at `level` is `cgroup_id`
/// belong to the container whose cgroup is their ancestor at `level + 1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubtreeEntry {
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

/// # Where a container's profile starts (the runtime boundary)
///
/// A container runtime makes many syscalls in the container's cgroup before the workload starts:
/// namespaces, mounts, the root switch, capabilities. The profile must leave out what only the
/// runtime's setup needs, and keep everything from where the runtime installs the container's
/// seccomp filter on, since that is where the profile will be enforced: what the runtime does
/// after its filter (runc's and crun's last steps before the final `execve`) must be allowed.
///
/// What runc 1.1 and crun 1.8 do in the container's init process (strace, busybox bundles,
/// with and without a filter, `noNewPrivileges` true and false), after it joined the cgroup:
/// - runc: `pivot_root(".", ".")`, `mount`/`umount2` of the old root, `sethostname` (only with
///   a UTS namespace of its own: a Kubernetes app container joins its sandbox's and does not),
///   ~20 `mount`s of masked and read-only paths, then `prctl`, a sync `write`/`read`, **the
///   filter when `noNewPrivileges` is false** (Kubernetes' default), fd cleanup, `capget`,
///   bounding-set `prctl`s, `setgroups`/`setgid`/`setuid`, `capset`, ambient `prctl`s, the exec
///   fifo, **the filter when `noNewPrivileges` is true**, `execve` of the entrypoint.
/// - crun: masks and read-only remounts *before* `pivot_root`; after it `mount`, `umount2` ×2,
///   console and cwd, `setsid`, `sethostname`, `umask`, **the filter when `noNewPrivileges`
///   is false**, `prctl` ×39, `setresgid`/`setresuid`, `capset`, `rt_sigaction` ×62, sync
///   `write`, **the filter when it is true** (read from a file: `lseek`, `statx`, `read`),
///   `execve`.
///
/// In every case the last root or namespace setup step comes at or before the filter, and the
/// filter before the entrypoint's `execve`. So each discovered container's set runs this
/// state machine (the `SET_*` flags), matching no process name:
/// - `SET_AWAIT_BOUNDARY` (claimed, nothing seen yet): a seccomp filter install
///   (`seccomp(SECCOMP_SET_MODE_FILTER, …, prog)` or `prctl(PR_SET_SECCOMP,
///   SECCOMP_MODE_FILTER, prog)` with a program; libseccomp's probes pass none) → the set is
///   emptied, `SET_FILTER_SEEN`: recorded from the next syscall on (the boundary is the filter
///   itself). `pivot_root` or `chroot` entered → `SET_ROOT_SWITCHED`, the set is emptied.
/// - `SET_AWAIT_BOUNDARY | SET_ROOT_SWITCHED`: each root or namespace setup syscall
///   ([`Abi::is_setup`]: mount, umount2, pivot_root, chroot, sethostname, setdomainname,
///   unshare, setns and the new mount API) empties the set again, so the profile keeps only
///   what follows the runtime's last setup step, which is at or before where either runtime
///   installs its filter: the runtime still starts under the profile. A filter install →
///   `SET_FILTER_SEEN` as above. `execve`/`execveat` entered → `SET_EXECED`: the boundary was
///   the last setup step; the exec itself is recorded.
/// - `SET_FILTER_SEEN`: a later `execve`/`execveat` adds `SET_EXECED` — where the container's
///   own process starts, from which its capability checks count ([`counts_capabilities`]).
/// - `SET_FILTER_SEEN` or `SET_EXECED`: final; nothing is emptied again. A filter the workload
///   installs itself after its exec is not a boundary, and processes that join the container
///   later (`runc exec`, `kubectl exec`) never switch root: they only add to the set.
///
/// "Emptied" keeps the earlier syscalls as [`SEEN_BEFORE`], so a container whose boundary is
/// never found — its root switch was not seen (it started before the recording, or its runtime
/// does not switch roots), or nothing was exec'd after it (created, never started) — still
/// gets its whole recording as its profile, and userspace warns naming which of the two
/// ([`boundary_of`]). A filter install empties for good: it is a boundary for sure.
///
/// Syscalls are matched on entry (`sys_enter`): a setup step that fails still counts, as does
/// an exec that fails (a runtime whose exec fails has no container to record anyway).
///
/// `SyscallSet::flags`: a discovered container whose boundary is not found yet (set by the
/// kernel side when it claims the set).
pub const SET_AWAIT_BOUNDARY: u64 = 1;
/// `SyscallSet::flags`: the container's seccomp filter was installed; recorded from then on.
pub const SET_FILTER_SEEN: u64 = 2;
/// `SyscallSet::flags`: the container's root was switched (`pivot_root`/`chroot`).
pub const SET_ROOT_SWITCHED: u64 = 4;
/// `SyscallSet::flags`: after the root switch, something was exec'd: recorded from the last
/// setup step before it. After a filter (with `SET_FILTER_SEEN`): the container's process was
/// exec'd.
pub const SET_EXECED: u64 = 8;

/// `SyscallSet::seen` bit: entered since the boundary (or since the recording began).
pub const SEEN: u8 = 1;
/// `SyscallSet::seen` bit: entered before the last boundary step (see the boundary docs).
pub const SEEN_BEFORE: u8 = 2;

/// Where a container's recording starts, from its set's flags (see the boundary docs above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// The runtime's seccomp filter install.
    Filter,
    /// The runtime's last root or namespace setup step before the exec that followed its root
    /// switch.
    Exec,
    /// Not found: no root switch was seen.
    RootNotSwitched,
    /// Not found: the root was switched, but nothing was exec'd after it.
    NotExeced,
}

/// The boundary a set's `flags` say was found.
pub const fn boundary_of(flags: u64) -> Boundary {
    if flags & SET_FILTER_SEEN != 0 {
        Boundary::Filter
    } else if flags & SET_EXECED != 0 {
        Boundary::Exec
    } else if flags & SET_ROOT_SWITCHED != 0 {
        Boundary::NotExeced
    } else {
        Boundary::RootNotSwitched
    }
}

/// Syscall numbers the boundary watches, for one architecture (the kernel side uses the
/// target's; userspace checks both tables against libseccomp).
pub struct Abi {
    pub seccomp: u64,
    pub prctl: u64,
    pub execve: u64,
    pub execveat: u64,
    /// Root switches: the start of the runtime's last stretch.
    pub root_switch: [u64; 2],
    /// Root and namespace setup steps (root switches included).
    pub setup: [u64; 15],
    /// Offsets of the first three syscall arguments in `struct pt_regs`.
    pub arg_offsets: [u64; 3],
}

impl Abi {
    /// Whether `nr` is a root or namespace setup step.
    #[inline(always)]
    pub fn is_setup(&self, nr: u64) -> bool {
        let mut i = 0;
        while i < self.setup.len() {
            if self.setup[i] == nr {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Setup steps numbered alike on every architecture (the new mount API, Linux 5.2+):
/// open_tree, move_mount, fsopen, fsconfig, fsmount, mount_setattr, open_tree_attr.
const NEW_MOUNT_API: [u64; 7] = [428, 429, 430, 431, 432, 442, 467];

/// Names of [`Abi::setup`], in order (for the tests).
pub const SETUP_NAMES: [&str; 15] = [
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "sethostname",
    "setdomainname",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "mount_setattr",
    "open_tree_attr",
];

const fn setup(own: [u64; 8]) -> [u64; 15] {
    let mut all = [0; 15];
    let mut i = 0;
    while i < 8 {
        all[i] = own[i];
        i += 1;
    }
    while i < 15 {
        all[i] = NEW_MOUNT_API[i - 8];
        i += 1;
    }
    all
}

pub const ABI_X86_64: Abi = Abi {
    seccomp: 317,
    prctl: 157,
    execve: 59,
    execveat: 322,
    root_switch: [155, 161],
    setup: setup([165, 166, 155, 161, 170, 171, 272, 308]),
    // di, si, dx
    arg_offsets: [14 * 8, 13 * 8, 12 * 8],
};

pub const ABI_AARCH64: Abi = Abi {
    seccomp: 277,
    prctl: 167,
    execve: 221,
    execveat: 281,
    root_switch: [41, 51],
    setup: setup([40, 39, 41, 51, 161, 162, 97, 268]),
    // regs[0..3]
    arg_offsets: [0, 8, 16],
};

/// `SyscallSet::flags`: a cgroup userspace registered itself before anything ran in it
/// (`record -- CMD`): no runtime runs there, so there is no boundary to wait for.
pub const SET_WHOLE_CGROUP: u64 = 1 << 16;

/// # Capabilities a container uses
///
/// `syscribe_capable` runs on the raw tracepoint `cap_capable` (Linux 6.14+), which the
/// capability LSM (commoncap) fires for every capability check it decides, with the result:
/// `(cred, target_ns, capable_ns, cap, ret)`. It marks `cap` in the current task's set when:
/// - the check passed (`ret == 0`): the task needed the capability and had it;
/// - it was not a silent probe: the kernel asks "would this task have it?" with
///   `CAP_OPT_NOAUDIT` (`ns_capable_noaudit`, `has_ns_capability_noaudit`, and the
///   overcommit check `cap_vm_enough_memory`, which probes `CAP_SYS_ADMIN` at every private
///   mapping). The tracepoint does not carry `opts`, so the program looks at the kernel stack
///   instead: a probe has one of those functions among its callers ([`CodeRange`]s userspace
///   finds in /proc/kallsyms, in `CAP_PROBES`). Only capabilities not marked yet pay for that;
/// - it was made with the task's own credentials (the tracepoint's `cred` is the task's
///   `real_cred`, at the offset userspace finds in the kernel's BTF, `CAP_TASK`): overlayfs
///   checks its *mounter's* credentials — the runtime's, with every capability — on the
///   layers beneath a container's root (`CAP_SYS_ADMIN` to read its trusted xattrs at each
///   lookup, `CAP_DAC_READ_SEARCH`, `CAP_DAC_OVERRIDE` on copy-up), which the container
///   neither has nor needs;
/// - the set counts capabilities ([`counts_capabilities`]): from the exec of the container's
///   own process; the runtime's steps before it (runc's `setgroups`/`setuid`/`capset`, even
///   under the filter, and bounding-set drops) are the runtime's.
///
/// (The design asked for the BPF LSM hook `capable`, attached per cgroup: this kernel lists the
/// BPF LSM as active but refuses to load any `BPF_PROG_TYPE_LSM` program, or fentry/fexit,
/// with EPERM before verifying it. The tracepoint needs neither, and sees only what commoncap
/// decided — which is what a container's capability sets decide.)
pub const CAPABLE_PROGRAM: &str = "syscribe_capable";
/// The raw tracepoint it attaches to.
pub const CAPABLE_TRACEPOINT: &str = "cap_capable";
/// Capability numbers recorded: `0..MAX_CAPABILITIES` (`CAP_LAST_CAP` is 40 in Linux 6.18).
pub const MAX_CAPABILITIES: usize = 64;
/// `CAP_PROBES`: the code of the kernel functions that make silent capability probes.
pub const CAP_PROBES_MAP: &str = "CAP_PROBES";
pub const MAX_CAP_PROBES: u32 = 8;
/// `CAP_TASK[0]`: the byte offset of `real_cred` in `struct task_struct` (0: unknown).
pub const CAP_TASK_MAP: &str = "CAP_TASK";
/// Kernel stack frames looked at for a probe's function (the check's wrapper is 3 to 6
/// frames deep, below the program's own frames).
pub const CAP_PROBE_FRAMES: usize = 12;

/// Kernel code addresses `[start, end)` (a function's), a value of `CAP_PROBES` (packed from
/// index 0; `start == 0` ends the list).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeRange {
    pub start: u64,
    pub end: u64,
}

/// Whether a set's capability checks count yet: in a cgroup registered by userspace, always;
/// in a discovered container, from the exec of its own process on (`SET_EXECED`: after its
/// root switch, or after its filter). Not from the filter itself: with `noNewPrivileges`
/// false runc installs the filter first and then drops privileges (`setgroups`, `setresuid`,
/// `capset`: SETGID, SETUID, SETPCAP), which are the runtime's, not the container's. The one
/// place that decides.
#[inline(always)]
pub const fn counts_capabilities(flags: u64) -> bool {
    flags & (SET_WHOLE_CGROUP | SET_EXECED) != 0
}

/// What one recorded cgroup did: a value of `SETS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallSet {
    /// `seen[nr] & SEEN != 0` once syscall `nr` was entered by a task of this cgroup (since its
    /// boundary, for a container); `SEEN_BEFORE` marks it entered before the boundary.
    ///
    /// One byte per syscall rather than one bit: setting a byte's `SEEN` is idempotent, so CPUs
    /// racing on the same set need no atomic read-modify-write (which the bpf target lacks),
    /// and the hot path stores only when `SEEN` is still clear (no cache-line ping-pong once a
    /// syscall is known).
    pub seen: [u8; MAX_SYSCALLS],
    /// The last syscall number `>= MAX_SYSCALLS` entered (0: none).
    pub last_out_of_range: u64,
    /// `SET_*` flags.
    pub flags: u64,
    /// `capabilities[cap] != 0` once a task of this cgroup passed a capability check for `cap`
    /// (see [`counts_capabilities`]; bytes rather than bits for the reason `seen` has them).
    pub capabilities: [u8; MAX_CAPABILITIES],
}

impl SyscallSet {
    pub const EMPTY: Self = Self {
        seen: [0; MAX_SYSCALLS],
        last_out_of_range: 0,
        flags: 0,
        capabilities: [0; MAX_CAPABILITIES],
    };

    /// The syscall numbers seen since the boundary (or since the recording began), ascending.
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.numbers_with(SEEN)
    }

    /// Every syscall number seen, before the boundary too, ascending.
    pub fn all_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.numbers_with(SEEN | SEEN_BEFORE)
    }

    /// What the profile holds: since the boundary when one was found, else everything.
    pub fn profile_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        match boundary_of(self.flags) {
            Boundary::Filter | Boundary::Exec => self.numbers_with(SEEN),
            Boundary::RootNotSwitched | Boundary::NotExeced => {
                self.numbers_with(SEEN | SEEN_BEFORE)
            }
        }
    }

    fn numbers_with(&self, bits: u8) -> impl Iterator<Item = u32> + '_ {
        (0u32..)
            .zip(self.seen.iter())
            .filter(move |(_, seen)| **seen & bits != 0)
            .map(|(nr, _)| nr)
    }

    /// A boundary step: what was seen so far becomes `SEEN_BEFORE` only. Works on 8 bytes at a
    /// time (the kernel side runs it while the runtime sets the container up).
    #[inline(always)]
    pub fn forget_before(&mut self) {
        const BEFORE: u64 = u64::from_ne_bytes([SEEN_BEFORE; 8]);
        let words = self.seen.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        while i < MAX_SYSCALLS / 8 {
            // SAFETY: `seen` starts the 8-aligned struct and is a multiple of 8 bytes long.
            unsafe {
                let word = words.add(i);
                // Per byte: SEEN moves up to SEEN_BEFORE, SEEN_BEFORE stays, bits above go.
                *word = (*word | (*word << 1)) & BEFORE;
            }
            i += 1;
        }
    }

    /// The filter boundary: everything seen so far is forgotten.
    #[inline(always)]
    pub fn forget_all(&mut self) {
        let words = self.seen.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        while i < MAX_SYSCALLS / 8 {
            // SAFETY: as in `forget_before`.
            unsafe { *words.add(i) = 0 };
            i += 1;
        }
    }

    /// The capabilities used, as a mask (bit `cap` for `CAP_*` number `cap`).
    pub fn capability_mask(&self) -> u64 {
        (0u32..)
            .zip(self.capabilities.iter())
            .filter(|(_, used)| **used != 0)
            .fold(0, |mask, (cap, _)| mask | 1 << cap)
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
/// How many `AVC_COUNTERS` there are.
pub const AVC_COUNTER_SLOTS: u32 = 3;

/// Bytes kept of `scontext` and of `tcontext` (NUL included).
pub const AVC_CONTEXT_BYTES: usize = 256;
/// Bytes kept of `tclass` (NUL included).
pub const AVC_CLASS_BYTES: usize = 64;
// `AvcEvent::truncated` bits: which string was longer than its bound.
/// `AvcEvent::truncated`: `scontext` was cut to `AVC_CONTEXT_BYTES`.
pub const AVC_TRUNCATED_SCONTEXT: u32 = 1;
/// `AvcEvent::truncated`: `tcontext` was cut to `AVC_CONTEXT_BYTES`.
pub const AVC_TRUNCATED_TCONTEXT: u32 = 2;
/// `AvcEvent::truncated`: `tclass` was cut to `AVC_CLASS_BYTES`.
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
#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for CodeRange {}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(
            size_of::<SyscallSet>(),
            MAX_SYSCALLS + 16 + MAX_CAPABILITIES
        );
        assert_eq!(
            core::mem::offset_of!(SyscallSet, capabilities),
            MAX_SYSCALLS + 16
        );
        assert_eq!(align_of::<SyscallSet>(), 8);
        assert_eq!(MAX_SYSCALLS % 8, 0, "the u64 field must start aligned");
        assert_eq!(size_of::<IndexEntry>(), 16);
        assert_eq!(size_of::<TaskCache>(), 24);
        assert_eq!(size_of::<SubtreeEntry>(), 16);
        assert_eq!(size_of::<ExitEntry>(), 16);
        assert_eq!(size_of::<CodeRange>(), 16);
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

    /// A node's worth: 110 pods (the kubelet's default `maxPods`) with 512 containers and a
    /// sandbox each, recorded at once, with sets left for userspace's own recordings.
    #[test]
    fn the_tables_hold_a_node() {
        const PODS: u32 = 110;
        const CONTAINERS: u32 = 512;
        assert!(MAX_SUBTREES >= PODS);
        assert!(DISCOVERY_SLOTS >= CONTAINERS + PODS);
        assert!(DISCOVERY_SLOTS < MAX_RECORDED_CGROUPS);
        assert!(
            MAX_SUBTREE_LEVELS >= 3,
            "guaranteed, burstable and best-effort pods"
        );
        assert!(INDEX_SLOTS >= MAX_RECORDED_CGROUPS - DISCOVERY_SLOTS);
    }

    #[test]
    fn index_slots_wrap() {
        assert!(INDEX_SLOTS.is_power_of_two());
        assert_eq!(index_slot(5), 5);
        assert_eq!(index_slot(INDEX_SLOTS as u64 + 5), 5);
    }

    #[test]
    fn boundary_steps_keep_what_came_before_apart() {
        let mut set = SyscallSet::EMPTY;
        set.seen[0] = SEEN;
        set.seen[8] = SEEN_BEFORE;
        set.seen[9] = SEEN | SEEN_BEFORE;
        set.seen[MAX_SYSCALLS - 1] = SEEN;
        set.forget_before();
        assert_eq!(set.numbers().count(), 0);
        assert!(set.all_numbers().eq([0, 8, 9, MAX_SYSCALLS as u32 - 1]));
        assert!(set.seen.iter().all(|b| *b == 0 || *b == SEEN_BEFORE));
        set.seen[1] = SEEN;
        set.flags = SET_AWAIT_BOUNDARY | SET_ROOT_SWITCHED;
        assert_eq!(boundary_of(set.flags), Boundary::NotExeced);
        assert_eq!(set.profile_numbers().count(), 5, "no boundary: everything");
        set.flags = SET_ROOT_SWITCHED | SET_EXECED;
        assert_eq!(boundary_of(set.flags), Boundary::Exec);
        assert!(set.profile_numbers().eq([1]));
        assert_eq!(boundary_of(SET_AWAIT_BOUNDARY), Boundary::RootNotSwitched);
        assert_eq!(boundary_of(0), Boundary::RootNotSwitched);
        assert_eq!(boundary_of(SET_FILTER_SEEN), Boundary::Filter);
        set.forget_all();
        assert_eq!(set.all_numbers().count(), 0);
    }

    #[test]
    fn setup_tables_hold_the_root_switches() {
        for abi in [&ABI_X86_64, &ABI_AARCH64] {
            assert_eq!(abi.setup.len(), SETUP_NAMES.len());
            for nr in abi.root_switch {
                assert!(abi.is_setup(nr));
            }
            assert!(!abi.is_setup(abi.execve) && !abi.is_setup(abi.seccomp));
        }
        assert_eq!(ABI_X86_64.setup[2], 155, "pivot_root");
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

    #[test]
    fn capability_mask_has_a_bit_per_used_capability() {
        let mut set = SyscallSet::EMPTY;
        assert_eq!(set.capability_mask(), 0);
        set.capabilities[0] = 1; // CAP_CHOWN
        set.capabilities[10] = 1; // CAP_NET_BIND_SERVICE
        set.capabilities[MAX_CAPABILITIES - 1] = 1;
        assert_eq!(set.capability_mask(), 1 | 1 << 10 | 1 << 63);
    }

    #[test]
    fn capabilities_count_only_from_the_containers_exec() {
        assert!(counts_capabilities(SET_WHOLE_CGROUP));
        // Under the filter, before the exec: runc dropping privileges (NNP false).
        assert!(!counts_capabilities(SET_FILTER_SEEN));
        assert!(counts_capabilities(SET_FILTER_SEEN | SET_EXECED));
        assert!(counts_capabilities(SET_ROOT_SWITCHED | SET_EXECED));
        assert!(!counts_capabilities(SET_AWAIT_BOUNDARY | SET_ROOT_SWITCHED));
        assert!(!counts_capabilities(SET_AWAIT_BOUNDARY));
        // A filter-boundary container that exec'd still reports the filter as its boundary.
        assert_eq!(boundary_of(SET_FILTER_SEEN | SET_EXECED), Boundary::Filter);
        // Claimed by the kernel side, flags not written yet: the runtime's, not counted.
        assert!(!counts_capabilities(0));
    }
}
