//! Syscribe on a real Kubernetes (`cargo xtask cluster up`: kube-apiserver with RBAC and the
//! production admission plugins, kubelet, containerd with runc and crun, CNI, kube-proxy),
//! deployed with `kubectl apply -k` from deploy/ and driven through kubectl as a user drives it.
//! Built only with the `cluster` feature; `cargo xtask test` runs it with the cluster up.
//!
//! The tests share one deployment and run in name order (`--test-threads=1`): `s9_…` reads the
//! logs of everything before it.
//!
//! One module a flow, named so that name order is the order the tests ran in as one file:
//! `s1_install::s1_…` first, `s9_logs::s9_…` last.

#[path = "cluster/common.rs"]
mod common;
#[path = "cluster/s1_install.rs"]
mod s1_install;
#[path = "cluster/s6_recording.rs"]
mod s6_recording;
#[path = "cluster/s7_selinux.rs"]
mod s7_selinux;
#[path = "cluster/s8_idle_memory.rs"]
mod s8_idle_memory;
#[path = "cluster/s8b_report.rs"]
mod s8b_report;
#[path = "cluster/s8c_bindings.rs"]
mod s8c_bindings;
#[path = "cluster/s8e_ming_deployment.rs"]
mod s8e_ming_deployment;
#[path = "cluster/s8f_rajesh.rs"]
mod s8f_rajesh;
#[path = "cluster/s8g_kirsti.rs"]
mod s8g_kirsti;
#[path = "cluster/s8i_restarts.rs"]
mod s8i_restarts;
#[path = "cluster/s8k_benchmark.rs"]
mod s8k_benchmark;
#[path = "cluster/s9_logs.rs"]
mod s9_logs;
