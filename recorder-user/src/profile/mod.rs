//! Profiles: recorded syscalls → seccomp documents, parsing, and loading with libseccomp.
//! Pure decisions: no aya, no kube, no host paths.

pub mod build;
pub mod capabilities;
pub mod cil;
pub mod conflict;
pub mod crd;
pub mod enforce;
pub mod guard;
pub mod load;
pub mod merge;
pub mod naming;
pub mod position;
pub mod seccomp;
pub mod selinux_record;
pub mod validate;
