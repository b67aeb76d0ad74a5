//! syscribe: records what a process or container really does and turns it into a minimal
//! seccomp profile; runs commands under such profiles.
//!
//! Modules: `bpf` (the only one touching aya), `resolve` (cgroups, containers), `profile` (pure
//! document logic), `record` (recording commands and containers), `audit` (audit records),
//! `selinux` (policy modules in a node's store, through semodule), `cli` (the `syscribe` command
//! line).

pub mod audit;
pub mod bpf;
pub mod cli;
pub mod files;
pub mod k8s;
pub mod keyed_store;
pub mod profile;
pub mod record;
pub mod resolve;
pub mod selinux;
