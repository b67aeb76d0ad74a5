//! The kernel side of the syscall recorder.
//!
//! `syscribe_sys_enter` runs on the raw `sys_enter` tracepoint for every task on the machine.
//! It asks one question — is the current task's cgroup (v2 id) being recorded? — with a single
//! hash lookup, and if so marks the syscall in that cgroup's set. Nothing crosses to userspace
//! per syscall: userspace reads the set when the recording ends.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{map, raw_tracepoint},
    maps::{HashMap, PerCpuHashMap},
    programs::RawTracePointContext,
};
use aya_log_ebpf::warn;
use recorder_ebpf::{MAX_RECORDED_CGROUPS, MAX_SYSCALLS, SyscallSet};

/// cgroup v2 id → syscalls seen in it. Userspace inserts an empty set to start recording a
/// cgroup and removes it to stop; the kernel side never inserts.
#[map]
static RECORDED: HashMap<u64, SyscallSet> = HashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

/// cgroup v2 id → syscall entries with a number beyond `MAX_SYSCALLS` (counted, not recorded).
/// Per-CPU so the count is exact without atomics (the bpf target has no atomic RMW in core).
#[map]
static OUT_OF_RANGE: PerCpuHashMap<u64, u64> =
    PerCpuHashMap::with_max_entries(MAX_RECORDED_CGROUPS, 0);

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscribe_sys_enter(ctx: RawTracePointContext) -> i32 {
    // SAFETY: the helper has no preconditions; it reads the current task's default cgroup.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let Some(set) = RECORDED.get_ptr_mut(cgroup_id) else {
        return 0;
    };
    // sys_enter's TP_PROTO is (struct pt_regs *regs, long id).
    let nr: u64 = ctx.arg(1);
    // SAFETY: `set` points into a map value that stays valid for this program run.
    let set = unsafe { &mut *set };
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

const _: () = assert!(MAX_SYSCALLS.is_power_of_two());

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
