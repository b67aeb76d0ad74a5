//! Everything that touches kube: the custom resources, the pod index, the reconcilers.

pub mod api_errors;
pub mod coverage;
pub mod crd;
pub mod daemon;
pub mod index;
pub mod install;
pub mod memory;
pub mod node_cleanup;
pub mod node_status;
pub mod publish;
pub mod recordings;
pub mod report;
pub mod selinux_node;
pub mod selinux_recordings;
pub mod watch_log;
pub mod webhook;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(test)]
mod rbac_tests;

#[cfg(test)]
mod deploy_tests;
