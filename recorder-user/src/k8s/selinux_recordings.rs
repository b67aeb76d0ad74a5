//! SelinuxProfile recordings (`kind: SelinuxProfile`, `recorder: Logs`): a selected pod's
//! containers run as the permissive recording type ([`RECORDING_TYPE`]); the enricher's tap
//! hands each of their AVCs over ([`SelinuxDenial`]), kept per container in a
//! [`SelinuxRecording`]. When the pod ends — gone, finished or no longer selected, the rule
//! seccomp recordings follow — each selected container becomes one SelinuxProfile, named and
//! labelled as seccomp's recorded profiles are ([`recorded_metadata`]). No eBPF is involved.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::{
    crd::{ProfileState, RecordingKind, SelinuxProfile, SelinuxProfileSpec, default_inherit},
    index::{Key, NodeIndex, Selection},
    recordings::{Outcome, recorded_metadata},
};
use crate::{
    audit::tap::SelinuxDenial,
    profile::{
        crd::{ANNOTATION_DENIALS, ANNOTATION_DROPPED_DENIALS, ANNOTATION_POD_UID},
        selinux_record::SelinuxRecording,
    },
    selinux::RECORDING_TYPE,
};

/// What became of the denials handed over.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Taken into a container's recording (kept, or counted there as not kept).
    pub recorded: u64,
    /// Of pods not recorded now (not selected, or their recording ended already).
    pub not_recorded: u64,
    /// Of a recorded pod's container the recording does not select.
    pub other_container: u64,
}

#[derive(Debug, Default, Clone)]
struct Container {
    recording: SelinuxRecording,
    /// AVCs handed over for this container.
    avcs: u64,
}

struct Active {
    selection: Selection,
    /// The pod as last seen (for its name's replica suffix and its UID).
    pod: Pod,
    /// By container name; only selected containers (bounded by the pod's spec).
    containers: BTreeMap<String, Container>,
}

/// The node's SelinuxProfile recordings, by pod.
#[derive(Default)]
pub struct SelinuxRecordings {
    active: BTreeMap<Key, Active>,
    pub counts: Counts,
}

impl SelinuxRecordings {
    /// The pods being recorded.
    pub fn active_pods(&self) -> impl Iterator<Item = &Key> {
        self.active.keys()
    }

    /// Starts recording newly selected pods and ends the recordings of pods that are gone,
    /// finished or no longer selected (their profiles go to `out`).
    pub fn sync(&mut self, index: &NodeIndex, out: &mut Outcome) {
        for (key, pod) in index.pods() {
            let Some(selection) = index
                .selection(pod)
                .0
                .filter(|s| s.kind == RecordingKind::SelinuxProfile)
            else {
                continue;
            };
            if let Some(active) = self.active.get_mut(key) {
                active.pod = pod.clone();
                continue;
            }
            crate::audit::op_metrics::count(
                crate::audit::op_metrics::Op::RecordingStarted,
                "SelinuxProfile",
            );
            tracing::info!(namespace = %key.0, pod = %key.1, recording = %selection.recording, containers = ?selection.containers, "recording pod's SELinux denials (its containers should run as {RECORDING_TYPE})");
            out.changed_recordings
                .insert((key.0.clone(), selection.recording.clone()));
            self.active.insert(
                key.clone(),
                Active {
                    selection,
                    pod: pod.clone(),
                    containers: BTreeMap::new(),
                },
            );
        }
        let ended = index.ended(self.active.keys(), RecordingKind::SelinuxProfile);
        for key in ended {
            self.end(&key, out);
        }
    }

    /// One denial from the enricher's tap.
    pub fn denial(&mut self, denial: &SelinuxDenial) {
        let key = (denial.namespace.clone(), denial.pod.clone());
        let Some(active) = self.active.get_mut(&key) else {
            self.counts.not_recorded += 1;
            return;
        };
        if !active.selection.containers.contains(&denial.container) {
            self.counts.other_container += 1;
            return;
        }
        let container = active
            .containers
            .entry(denial.container.clone())
            .or_default();
        container.avcs += 1;
        container.recording.add(
            RECORDING_TYPE,
            &denial.scontext,
            &denial.tcontext,
            &denial.tclass,
            &denial.perms,
        );
        self.counts.recorded += 1;
    }

    fn end(&mut self, key: &Key, out: &mut Outcome) {
        let Some(active) = self.active.remove(key) else {
            return;
        };
        let avcs: u64 = active.containers.values().map(|c| c.avcs).sum();
        crate::audit::op_metrics::count(
            crate::audit::op_metrics::Op::RecordingFinished,
            "SelinuxProfile",
        );
        tracing::info!(namespace = %key.0, pod = %key.1, avcs, "pod's SELinux recording ended");
        out.changed_recordings
            .insert((key.0.clone(), active.selection.recording.clone()));
        profiles_of(key, &active, out);
    }

    /// Profiles of the recording's pods as they are now, without ending anything.
    pub fn snapshot(&self, recording: &Key, out: &mut Outcome) {
        for (key, active) in &self.active {
            if key.0 == recording.0 && active.selection.recording == recording.1 {
                profiles_of(key, active, out);
            }
        }
    }

    /// Ends every recording (the daemon stops).
    pub fn finish(&mut self, out: &mut Outcome) {
        let keys: Vec<Key> = self.active.keys().cloned().collect();
        for key in keys {
            self.end(&key, out);
        }
    }
}

/// One SelinuxProfile per selected container: what its AVCs allow, on top of the container
/// template it inherits. A container never denied anything gets the template alone.
fn profiles_of(key: &Key, active: &Active, out: &mut Outcome) {
    let none = Container::default();
    for name in &active.selection.containers {
        let container = active.containers.get(name).unwrap_or(&none);
        let Some(mut metadata) = recorded_metadata(key, &active.selection, &active.pod, name, out)
        else {
            continue;
        };
        let r = &container.recording;
        let rules: usize = r.allow.values().map(BTreeMap::len).sum();
        let dropped = r.malformed + r.over_limit;
        let profile = metadata.name.clone().unwrap_or_default();
        tracing::info!(namespace = %key.0, pod = %key.1, container = %name, %profile, avcs = container.avcs, rules, "SELinux profile recorded");
        if r.other_source > 0 {
            tracing::warn!(namespace = %key.0, pod = %key.1, container = %name, avcs = r.other_source, "denials of a process not running as {RECORDING_TYPE} were not recorded: does the container set seLinuxOptions.type: {RECORDING_TYPE}?");
        }
        if dropped > 0 {
            tracing::warn!(namespace = %key.0, pod = %key.1, container = %name, malformed = r.malformed, over_limit = r.over_limit, "denials a SelinuxProfile cannot hold were not recorded");
        }
        let mut annotations = BTreeMap::from([
            (ANNOTATION_DENIALS.to_owned(), container.avcs.to_string()),
            (ANNOTATION_DROPPED_DENIALS.to_owned(), dropped.to_string()),
        ]);
        if let Some(uid) = &active.pod.metadata.uid {
            annotations.insert(ANNOTATION_POD_UID.to_owned(), uid.clone());
        }
        metadata.annotations = Some(annotations);
        out.selinux_profiles.push(SelinuxProfile {
            metadata,
            spec: SelinuxProfileSpec {
                inherit: default_inherit(),
                allow: r.allow.clone(),
                mode: None,
                permissive: false,
                state: active
                    .selection
                    .disable_after
                    .then_some(ProfileState::Disabled),
            },
            status: None,
        });
    }
}

#[cfg(test)]
#[path = "selinux_recordings_tests.rs"]
mod tests;
