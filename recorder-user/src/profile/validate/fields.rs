//! The field tables: which fields and values each kind of document may hold.

use libseccomp::ScmpArch;

pub(super) const ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
pub(super) const FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
pub(super) const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// SCMP_ARCH_* names libseccomp knows, with its architecture.
pub(super) const ARCHES: [(&str, ScmpArch); 20] = [
    ("SCMP_ARCH_NATIVE", ScmpArch::Native),
    ("SCMP_ARCH_X86", ScmpArch::X86),
    ("SCMP_ARCH_X86_64", ScmpArch::X8664),
    ("SCMP_ARCH_X32", ScmpArch::X32),
    ("SCMP_ARCH_ARM", ScmpArch::Arm),
    ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64),
    ("SCMP_ARCH_MIPS", ScmpArch::Mips),
    ("SCMP_ARCH_MIPS64", ScmpArch::Mips64),
    ("SCMP_ARCH_MIPS64N32", ScmpArch::Mips64N32),
    ("SCMP_ARCH_MIPSEL", ScmpArch::Mipsel),
    ("SCMP_ARCH_MIPSEL64", ScmpArch::Mipsel64),
    ("SCMP_ARCH_MIPSEL64N32", ScmpArch::Mipsel64N32),
    ("SCMP_ARCH_PPC", ScmpArch::Ppc),
    ("SCMP_ARCH_PPC64", ScmpArch::Ppc64),
    ("SCMP_ARCH_PPC64LE", ScmpArch::Ppc64Le),
    ("SCMP_ARCH_S390", ScmpArch::S390),
    ("SCMP_ARCH_S390X", ScmpArch::S390X),
    ("SCMP_ARCH_PARISC", ScmpArch::Parisc),
    ("SCMP_ARCH_PARISC64", ScmpArch::Parisc64),
    ("SCMP_ARCH_RISCV64", ScmpArch::Riscv64),
];

/// Top-level fields of an OCI seccomp document / a SeccompProfile spec.
pub(super) const OCI_FIELDS: [&str; 7] = [
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
];
pub(super) const SPEC_ONLY_FIELDS: [&str; 2] = ["baseProfileName", "state"];
/// syscribe's recording metadata in OCI documents it wrote (runtimes ignore it).
pub(super) const OCI_ONLY_FIELDS: [&str; 1] = ["syscribe"];
/// The OCI runtime-spec's (and SeccompProfile's) rule fields; nothing else is read by runc.
pub(super) const RULE_FIELDS: [&str; 4] = ["names", "action", "errnoRet", "args"];
pub(super) const ARG_FIELDS: [&str; 4] = ["index", "value", "valueTwo", "op"];

/// Top-level fields of a SeccompProfile or SelinuxProfile object.
pub(super) const OBJECT_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
pub(super) const STATES: [&str; 2] = ["Enabled", "Disabled"];
pub(super) const SELINUX_FIELDS: [&str; 5] = ["inherit", "allow", "mode", "permissive", "state"];
pub(super) const INHERIT_FIELDS: [&str; 2] = ["kind", "name"];
pub(super) const INHERIT_KINDS: [&str; 2] = ["System", "SelinuxProfile"];
pub(super) const SELINUX_MODES: [&str; 2] = ["Enforcing", "Permissive"];

/// Fields of Docker's seccomp format, which OCI runtimes ignore (so its conditions would not
/// apply): named as such rather than as typos.
pub(super) const DOCKER_FIELDS: [&str; 3] = ["archMap", "includes", "excludes"];

/// Fields of a RawSelinuxProfile's spec.
pub(super) const RAW_SELINUX_FIELDS: [&str; 2] = ["policy", "state"];
