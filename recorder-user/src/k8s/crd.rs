//! The upstream Security Profiles Operator's v1 resources (group
//! `security-profiles-operator.x-k8s.io`), as kube custom resources: an SPO user's manifests
//! deserialize unchanged. `syscribe crds` prints their CustomResourceDefinitions.
//!
//! These are API types; the OCI seccomp document (what runtimes load) is `profile::seccomp`.
//! A SeccompProfile's spec embeds that document's own syscall rule (`SyscallRule`, whose schema
//! is the CRD's), and the conversions between spec and document live here.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta},
};
use kube::{CustomResource, CustomResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::seccomp::{Action, Seccomp, SyscallRule};

/// The API group of every resource here. kube's `CustomResource` derive takes its `group` as
/// a string literal only (it builds the CRD's name from it while expanding), so each
/// `#[kube(group = …)]` below repeats it: `every_kind_is_in_the_group` checks that they agree.
pub const GROUP: &str = "security-profiles-operator.x-k8s.io";

/// Namespaces with this label (any value) may be recorded.
pub const LABEL_ENABLE_RECORDING: &str = "spo.x-k8s.io/enable-recording";
/// Labels on recorded profiles.
pub const LABEL_RECORDING_ID: &str = "spo.x-k8s.io/recording-id";
pub const LABEL_RECORDING_NAMESPACE: &str = "spo.x-k8s.io/recording-namespace";
/// Holds the container's *name* (upstream's choice).
pub const LABEL_CONTAINER_ID: &str = "spo.x-k8s.io/container-id";
pub const LABEL_PARTIAL: &str = "spo.x-k8s.io/partial";
pub const ANNOTATION_COVERAGE: &str = "spo.x-k8s.io/syscall-coverage";
/// syscribe's: set on a ProfileRecording to ask for a snapshot of its running workloads; the
/// daemon acts on it and removes it.
pub const ANNOTATION_SNAPSHOT: &str = "syscribe.dev/snapshot";

// ---------------------------------------------------------------------------------------------
// ProfileRecording

/// Records the pods its selector matches, in namespaces labelled
/// `spo.x-k8s.io/enable-recording`, into one profile per container.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "ProfileRecording",
    namespaced,
    status = "ProfileRecordingStatus",
    // Custom columns replace kubectl's default Age column: without these, `kubectl get
    // profilerecordings` printed the names alone (seen on the real cluster).
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.kind"}"#,
    printcolumn = r#"{"name":"Recorder","type":"string","jsonPath":".spec.recorder"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"PodSelector","type":"string","jsonPath":".spec.podSelector","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRecordingSpec {
    /// The kind of profile to record.
    pub kind: RecordingKind,
    /// How to record: `Bpf` (syscribe's eBPF recorder) or `Logs` (audit records).
    pub recorder: RecorderKind,
    /// `Containers`: one partial profile per replica, merged when the recording is deleted.
    #[serde(default)]
    pub merge_strategy: MergeStrategy,
    /// The pods to record.
    pub pod_selector: LabelSelector,
    /// The containers to record (init containers included); absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<String>>,
    /// Create the recorded profiles disabled (not installed on nodes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_profile_after_recording: bool,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RecordingKind {
    SeccompProfile,
    SelinuxProfile,
    AppArmorProfile,
}

/// (v1alpha1 manifests spelled these in lowercase: accepted too.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RecorderKind {
    #[serde(alias = "bpf")]
    Bpf,
    #[serde(alias = "logs")]
    Logs,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MergeStrategy {
    #[default]
    #[serde(alias = "none")]
    None,
    #[serde(alias = "containers")]
    Containers,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRecordingStatus {
    /// The pods being recorded (`namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_workloads: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// ProfileBinding

/// Namespaces with this label (any value) have their pods bound by ProfileBindings.
pub const LABEL_ENABLE_BINDING: &str = "spo.x-k8s.io/enable-binding";
/// syscribe's: the finalizer on a profile while a ProfileBinding names it (the webhook adds
/// and removes it), so a bound profile is not deleted out from under the pods it binds.
pub const FINALIZER_BOUND: &str = "syscribe.dev/bound";
/// syscribe's: set by the webhook on every pod it bound (value `true`), with
/// [`ANNOTATION_BINDINGS`] naming the bindings; a pod that was not bound never keeps them.
pub const LABEL_BOUND: &str = "syscribe.dev/bound";
/// The ProfileBindings (comma-separated names) that bound the pod at its creation.
pub const ANNOTATION_BINDINGS: &str = "syscribe.dev/bindings";
/// `spec.image` of a binding for every image.
pub const ANY_IMAGE: &str = "*";

/// Applies a profile to the containers of new pods in its namespace (labelled
/// `spo.x-k8s.io/enable-binding`) whose image is `image` (`*`: any) and whose pod matches
/// `podSelector` (absent: every pod); the pod webhook writes it into their securityContext.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "ProfileBinding",
    namespaced,
    status = "ProfileBindingStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.profileRef.kind"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profileRef.name"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"PodSelector","type":"string","jsonPath":".spec.podSelector","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingSpec {
    /// The profile to apply.
    pub profile_ref: ProfileRef,
    /// The container image to bind, exactly as the pod names it; `*` for every image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// The pods to bind (a standard label selector); absent or empty: every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// A profile named by a binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ProfileRef {
    /// SeccompProfile, SelinuxProfile or AppArmorProfile.
    pub kind: RecordingKind,
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBindingStatus {
    /// The pods it bound that still run (`namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_workloads: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// SeccompProfile

/// A seccomp profile (OCI seccomp, plus a base profile and a state).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SeccompProfile",
    shortname = "sp",
    status = "ProfileStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Nodes","type":"string","jsonPath":".status.nodes"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"LocalhostProfile","type":"string","jsonPath":".status.localhostProfile","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfileSpec {
    /// The action when no rule matches.
    pub default_action: Action,
    /// `SCMP_ARCH_*` architectures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<SyscallRule>,
    /// `SECCOMP_FILTER_FLAG_*` flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Another SeccompProfile whose rules are added to this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_profile_name: Option<String>,
    /// `Disabled`: not installed on nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProfileState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProfileState {
    #[default]
    Enabled,
    Disabled,
}

/// Status of SeccompProfile and SelinuxProfile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileStatusKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_workloads: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
    /// SelinuxProfile: the SELinux type pods use (`<name>.process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// On how many of the nodes that reported on it the profile is installed: `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProfileStatusKind {
    Partial,
    Disabled,
    Pending,
    InProgress,
    Installed,
    Terminating,
    Error,
}

impl SeccompProfileSpec {
    /// The spec of a recorded (or any OCI) profile; syscribe's recording metadata is not part
    /// of the API (it goes to annotations).
    pub fn from_seccomp(seccomp: &Seccomp) -> Self {
        Self {
            default_action: seccomp.default_action,
            architectures: seccomp.architectures.clone(),
            syscalls: seccomp.syscalls.clone(),
            flags: seccomp.flags.clone(),
            base_profile_name: None,
            state: None,
            listener_path: seccomp.listener_path.clone(),
            listener_metadata: seccomp.listener_metadata.clone(),
        }
    }

    /// The OCI document runtimes load (without the base profile, which names another object).
    pub fn to_seccomp(&self) -> Seccomp {
        Seccomp {
            default_action: self.default_action,
            default_errno_ret: None,
            architectures: self.architectures.clone(),
            flags: self.flags.clone(),
            listener_path: self.listener_path.clone(),
            listener_metadata: self.listener_metadata.clone(),
            syscalls: self.syscalls.clone(),
            syscribe: None,
        }
    }
}

impl crate::profile::merge::WithBase for SeccompProfile {
    fn seccomp(&self) -> Seccomp {
        self.spec.to_seccomp()
    }

    fn base_profile_name(&self) -> Option<&str> {
        self.spec.base_profile_name.as_deref()
    }
}

// ---------------------------------------------------------------------------------------------
// SelinuxProfile

/// An SELinux policy module: types it inherits from, and what it allows.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "SelinuxProfile",
    status = "ProfileStatus",
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SelinuxProfileSpec {
    /// Policies whose types this one builds on (default: the system's `container`).
    #[serde(default = "default_inherit")]
    pub inherit: Vec<PolicyRef>,
    /// Type label → object class → permissions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allow: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// `Permissive`: denials are logged, not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SelinuxMode>,
    /// The older spelling of `mode: Permissive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permissive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProfileState>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SelinuxMode {
    #[default]
    Enforcing,
    Permissive,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PolicyRef {
    #[serde(default)]
    pub kind: PolicyKind,
    #[schemars(length(min = 1))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PolicyKind {
    #[default]
    System,
    SelinuxProfile,
}

/// What a SelinuxProfile inherits when it says nothing: the system's `container` template.
pub fn default_inherit() -> Vec<PolicyRef> {
    vec![PolicyRef {
        kind: PolicyKind::System,
        name: "container".to_owned(),
    }]
}

// ---------------------------------------------------------------------------------------------
// RawSelinuxProfile

/// An SELinux policy module written in CIL by hand. Installed wrapped in `(block <name> …)`,
/// so its statements are about the type `<name>.process` pods use
/// (`seLinuxOptions.type: <name>.process`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "security-profiles-operator.x-k8s.io",
    version = "v1",
    kind = "RawSelinuxProfile",
    status = "ProfileStatus",
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RawSelinuxProfileSpec {
    /// CIL statements, e.g. `(blockinherit container)` and `(allow process var_log_t (file (read)))`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 500000))]
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProfileState>,
}

// ---------------------------------------------------------------------------------------------
// SecurityProfileNodeStatus

/// Labels on SecurityProfileNodeStatus objects (named `<profile>-<node>`).
pub const LABEL_PROFILE_ID: &str = "spo.x-k8s.io/profile-id";
pub const LABEL_NODE_NAME: &str = "spo.x-k8s.io/node-name";
pub const LABEL_PROFILE_STATE: &str = "spo.x-k8s.io/profile-state";
pub const LABEL_PROFILE_KIND: &str = "spo.x-k8s.io/profile-kind";

/// A profile's state on one node, in upstream's shape: `nodeName` and `status` at the top
/// level, no spec and no status subresource (an SPO user's tooling reads `.status` as the
/// state), plus our `message` (why, when Error or Terminating; upstream's CRD would prune it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfileNodeStatus {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProfileStatusKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl kube::Resource for SecurityProfileNodeStatus {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "SecurityProfileNodeStatus".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "securityprofilenodestatuses".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl SecurityProfileNodeStatus {
    /// Its CRD, written out: kube's derive nests every field under `spec`, upstream does not.
    pub fn crd() -> CustomResourceDefinition {
        let states: Vec<serde_json::Value> = [
            ProfileStatusKind::Partial,
            ProfileStatusKind::Disabled,
            ProfileStatusKind::Pending,
            ProfileStatusKind::InProgress,
            ProfileStatusKind::Installed,
            ProfileStatusKind::Terminating,
            ProfileStatusKind::Error,
        ]
        .iter()
        .map(|k| serde_json::to_value(k).expect("states serialize"))
        .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("securityprofilenodestatuses.{GROUP}")},
            "spec": {
                "group": GROUP,
                "names": {
                    "kind": "SecurityProfileNodeStatus",
                    "plural": "securityprofilenodestatuses",
                    "shortNames": ["spns"],
                    "singular": "securityprofilenodestatus",
                },
                "scope": "Cluster",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "additionalPrinterColumns": [
                        {"name": "Status", "type": "string", "jsonPath": ".status"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {"name": "Node", "type": "string", "jsonPath": ".nodeName", "priority": 10},
                        {"name": "Message", "type": "string", "jsonPath": ".message", "priority": 10},
                    ],
                    "schema": {"openAPIV3Schema": {
                        "description": "A profile's state on one node (upstream's shape, plus `message`).",
                        "type": "object",
                        "required": ["nodeName"],
                        "properties": {
                            "nodeName": {"type": "string", "minLength": 1},
                            "status": {"type": "string", "enum": states},
                            "message": {
                                "description": "Why, when the status is Error or Terminating.",
                                "type": "string",
                            },
                        },
                    }},
                }],
            },
        }))
        .expect("the node status CRD is a CustomResourceDefinition")
    }
}

/// Versions upstream served before v1 whose objects are v1's shape: still served (upstream's
/// examples name them), stored as v1.
pub const SECCOMP_OLDER_VERSIONS: &[&str] = &["v1beta1", "v1alpha1"];
pub const SELINUX_OLDER_VERSIONS: &[&str] = &["v1alpha2"];
/// ProfileBinding's v1alpha1 had no `podSelector`; served with v1's schema, a v1alpha1 object
/// without one binds every pod, as it did.
pub const BINDING_OLDER_VERSIONS: &[&str] = &["v1alpha1"];

/// `crd` also serving `older` versions with v1's schema: the API server stores their objects as
/// v1 (no conversion webhook: the fields are the same) and answers in the version asked.
fn with_older_versions(
    mut crd: CustomResourceDefinition,
    older: &[&str],
) -> CustomResourceDefinition {
    let v1 = crd.spec.versions[0].clone();
    for name in older {
        let mut version = v1.clone();
        version.name = (*name).to_owned();
        version.served = true;
        version.storage = false;
        crd.spec.versions.push(version);
    }
    crd
}

/// Every CRD syscribe serves, as one multi-document YAML (what `syscribe crds` prints and
/// deploy/crds.yaml holds).
pub fn crds_yaml() -> String {
    let crds = [
        ProfileRecording::crd(),
        with_older_versions(ProfileBinding::crd(), BINDING_OLDER_VERSIONS),
        with_older_versions(SeccompProfile::crd(), SECCOMP_OLDER_VERSIONS),
        with_older_versions(SelinuxProfile::crd(), SELINUX_OLDER_VERSIONS),
        with_older_versions(RawSelinuxProfile::crd(), SELINUX_OLDER_VERSIONS),
        SecurityProfileNodeStatus::crd(),
    ];
    crds.iter()
        .map(|crd| serde_yaml::to_string(crd).expect("CRDs serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
