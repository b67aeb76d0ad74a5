//! What the daemon knows of its node: namespaces enabled for recording, ProfileRecordings, and
//! the node's pods — and the decision of which pod's containers a recording selects. Fed by
//! watches in the daemon, by objects in memory in the tests.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::{Namespace, Pod},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::ResourceExt as _;

use super::crd::{
    LABEL_ENABLE_RECORDING, MergeStrategy, ProfileRecording, RecorderKind, RecordingKind,
};

/// `namespace/name`.
pub type Key = (String, String);

/// A recording's choice of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The ProfileRecording (its namespace is the pod's).
    pub recording: String,
    /// What it records: `SeccompProfile` (eBPF recorder) or `SelinuxProfile` (AVCs).
    pub kind: RecordingKind,
    pub merge: MergeStrategy,
    pub disable_after: bool,
    /// The containers to record, by name (init containers included).
    pub containers: BTreeSet<String>,
}

/// Why a recording that selects a pod does not record it (reported as an Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Only seccomp with the eBPF recorder and SELinux from audit logs are implemented.
    Unsupported {
        recording: String,
        kind: RecordingKind,
        recorder: RecorderKind,
    },
    /// Several recordings select the pod: the first by name is used.
    Ambiguous { used: String, ignored: Vec<String> },
}

#[derive(Debug, Default)]
pub struct NodeIndex {
    enabled: BTreeSet<String>,
    recordings: BTreeMap<Key, ProfileRecording>,
    pods: BTreeMap<Key, Pod>,
}

fn key_of(namespace: Option<String>, name: String) -> Key {
    (namespace.unwrap_or_default(), name)
}

impl NodeIndex {
    pub fn apply_namespace(&mut self, ns: &Namespace) {
        if ns.labels().contains_key(LABEL_ENABLE_RECORDING) {
            self.enabled.insert(ns.name_any());
        } else {
            self.enabled.remove(&ns.name_any());
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        self.enabled.remove(name);
    }

    pub fn apply_recording(&mut self, recording: ProfileRecording) {
        let key = key_of(recording.namespace(), recording.name_any());
        self.recordings.insert(key, recording);
    }

    pub fn delete_recording(&mut self, key: &Key) -> Option<ProfileRecording> {
        self.recordings.remove(key)
    }

    pub fn apply_pod(&mut self, pod: Pod) {
        let key = key_of(pod.namespace(), pod.name_any());
        self.pods.insert(key, pod);
    }

    pub fn delete_pod(&mut self, key: &Key) -> Option<Pod> {
        self.pods.remove(key)
    }

    pub fn pod(&self, key: &Key) -> Option<&Pod> {
        self.pods.get(key)
    }

    pub fn pods(&self) -> impl Iterator<Item = (&Key, &Pod)> {
        self.pods.iter()
    }

    /// The namespaces enabled for recording (what a re-list of them replaces).
    pub fn enabled_namespaces(&self) -> impl Iterator<Item = &String> {
        self.enabled.iter()
    }

    /// The recordings known (what a re-list of them replaces).
    pub fn recording_keys(&self) -> impl Iterator<Item = &Key> {
        self.recordings.keys()
    }

    pub fn recording(&self, key: &Key) -> Option<&ProfileRecording> {
        self.recordings.get(key)
    }

    /// The recording that records `pod`, and the refusals to report. `None` when the pod's
    /// namespace is not enabled, no recording selects it, or the pod is finished.
    /// Of `keys` (pods being recorded as `kind`), those whose recording ended: the pod is gone
    /// or no recording of that kind selects it any more.
    pub fn ended<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k Key>,
        kind: RecordingKind,
    ) -> Vec<Key> {
        keys.into_iter()
            .filter(|key| {
                self.pod(key)
                    .is_none_or(|pod| self.selection(pod).0.is_none_or(|s| s.kind != kind))
            })
            .cloned()
            .collect()
    }

    pub fn selection(&self, pod: &Pod) -> (Option<Selection>, Vec<Refusal>) {
        let namespace = pod.namespace().unwrap_or_default();
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if !self.enabled.contains(&namespace)
            || finished
            || pod.metadata.deletion_timestamp.is_some()
        {
            return (None, Vec::new());
        }
        let mut refusals = Vec::new();
        let mut matching = Vec::new();
        for ((ns, name), recording) in &self.recordings {
            if *ns != namespace
                || recording.metadata.deletion_timestamp.is_some()
                || !selector_matches(&recording.spec.pod_selector, pod.labels())
            {
                continue;
            }
            let spec = &recording.spec;
            if !supported(spec.kind, spec.recorder) {
                refusals.push(Refusal::Unsupported {
                    recording: name.clone(),
                    kind: spec.kind,
                    recorder: spec.recorder,
                });
                continue;
            }
            matching.push((name, recording));
        }
        let Some(((name, recording), rest)) = matching.split_first() else {
            return (None, refusals);
        };
        if !rest.is_empty() {
            refusals.push(Refusal::Ambiguous {
                used: (*name).clone(),
                ignored: rest.iter().map(|(n, _)| (*n).clone()).collect(),
            });
        }
        let containers = container_names(pod)
            .into_iter()
            .filter(|c| {
                recording
                    .spec
                    .containers
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(c))
            })
            .collect();
        (
            Some(Selection {
                recording: (*name).clone(),
                kind: recording.spec.kind,
                merge: recording.spec.merge_strategy,
                disable_after: recording.spec.disable_profile_after_recording,
                containers,
            }),
            refusals,
        )
    }

    /// `namespace/name` of the pods `recording` records now (its `status.activeWorkloads`).
    pub fn active_workloads(&self, recording: &Key) -> Vec<String> {
        self.pods
            .iter()
            .filter(|((ns, _), _)| *ns == recording.0)
            .filter(|(_, pod)| {
                self.selection(pod)
                    .0
                    .is_some_and(|s| s.recording == recording.1)
            })
            .map(|((ns, name), _)| format!("{ns}/{name}"))
            .collect()
    }
}

/// What syscribe records: seccomp with its eBPF recorder, SELinux from AVCs (`Logs`, the only
/// recorder upstream has for SELinux).
pub fn supported(kind: RecordingKind, recorder: RecorderKind) -> bool {
    matches!(
        (kind, recorder),
        (RecordingKind::SeccompProfile, RecorderKind::Bpf)
            | (RecordingKind::SelinuxProfile, RecorderKind::Logs)
    )
}

/// Every container name of the pod, init containers first.
pub fn container_names(pod: &Pod) -> Vec<String> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.name.clone())
        .collect()
}

/// Container id (without the `containerd://` scheme) → container name, from the pod's status.
pub fn container_ids(pod: &Pod) -> BTreeMap<String, String> {
    let Some(status) = &pod.status else {
        return BTreeMap::new();
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| {
            let id = c.container_id.as_deref()?;
            let id = id.split_once("://").map_or(id, |(_, id)| id);
            Some((id.to_owned(), c.name.clone()))
        })
        .collect()
}

/// The pod's cgroup paths (relative to the cgroup2 mount) the kubelet may use: cgroupfs and
/// systemd drivers, by QoS class.
pub fn pod_cgroup_candidates(pod: &Pod) -> Vec<String> {
    let Some(uid) = pod.metadata.uid.as_deref() else {
        return Vec::new();
    };
    let qos = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .unwrap_or("BestEffort");
    let underscored = uid.replace('-', "_");
    match qos {
        "Guaranteed" => vec![
            format!("/kubepods/pod{uid}"),
            format!("/kubepods.slice/kubepods-pod{underscored}.slice"),
        ],
        other => {
            let qos = other.to_ascii_lowercase();
            vec![
                format!("/kubepods/{qos}/pod{uid}"),
                format!(
                    "/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{underscored}.slice"
                ),
            ]
        }
    }
}

/// Label selector semantics: every matchLabels pair and every expression must hold; an empty
/// selector matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false, // unknown operators select nothing
        }
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
