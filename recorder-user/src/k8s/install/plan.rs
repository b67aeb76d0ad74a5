//! What this node does about one profile, decided from the profiles and pods given: install
//! (its base profiles merged in, validated), refuse, remove, or hold while pods use it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Pod, PodSecurityContext, SeccompProfile as PodSeccompProfile, SecurityContext,
};
use kube::{Resource as _, ResourceExt as _};

use crate::{
    k8s::crd::{FINALIZER_BOUND, LABEL_PARTIAL, ProfileState, SeccompProfile},
    profile::{
        merge::resolve_bases,
        seccomp::Seccomp,
        validate::{Severity, Validator},
    },
};

/// `namespace/pod` of each pod that is not finished and whose pod- or container-level
/// securityContext uses `operator/<name>.json`.
pub fn users<'a>(name: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<String> {
    let wanted = format!("operator/{name}.json");
    let uses = |p: Option<&PodSeccompProfile>| {
        p.is_some_and(|p| p.type_ == "Localhost" && p.localhost_profile.as_deref() == Some(&wanted))
    };
    running_pods_where(
        pods,
        |sc| uses(sc.and_then(|sc| sc.seccomp_profile.as_ref())),
        |sc| uses(sc.and_then(|sc| sc.seccomp_profile.as_ref())),
    )
}

/// `namespace/pod` of each pod that is not finished and whose pod-level securityContext
/// (`pod_uses`) or any container's (init and ephemeral ones too: `container_uses`) says so.
pub fn running_pods_where<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    pod_uses: impl Fn(Option<&PodSecurityContext>) -> bool,
    container_uses: impl Fn(Option<&SecurityContext>) -> bool,
) -> Vec<String> {
    pods.into_iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|pod| {
            let Some(spec) = &pod.spec else {
                return false;
            };
            let containers = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .map(|c| c.security_context.as_ref());
            let ephemeral = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.security_context.as_ref());
            pod_uses(spec.security_context.as_ref())
                || containers.chain(ephemeral).any(&container_uses)
        })
        .map(|pod| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
        .collect()
}

/// What this node does about one profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Recorded partial profiles are not installed (they are merged first).
    Skip,
    Install(Box<Seccomp>),
    /// Not installable: the reason (validation errors, a missing base profile…).
    Refuse(String),
    /// Disabled or deleted, and unused: remove the file (and, when deleted, let it go).
    Remove {
        deleted: bool,
    },
    /// Disabled or deleted, but these pods still use it: keep the file.
    Hold {
        users: Vec<String>,
    },
}

/// Decides what to do with `name` on this node. Pure: the profiles and pods are given.
pub fn plan<'a>(
    name: &str,
    profiles: &BTreeMap<String, SeccompProfile>,
    pods: impl IntoIterator<Item = &'a Pod>,
    validator: &mut Validator,
) -> Plan {
    let Some(profile) = profiles.get(name) else {
        return Plan::Remove { deleted: true };
    };
    if profile.labels().get(LABEL_PARTIAL).map(String::as_str) == Some("true") {
        return Plan::Skip;
    }
    let deleted = profile.meta().deletion_timestamp.is_some();
    if deleted || profile.spec.state == Some(ProfileState::Disabled) {
        let mut users = users(name, pods);
        // Deleted while a ProfileBinding names it: new pods of the binding still need the
        // file until the binding goes (the webhook then removes the finalizer).
        if deleted && profile.finalizers().iter().any(|f| f == FINALIZER_BOUND) {
            users.push(format!("a ProfileBinding (finalizer {FINALIZER_BOUND})"));
        }
        return if users.is_empty() {
            Plan::Remove { deleted }
        } else {
            Plan::Hold { users }
        };
    }
    let seccomp = match resolve_bases(name, profiles, "the cluster") {
        Ok((seccomp, conflicts)) => {
            for conflict in conflicts {
                tracing::warn!(profile = name, %conflict, "base profiles disagree");
            }
            seccomp
        }
        Err(err) => return Plan::Refuse(err.to_string()),
    };
    // The validator reads the merged profile as it will be written.
    let value = serde_yaml::to_value(&seccomp).expect("profiles serialize");
    let errors: Vec<String> = validator
        .validate(&value)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect();
    if errors.is_empty() {
        Plan::Install(Box::new(seccomp))
    } else {
        Plan::Refuse(format!("invalid profile: {}", errors.join("; ")))
    }
}
