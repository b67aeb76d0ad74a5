//! Recorded syscall numbers → a minimal allowlist profile.

use std::collections::BTreeSet;

use libseccomp::{ScmpArch, ScmpSyscall};

use super::seccomp::{Action, Dropped, RecordingMetadata, Seccomp, SyscallRule};

/// What the recorder saw in one cgroup, in the native architecture's numbering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedSyscalls {
    pub numbers: BTreeSet<u32>,
    /// Syscall entries the recorder counted but could not record (number out of its range).
    pub out_of_range: u64,
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
        }),
    };
    BuiltProfile { seccomp, unnamed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(name: &str) -> u32 {
        let raw: i32 = ScmpSyscall::from_name(name).expect(name).into();
        u32::try_from(raw).expect("native numbers are positive")
    }

    #[test]
    fn names_are_sorted_and_come_from_libseccomp() {
        let recorded = RecordedSyscalls {
            numbers: [nr("write"), nr("uname"), nr("execve"), nr("getcwd")].into(),
            out_of_range: 0,
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
}
