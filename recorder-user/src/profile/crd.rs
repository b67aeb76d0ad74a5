//! The upstream `SeccompProfile` resource (security-profiles-operator.x-k8s.io/v1) as a document:
//! what `--format crd` writes and what `syscribe run` accepts besides OCI JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::seccomp::{Action, Seccomp, SyscallRule};

pub const API_GROUP: &str = "security-profiles-operator.x-k8s.io";
pub const API_VERSION: &str = "security-profiles-operator.x-k8s.io/v1";
pub const KIND: &str = "SeccompProfile";

/// Annotation keys syscribe puts on profiles it recorded.
pub const ANNOTATION_COMMAND: &str = "syscribe.dev/command";
pub const ANNOTATION_DROPPED: &str = "syscribe.dev/dropped-syscalls";
pub const ANNOTATION_CONTAINER_ID: &str = "syscribe.dev/container-id";
pub const ANNOTATION_POD_UID: &str = "syscribe.dev/pod-uid";
/// On a recorded container's profile: where its recording starts (`filter`, `exec`, or
/// `none: <reason>`; see `seccomp::Boundary`).
pub const ANNOTATION_BOUNDARY: &str = "syscribe.dev/recording-boundary";
/// The Linux capabilities the recorded processes used, comma-separated (`CAP_CHOWN,…`; empty:
/// none); absent when they were not recorded.
pub const ANNOTATION_CAPABILITIES: &str = "syscribe.dev/capabilities";
/// On a recorded SelinuxProfile: the AVCs it was recorded from, and those not kept (names a
/// profile cannot hold, or beyond its rule bound).
pub const ANNOTATION_DENIALS: &str = "syscribe.dev/recorded-denials";
pub const ANNOTATION_DROPPED_DENIALS: &str = "syscribe.dev/dropped-denials";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileDoc {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: SeccompProfileSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Server-populated fields (uid, resourceVersion…) are accepted and ignored.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

/// `spec` of an upstream SeccompProfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfileSpec {
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<SyscallRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_profile_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
}

impl SeccompProfileDoc {
    /// Wraps a recorded profile; recording metadata becomes annotations.
    pub fn from_recorded(name: String, seccomp: &Seccomp) -> Self {
        let mut annotations = BTreeMap::new();
        if let Some(meta) = &seccomp.syscribe {
            if !meta.command.is_empty() {
                annotations.insert(ANNOTATION_COMMAND.to_owned(), meta.command.join(" "));
            }
            annotations.insert(
                ANNOTATION_DROPPED.to_owned(),
                meta.dropped.total().to_string(),
            );
            if let Some(container) = &meta.container {
                annotations.insert(
                    ANNOTATION_BOUNDARY.to_owned(),
                    container.boundary.annotation(),
                );
            }
            if let Some(names) = &meta.capabilities {
                annotations.insert(
                    ANNOTATION_CAPABILITIES.to_owned(),
                    super::capabilities::annotation(names),
                );
            }
        }
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: Metadata {
                name,
                annotations,
                ..Metadata::default()
            },
            spec: SeccompProfileSpec {
                default_action: seccomp.default_action,
                architectures: seccomp.architectures.clone(),
                syscalls: seccomp.syscalls.clone(),
                flags: seccomp.flags.clone(),
                base_profile_name: None,
                state: None,
                listener_path: seccomp.listener_path.clone(),
                listener_metadata: seccomp.listener_metadata.clone(),
            },
        }
    }
}

/// A resource name (DNS-1123 label) derived from a command: `/usr/bin/Python3.11` → `python3-11`.
pub fn name_for_command(program: &str) -> String {
    let base = program.rsplit('/').next().unwrap_or(program);
    let mut name = String::with_capacity(base.len());
    for c in base.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name: String = name.trim_matches('-').chars().take(63).collect();
    let name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        "recorded-profile".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(name_for_command("/usr/bin/Python3.11"), "python3-11");
        assert_eq!(name_for_command("ls"), "ls");
        assert_eq!(name_for_command("./__init__"), "init");
        assert_eq!(name_for_command("///"), "recorded-profile");
        assert_eq!(name_for_command(&"a".repeat(100)).len(), 63);
    }
}
