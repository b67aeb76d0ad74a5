//! syscribe: records what a process or container really does and turns it into a minimal
//! seccomp profile; runs commands under such profiles.
//!
//! Modules, from the top down (imports run down the list only; `audit` takes `record`'s
//! `HostPaths`; docs/design.md has the full table):
//! - `cli`: the `syscribe` command line (flags mapped to the modules below);
//! - `k8s`: everything that touches kube — the custom resources, the node daemon, the
//!   installers of profiles on a node, the webhooks, `syscribe report`;
//! - `audit`: kernel audit records of denials — sources, parsing, enrichment with pod names,
//!   output, and the log enricher that runs them; `record`: recording a command or a cgroup's
//!   containers;
//! - `bpf`: the eBPF recorder and tracers, the only module touching aya;
//! - `resolve`: processes to cgroups, containers and pods; `profile`: pure document logic
//!   (seccomp and SELinux profiles, validation, merging).
//!
//! Helpers that serve the levels above them and import none of those: `selinux` (policy
//! modules in a node's store, through semodule; on `profile`), `keyed_store` (JSON files named
//! by a key in one directory) and `files` (files written as root where others may have
//! planted links, and bounded reads).

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
