//! Resolution of processes to cgroups (and, later, containers and pods).

pub mod cgroup;
