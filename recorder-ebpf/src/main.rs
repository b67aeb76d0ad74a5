//! The kernel side of the syscall recorder.
//!
//! `syscribe_sys_enter` runs on the raw `sys_enter` tracepoint for every task on the machine.
//! It asks one question — is the current task's cgroup (v2 id) being recorded? — by reading one
//! inlined array slot (see the crate docs), and if so marks the syscall in that cgroup's set.
//! Nothing crosses to userspace per syscall: userspace reads the set when the recording ends.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{map, raw_tracepoint},
    maps::{Array, HashMap, PerCpuHashMap},
    programs::RawTracePointContext,
};
use aya_log_ebpf::warn;
use recorder_ebpf::{INDEX_SLOTS, IndexEntry, MAX_RECORDED_CGROUPS, SyscallSet, index_slot};

/// Direct-mapped `cgroup id % INDEX_SLOTS → IndexEntry`. Written by userspace only.
#[map]
static INDEX: Array<IndexEntry> = Array::with_max_entries(INDEX_SLOTS, 0);

/// The syscall sets of recorded cgroups, by the slot userspace assigned.
#[map]
static SETS: Array<SyscallSet> = Array::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// Recorded cgroups whose `INDEX` slot was already taken: cgroup id → `SETS` slot.
#[map]
static COLLIDED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// cgroup id → syscall entries with a number beyond `MAX_SYSCALLS` (counted, not recorded).
/// Per-CPU so the count is exact without atomics.
#[map]
static OUT_OF_RANGE: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscribe_sys_enter(ctx: RawTracePointContext) -> i32 {
    // SAFETY: the helper has no preconditions; it reads the current task's default cgroup.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let Some(entry) = INDEX.get(index_slot(cgroup_id)) else {
        return 0;
    };
    let set_slot = if entry.cgroup_id == cgroup_id {
        entry.set
    } else if entry.collisions == 0 {
        return 0;
    } else {
        // SAFETY: a plain u32 value, copied out immediately.
        match unsafe { COLLIDED.get(cgroup_id) } {
            Some(slot) => *slot,
            None => return 0,
        }
    };
    let Some(set) = SETS.get_ptr_mut(set_slot) else {
        return 0;
    };
    // SAFETY: `set` points into a map value that stays valid for this program run.
    let set = unsafe { &mut *set };
    // sys_enter's TP_PROTO is (struct pt_regs *regs, long id).
    let nr: u64 = ctx.arg(1);
    if let Some(seen) = set.seen.get_mut(nr as usize) {
        if *seen == 0 {
            *seen = 1;
        }
    } else {
        // Rare path: a number outside the recorded range. Counted, and logged the first time.
        set.last_out_of_range = nr;
        match OUT_OF_RANGE.get_ptr_mut(cgroup_id) {
            // SAFETY: a per-CPU value of this map, valid for this program run on this CPU.
            Some(count) => unsafe { *count += 1 },
            None => {
                warn!(
                    &ctx,
                    "cgroup {}: syscall number {} is outside the recorded range", cgroup_id, nr
                );
                if OUT_OF_RANGE.insert(cgroup_id, 1, 0).is_err() {
                    warn!(
                        &ctx,
                        "cgroup {}: out-of-range counter table full", cgroup_id
                    );
                }
            }
        }
    }
    0
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
