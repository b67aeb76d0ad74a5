//! syscribe: records what a process or container really does and turns it into a minimal
//! seccomp profile; runs commands under such profiles.
//!
//! Modules: `bpf` (the only one touching aya), `resolve` (cgroups), `profile` (pure document
//! logic), `record` (local recording of one command), `cli` (the `syscribe` command line).

pub mod bpf;
pub mod cli;
pub mod profile;
pub mod record;
pub mod resolve;
