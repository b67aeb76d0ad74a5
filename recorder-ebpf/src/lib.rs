//! Types shared by the eBPF recorder (kernel side) and `syscribe` (user side).
//!
//! Plain `#[repr(C)]` data with no padding, no bool/Option/enum fields, so the user side can read
//! the kernel's bytes as-is (`aya::Pod`, behind the `user` feature).
#![no_std]

/// Syscall numbers `0..MAX_SYSCALLS` are recorded; larger ones (x32 ABI numbers carry bit 30,
/// or an unknown future syscall) are counted per cgroup in the `OUT_OF_RANGE` map and reported.
/// x86_64 and aarch64 numbers stay below 470 as of Linux 6.18.
pub const MAX_SYSCALLS: usize = 1024;

/// Bound of the map of recorded cgroups. Registering one more fails with a named error in
/// userspace; nothing is silently dropped.
pub const MAX_RECORDED_CGROUPS: u32 = 1024;

/// Name of the map `cgroup id → SyscallSet`.
pub const RECORDED_MAP: &str = "RECORDED";
/// Name of the per-CPU map `cgroup id → count of out-of-range syscall entries`.
pub const OUT_OF_RANGE_MAP: &str = "OUT_OF_RANGE";
/// Name of the program that records syscalls (raw tracepoint `sys_enter`).
pub const RECORDER_PROGRAM: &str = "syscribe_sys_enter";
/// Name of the empty raw `sys_enter` program: the benchmark's floor, never used to record.
pub const FLOOR_PROGRAM: &str = "syscribe_floor";

/// What one recorded cgroup did: the value of the `RECORDED` map.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallSet {
    /// `seen[nr] != 0` once syscall `nr` was entered by a task of this cgroup.
    ///
    /// One byte per syscall rather than one bit: setting a byte to 1 is idempotent, so CPUs
    /// racing on the same set need no atomic read-modify-write, and the hot path stores only
    /// when the byte is still 0 (no cache-line ping-pong once a syscall is known).
    pub seen: [u8; MAX_SYSCALLS],
    /// The last syscall number `>= MAX_SYSCALLS` entered (0: none); they are counted per CPU
    /// in the `OUT_OF_RANGE` map, not recorded.
    pub last_out_of_range: u64,
}

impl SyscallSet {
    pub const EMPTY: Self = Self {
        seen: [0; MAX_SYSCALLS],
        last_out_of_range: 0,
    };

    /// The syscall numbers marked as seen, ascending.
    pub fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        (0u32..)
            .zip(self.seen.iter())
            .filter(|(_, seen)| **seen != 0)
            .map(|(nr, _)| nr)
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only integer fields, no padding (asserted in the tests below).
unsafe impl aya::Pod for SyscallSet {}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, size_of};

    use super::*;

    #[test]
    fn syscall_set_layout_has_no_padding() {
        assert_eq!(size_of::<SyscallSet>(), MAX_SYSCALLS + 8);
        assert_eq!(align_of::<SyscallSet>(), 8);
        assert_eq!(MAX_SYSCALLS % 8, 0, "the u64 counters must start aligned");
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
