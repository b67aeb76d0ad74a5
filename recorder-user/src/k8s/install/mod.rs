//! Installing SeccompProfiles on this node: each enabled profile (its base profiles merged in)
//! becomes `<kubelet dir>/seccomp/operator/<name>.json`, the file pods name with
//! `localhostProfile: operator/<name>.json`. Invalid profiles are never written. A disabled or
//! deleted profile's file is removed, unless a running pod on the node uses it: then it stays,
//! with status Terminating, until the last such pod is gone.
//!
//! What each node did is one SecurityProfileNodeStatus `<profile>-<node>` (owned by the
//! profile, so it goes with it); the profile's own `status` is the summary over all nodes.
//! The files and the decisions are here; the API calls are thin.
//!
//! The seams: `files` writes and removes the files, `plan` decides what this node does about
//! one profile (pure), `node` keeps this node's view and talks to the API (finalizers, node
//! statuses, summaries through [`super::node_status`]). Base profiles are joined by
//! [`crate::profile::merge::resolve_bases`].

mod files;
mod node;
mod plan;

pub use files::{InstallError, Installer, OPERATOR_DIR};
pub use node::{NodeProfiles, node_finalizer, node_status_name, profile_id};
pub use plan::{Plan, plan, running_pods_where, users};

#[cfg(test)]
mod tests;
