//! The OCI seccomp document (runtime-spec `linux.seccomp`), which is also the `spec` of an
//! upstream `SeccompProfile`. Field names and values follow the OCI spec and SPO v1.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seccomp {
    pub default_action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
    /// How this profile was recorded (syscribe's own; OCI runtimes ignore unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscribe: Option<RecordingMetadata>,
}

// The same type is a SeccompProfile's `spec.syscalls[]` in the cluster (`crate::k8s::crd` embeds
// it): its doc comments and `schemars` bounds are the CRD's schema (deploy/crds.yaml), so they
// are plain comments here. The validator checks the bounds on every path.
/// One rule: an action for the named syscalls, optionally only for some argument values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyscallRule {
    #[schemars(length(min = 1))]
    pub names: Vec<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    pub args: Vec<ArgRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgRule {
    pub index: u32,
    // Missing reads as 0, as runc and upstream SPO read it (SPO omits a zero value).
    #[serde(default)]
    pub value: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    pub op: CompareOp,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Action {
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CompareOp {
    #[serde(rename = "SCMP_CMP_NE")]
    NotEqual,
    #[serde(rename = "SCMP_CMP_LT")]
    Less,
    #[serde(rename = "SCMP_CMP_LE")]
    LessOrEqual,
    #[serde(rename = "SCMP_CMP_EQ")]
    Equal,
    #[serde(rename = "SCMP_CMP_GE")]
    GreaterOrEqual,
    #[serde(rename = "SCMP_CMP_GT")]
    Greater,
    #[serde(rename = "SCMP_CMP_MASKED_EQ")]
    MaskedEqual,
}

/// What syscribe knows about a recorded profile; dropped counts are never silent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordingMetadata {
    /// The recorded command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The recorded container, for `record --cgroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerMetadata>,
    pub dropped: Dropped,
    /// The Linux capabilities the recorded processes used (`CAP_CHOWN`…, sorted; see
    /// `profile::capabilities`); absent when they were not recorded (no BPF LSM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
}

/// Which container a profile was recorded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerMetadata {
    /// The container's cgroup directory name.
    pub cgroup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Where the recording starts: the boundary between the runtime's setup, left out, and
    /// what the container (its runtime's last steps included) does. Profiles written before it
    /// existed say `filterSeen` (read as `filter`, or `none`).
    #[serde(alias = "filterSeen")]
    pub boundary: Boundary,
    /// Syscalls allowed without having been recorded: the runtime's hand-off (see
    /// `profile::build::RUNTIME_HANDOFF`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_handoff: Vec<String>,
}

/// Where a container's recording starts (see "Where a container's profile starts" in
/// recorder-ebpf's crate docs). Written as `{"kind": "filter"}`, `{"kind": "exec"}` or
/// `{"kind": "none", "reason": "rootNotSwitched"}`; a bare bool (the `filterSeen` of older
/// profiles and state files) is read as `filter` or `none` (`filterNotSeen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    deny_unknown_fields,
    from = "BoundaryRepr"
)]
pub enum Boundary {
    /// The runtime installed the container's seccomp filter: recorded from there on.
    Filter,
    /// No filter: recorded from the runtime's last root or namespace setup step before the
    /// exec that followed its root switch (at or before where it would install a filter).
    Exec,
    /// Not found: the profile holds everything recorded, the runtime's setup included.
    None { reason: NoBoundary },
}

/// Why no boundary was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NoBoundary {
    /// No `pivot_root`/`chroot` was seen: the container started before it was recorded, or
    /// its runtime does not switch roots.
    RootNotSwitched,
    /// The root was switched, but nothing was exec'd after it: the container was created and
    /// never started (or is still being set up).
    NotExeced,
    /// Recorded by an older syscribe, which knew only the filter boundary and saw none.
    FilterNotSeen,
}

impl Boundary {
    /// Whether a boundary was found (the runtime's setup is left out).
    pub fn found(self) -> bool {
        !matches!(self, Self::None { .. })
    }

    /// The boundary of several recordings merged into one profile: the weakest.
    pub fn merge(self, other: Self) -> Self {
        match (self, other) {
            (none @ Self::None { .. }, _) | (_, none @ Self::None { .. }) => none,
            (Self::Exec, _) | (_, Self::Exec) => Self::Exec,
            (Self::Filter, Self::Filter) => Self::Filter,
        }
    }

    /// The `syscribe.dev/recording-boundary` annotation's value: `filter`, `exec`, or
    /// `none: <reason>`.
    pub fn annotation(self) -> String {
        match self {
            Self::Filter => "filter".to_owned(),
            Self::Exec => "exec".to_owned(),
            Self::None { reason } => format!("none: {}", reason.code()),
        }
    }
}

impl NoBoundary {
    /// The camelCase name it is written with.
    pub fn code(self) -> &'static str {
        match self {
            Self::RootNotSwitched => "rootNotSwitched",
            Self::NotExeced => "notExeced",
            Self::FilterNotSeen => "filterNotSeen",
        }
    }
}

impl std::fmt::Display for NoBoundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RootNotSwitched => {
                "no root switch (pivot_root or chroot) was seen in the container: it started \
                 before it was recorded, or its runtime does not switch roots"
            }
            Self::NotExeced => {
                "the runtime switched the container's root but exec'd nothing after it: the \
                 container was created and never started, or is still being set up"
            }
            Self::FilterNotSeen => {
                "recorded by an older syscribe that knew only the seccomp-filter boundary, \
                 and saw no filter"
            }
        })
    }
}

/// What a [`Boundary`] is read from: its own form, or the bool of older profiles.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoundaryRepr {
    FilterSeen(bool),
    Tagged(TaggedBoundary),
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum TaggedBoundary {
    Filter,
    Exec,
    None { reason: NoBoundary },
}

impl From<BoundaryRepr> for Boundary {
    fn from(repr: BoundaryRepr) -> Self {
        match repr {
            BoundaryRepr::FilterSeen(true) | BoundaryRepr::Tagged(TaggedBoundary::Filter) => {
                Self::Filter
            }
            BoundaryRepr::FilterSeen(false) => Self::None {
                reason: NoBoundary::FilterNotSeen,
            },
            BoundaryRepr::Tagged(TaggedBoundary::Exec) => Self::Exec,
            BoundaryRepr::Tagged(TaggedBoundary::None { reason }) => Self::None { reason },
        }
    }
}

/// Syscalls seen but not in the profile, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dropped {
    /// Syscall entries whose number was beyond the recorder's range (e.g. x32 numbers).
    pub out_of_range: u64,
    /// Distinct recorded numbers libseccomp has no name for on the native architecture.
    pub unnamed: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.out_of_range + self.unnamed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_written_tagged_and_read_from_older_bools_too() {
        let none = Boundary::None {
            reason: NoBoundary::NotExeced,
        };
        for (boundary, json) in [
            (Boundary::Filter, r#"{"kind":"filter"}"#),
            (Boundary::Exec, r#"{"kind":"exec"}"#),
            (none, r#"{"kind":"none","reason":"notExeced"}"#),
        ] {
            assert_eq!(serde_json::to_string(&boundary).unwrap(), json);
            assert_eq!(serde_json::from_str::<Boundary>(json).unwrap(), boundary);
        }
        let old = r#"{"cgroup":"c1","filterSeen":true}"#;
        let meta: ContainerMetadata = serde_json::from_str(old).unwrap();
        assert_eq!(meta.boundary, Boundary::Filter);
        let old = r#"{"cgroup":"c1","filterSeen":false}"#;
        let meta: ContainerMetadata = serde_json::from_str(old).unwrap();
        assert_eq!(
            meta.boundary,
            Boundary::None {
                reason: NoBoundary::FilterNotSeen
            }
        );
        let written = serde_json::to_value(&meta).unwrap();
        assert_eq!(written["boundary"]["reason"], "filterNotSeen");
        assert!(written.get("filterSeen").is_none());
        for bad in [
            r#"{"kind":"sometimes"}"#,
            r#"{"kind":"none"}"#,
            r#""filter""#,
        ] {
            assert!(serde_json::from_str::<Boundary>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merged_boundaries_keep_the_weakest() {
        let none = Boundary::None {
            reason: NoBoundary::RootNotSwitched,
        };
        assert_eq!(Boundary::Filter.merge(Boundary::Filter), Boundary::Filter);
        assert_eq!(Boundary::Filter.merge(Boundary::Exec), Boundary::Exec);
        assert_eq!(Boundary::Exec.merge(none), none);
        assert_eq!(none.merge(Boundary::Filter), none);
        assert!(!none.found() && Boundary::Exec.found());
        assert_eq!(none.annotation(), "none: rootNotSwitched");
    }
}
