//! Resolution of processes to cgroups, containers and pods.

pub mod cgroup;
pub mod container;
pub mod process;
pub mod runtime;
