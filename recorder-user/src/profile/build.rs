//! Recorded syscall numbers → a minimal allowlist profile.

use std::collections::BTreeSet;

use libseccomp::{ScmpArch, ScmpSyscall};

use super::seccomp::{Action, Dropped, RecordingMetadata, Seccomp, SyscallRule};

/// What the recorder saw in one cgroup, in the native architecture's numbering.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedSyscalls {
    pub numbers: BTreeSet<u32>,
    /// Syscall entries the recorder counted but could not record (number out of its range).
    pub out_of_range: u64,
    /// The capabilities used (bit n: capability number n); None when they were not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<u64>,
}

/// The profile built from a recording, and what could not go into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltProfile {
    pub seccomp: Seccomp,
    /// Recorded numbers that libseccomp cannot name on the native architecture.
    pub unnamed: Vec<u32>,
}

/// `SCMP_ARCH_*` names of the native architecture and the compat ABIs its kernel also runs,
/// in the order upstream SPO writes them. Only architecture names are tabled here; syscall
/// names always come from libseccomp.
pub fn native_architectures() -> Vec<String> {
    let names: &[&str] = match ScmpArch::native() {
        ScmpArch::X8664 => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        ScmpArch::Aarch64 => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        ScmpArch::X86 => &["SCMP_ARCH_X86"],
        ScmpArch::Arm => &["SCMP_ARCH_ARM"],
        ScmpArch::Ppc64Le => &["SCMP_ARCH_PPC64LE"],
        ScmpArch::S390X => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        ScmpArch::Riscv64 => &["SCMP_ARCH_RISCV64"],
        _ => &["SCMP_ARCH_NATIVE"],
    };
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The name of a native syscall number, from libseccomp.
pub fn syscall_name(nr: u32) -> Option<String> {
    let nr = i32::try_from(nr).ok()?;
    ScmpSyscall::from(nr)
        .get_name_by_arch(ScmpArch::native())
        .ok()
}

/// Builds the minimal profile: default `SCMP_ACT_ERRNO`, one `SCMP_ACT_ALLOW` rule with the
/// sorted names of everything recorded.
pub fn build_profile(recorded: &RecordedSyscalls, command: Vec<String>) -> BuiltProfile {
    let mut names = BTreeSet::new();
    let mut unnamed = Vec::new();
    for &nr in &recorded.numbers {
        match syscall_name(nr) {
            Some(name) => {
                names.insert(name);
            }
            None => unnamed.push(nr),
        }
    }
    let syscalls = if names.is_empty() {
        Vec::new()
    } else {
        vec![SyscallRule {
            names: names.into_iter().collect(),
            action: Action::Allow,
            errno_ret: None,
            args: Vec::new(),
        }]
    };
    let seccomp = Seccomp {
        default_action: Action::Errno,
        default_errno_ret: None,
        architectures: native_architectures(),
        flags: Vec::new(),
        listener_path: None,
        listener_metadata: None,
        syscalls,
        syscribe: Some(RecordingMetadata {
            command,
            container: None,
            dropped: Dropped {
                out_of_range: recorded.out_of_range,
                unnamed: unnamed.len() as u64,
            },
            capabilities: recorded.capabilities.map(super::capabilities::names),
        }),
    };
    BuiltProfile { seccomp, unnamed }
}

/// What a Go runtime (runc's init) may do on any of its threads between installing the
/// container's filter and exec'ing the container's process — its scheduler, timers, preemption
/// signals and memory scavenger run when they please, so one recording may see them and the next
/// run need them (seen: a replay dying in `futexwakeup` because the recording had no futex).
/// Container profiles always allow these, as upstream does with its runc base profile.
pub const RUNTIME_HANDOFF: &[&str] = &[
    "epoll_pwait",
    "futex",
    "getpid",
    "gettid",
    "madvise",
    "mmap",
    "munmap",
    "nanosleep",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "sigaltstack",
    "tgkill",
];

/// Adds [`RUNTIME_HANDOFF`] to the profile's allow rule; returns the names it added (those
/// the recording had not seen).
pub fn add_runtime_handoff(seccomp: &mut Seccomp) -> Vec<String> {
    if seccomp.syscalls.is_empty() {
        seccomp.syscalls.push(SyscallRule {
            names: Vec::new(),
            action: Action::Allow,
            errno_ret: None,
            args: Vec::new(),
        });
    }
    let rule = &mut seccomp.syscalls[0];
    let mut names: BTreeSet<String> = rule.names.drain(..).collect();
    let added: Vec<String> = RUNTIME_HANDOFF
        .iter()
        .filter(|name| names.insert((**name).to_owned()))
        .map(|name| (*name).to_owned())
        .collect();
    rule.names = names.into_iter().collect();
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_handoff_is_added_once_and_reported() {
        let recorded = RecordedSyscalls {
            numbers: [nr("read"), nr("futex")].into(),
            out_of_range: 0,
            capabilities: None,
        };
        let mut built = build_profile(&recorded, Vec::new());
        let added = add_runtime_handoff(&mut built.seccomp);
        assert!(!added.contains(&"futex".to_owned()), "already recorded");
        assert_eq!(added.len(), RUNTIME_HANDOFF.len() - 1);
        let names = &built.seccomp.syscalls[0].names;
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(names.contains(&"read".to_owned()) && names.contains(&"tgkill".to_owned()));
        for name in RUNTIME_HANDOFF {
            assert!(syscall_name(nr(name)).is_some(), "{name} is a real syscall");
        }
    }

    fn nr(name: &str) -> u32 {
        let raw: i32 = ScmpSyscall::from_name(name).expect(name).into();
        u32::try_from(raw).expect("native numbers are positive")
    }

    #[test]
    fn names_are_sorted_and_come_from_libseccomp() {
        let recorded = RecordedSyscalls {
            numbers: [nr("write"), nr("uname"), nr("execve"), nr("getcwd")].into(),
            out_of_range: 0,
            capabilities: None,
        };
        let built = build_profile(&recorded, vec!["x".into()]);
        assert!(built.unnamed.is_empty());
        assert_eq!(built.seccomp.default_action, Action::Errno);
        assert_eq!(built.seccomp.syscalls.len(), 1);
        assert_eq!(built.seccomp.syscalls[0].action, Action::Allow);
        assert_eq!(
            built.seccomp.syscalls[0].names,
            ["execve", "getcwd", "uname", "write"]
        );
        assert_eq!(built.seccomp.architectures[0], native_architectures()[0]);
    }

    #[test]
    fn unnamed_numbers_and_out_of_range_are_counted() {
        let recorded = RecordedSyscalls {
            numbers: [nr("read"), 1000].into(),
            out_of_range: 7,
            capabilities: None,
        };
        let built = build_profile(&recorded, Vec::new());
        assert_eq!(built.unnamed, [1000]);
        let dropped = built.seccomp.syscribe.expect("metadata").dropped;
        assert_eq!(
            dropped,
            Dropped {
                out_of_range: 7,
                unnamed: 1
            }
        );
        assert_eq!(dropped.total(), 8);
        assert_eq!(built.seccomp.syscalls[0].names, ["read"]);
    }

    #[test]
    fn empty_recording_has_no_rule() {
        let built = build_profile(&RecordedSyscalls::default(), Vec::new());
        assert!(built.seccomp.syscalls.is_empty());
    }

    #[test]
    fn capabilities_are_named_in_the_metadata_and_absent_when_not_recorded() {
        let recorded = RecordedSyscalls {
            numbers: [nr("chown")].into(),
            out_of_range: 0,
            capabilities: Some(1 << 10 | 1),
        };
        let meta = build_profile(&recorded, Vec::new())
            .seccomp
            .syscribe
            .unwrap();
        assert_eq!(
            meta.capabilities.as_deref(),
            Some(["CAP_CHOWN".to_owned(), "CAP_NET_BIND_SERVICE".to_owned()].as_slice())
        );
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(
            json["capabilities"],
            serde_json::json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
        );
        let none = build_profile(&RecordedSyscalls::default(), Vec::new());
        let json = serde_json::to_value(none.seccomp.syscribe.unwrap()).unwrap();
        assert!(json.get("capabilities").is_none(), "{json}");
    }
}
