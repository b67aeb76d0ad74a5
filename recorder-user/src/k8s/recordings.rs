//! The daemon's recording machinery, without the API server: it keeps the recorder's subtrees
//! in step with the node index (a selected pod's cgroup is recorded from before its containers
//! start), collects each container's recording, and when a pod ends turns them into
//! SeccompProfile objects — named, labelled and stated as upstream — for a publisher to apply.
//! SelinuxProfile recordings (AVCs, no eBPF) are kept by [`SelinuxRecordings`], which this
//! drives with the same selection and end rule, naming and labels.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{ResourceExt as _, api::ObjectMeta};

use super::{
    crd::{
        LABEL_CONTAINER_ID, LABEL_PARTIAL, LABEL_RECORDING_ID, LABEL_RECORDING_NAMESPACE,
        MergeStrategy, ProfileState, RecordingKind, SeccompProfile, SeccompProfileSpec,
        SelinuxProfile,
    },
    index::{Key, NodeIndex, Refusal, Selection, container_ids, pod_cgroup_candidates},
    selinux_recordings::SelinuxRecordings,
};
use crate::{
    keyed_store::KeyedStore,
    profile::{
        build::{RecordedSyscalls, add_runtime_handoff, build_profile},
        capabilities,
        crd::{
            ANNOTATION_BOUNDARY, ANNOTATION_CAPABILITIES, ANNOTATION_CONTAINER_ID,
            ANNOTATION_DROPPED, ANNOTATION_POD_UID,
        },
        naming::{NameError, recorded_profile_name, replica_suffix},
        seccomp::Boundary,
    },
    record::{
        RecordError,
        subtree::{ContainerRecording, Subtrees},
    },
};

/// What a sync or a poll produced for the API side.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Profiles to create or update.
    pub profiles: Vec<SeccompProfile>,
    /// SELinux profiles to create or update (from AVCs).
    pub selinux_profiles: Vec<SelinuxProfile>,
    /// Recordings that could not produce a profile, and why (reported as Events on them).
    pub refused: Vec<(Key, String)>,
    /// Pods whose recording started or ended: their recordings' `activeWorkloads` changed.
    pub changed_recordings: BTreeSet<Key>,
}

struct Active {
    subtree: u64,
    selection: Selection,
    /// The pod as last seen (its container statuses name the containers).
    pod: Pod,
    /// Container cgroup name → its recordings (a restarted container has several).
    containers: HashMap<String, ContainerRecording>,
}

pub struct PodRecordings {
    subtrees: Subtrees,
    selinux: SelinuxRecordings,
    active: BTreeMap<Key, Active>,
    /// Refusals already reported, so a pod's refusal is reported once.
    reported: BTreeSet<(Key, String)>,
    /// Where the recordings of containers that finished in still-running pods are kept
    /// (`pod-<uid>.json` in the state directory), so a restarted daemon has them: the kernel
    /// holds only the running containers' sets.
    kept: Option<KeyedStore>,
}

/// Refusals remembered as reported, at most.
const MAX_REPORTED: usize = 10_000;

/// A pod's finished containers, as kept in the state directory.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    namespace: String,
    pod: String,
    containers: Vec<ContainerRecording>,
}

/// The store of kept recordings and the pod's key in it (its UID), when both are there.
fn kept_key<'a>(kept: &'a Option<KeyedStore>, pod: &'a Pod) -> Option<(&'a KeyedStore, &'a str)> {
    Some((kept.as_ref()?, pod.metadata.uid.as_deref()?))
}

impl PodRecordings {
    pub fn new(subtrees: Subtrees) -> Self {
        Self {
            subtrees,
            selinux: SelinuxRecordings::default(),
            active: BTreeMap::new(),
            reported: BTreeSet::new(),
            kept: None,
        }
    }

    /// Keeps finished containers' recordings in `dir` (created when needed).
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.kept = Some(KeyedStore::new(dir, "pod-"));
        self
    }

    /// Writes the pod's finished containers (atomically: a temporary file renamed).
    fn save(&self, key: &Key, active: &Active) {
        let Some((kept, uid)) = kept_key(&self.kept, &active.pod) else {
            return;
        };
        let saved = Saved {
            namespace: key.0.clone(),
            pod: key.1.clone(),
            containers: active
                .containers
                .values()
                .filter(|c| !c.running)
                .cloned()
                .collect(),
        };
        let text = serde_json::to_vec(&saved).expect("recordings serialize");
        if let Err(err) = kept.write(uid, &text, false) {
            tracing::warn!(error = %err, "keeping finished containers' recordings for a restart");
        }
    }

    /// The pod's finished containers kept by a previous daemon, if any.
    fn load(&self, pod: &Pod) -> HashMap<String, ContainerRecording> {
        let Some((kept, uid)) = kept_key(&self.kept, pod) else {
            return HashMap::new();
        };
        let text = match kept.read(uid, super::daemon::MAX_STATE_FILE) {
            Ok(Some(text)) => text,
            Ok(None) => return HashMap::new(),
            Err(err) => {
                tracing::warn!(error = %err, "unreadable kept recordings; ignored");
                return HashMap::new();
            }
        };
        match serde_json::from_slice::<Saved>(&text) {
            Ok(saved) => {
                tracing::info!(pod = %saved.pod, containers = saved.containers.len(), "finished containers' recordings taken over");
                saved
                    .containers
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect()
            }
            Err(err) => {
                tracing::warn!(path = %kept.path_of(uid).unwrap_or_default().display(), error = %err, "unreadable kept recordings; ignored");
                HashMap::new()
            }
        }
    }

    fn forget(&self, pod: &Pod) {
        if let Some((kept, uid)) = kept_key(&self.kept, pod) {
            let _ = kept.remove(uid);
        }
    }

    /// Removes kept recordings of pods not recorded now (they ended while no daemon ran).
    /// Call it once every pod still to record was started. Returns how many went.
    pub fn forget_unknown_state(&self) -> usize {
        let Some(kept) = &self.kept else {
            return 0;
        };
        let wanted: BTreeSet<&str> = self
            .active
            .values()
            .filter_map(|a| a.pod.metadata.uid.as_deref())
            .collect();
        kept.keys()
            .unwrap_or_default()
            .into_iter()
            .filter(|uid| !wanted.contains(uid.as_str()) && kept.remove(uid).unwrap_or(false))
            .count()
    }

    /// The SelinuxProfile recordings (fed the tap's denials).
    pub fn selinux_mut(&mut self) -> &mut SelinuxRecordings {
        &mut self.selinux
    }

    pub fn subtrees_mut(&mut self) -> &mut Subtrees {
        &mut self.subtrees
    }

    /// The pods being recorded (seccomp, then SELinux).
    pub fn active_pods(&self) -> impl Iterator<Item = &Key> {
        self.active.keys().chain(self.selinux.active_pods())
    }

    /// Starts recording newly selected pods whose cgroup exists, and ends the recordings of
    /// pods that are gone, finished or no longer selected (their profiles are in the outcome).
    pub fn sync(&mut self, index: &NodeIndex) -> Result<Outcome, RecordError> {
        let mut out = Outcome::default();
        // Refusals of pods long gone stay in the set; bounded, it starts over (a refusal
        // still true is then reported once more).
        if self.reported.len() > MAX_REPORTED {
            tracing::info!(
                refusals = self.reported.len(),
                "forgetting reported refusals"
            );
            self.reported.clear();
        }
        for (key, pod) in index.pods() {
            let (selection, refusals) = index.selection(pod);
            for refusal in refusals {
                let (recording, reason) = match refusal {
                    Refusal::Unsupported {
                        recording,
                        kind,
                        recorder,
                    } => (
                        recording,
                        format!(
                            "{kind:?} with the {recorder:?} recorder is not supported by syscribe (only SeccompProfile with Bpf and SelinuxProfile with Logs); pod {}/{} not recorded",
                            key.0, key.1
                        ),
                    ),
                    Refusal::Ambiguous { used, ignored } => (
                        ignored.join(","),
                        format!(
                            "pod {}/{} is recorded by {used}, which selects it too",
                            key.0, key.1
                        ),
                    ),
                };
                let entry = ((key.0.clone(), recording), reason);
                if self.reported.insert(entry.clone()) {
                    out.refused.push(entry);
                }
            }
            // SELinux recordings are started by `self.selinux` below.
            let selection = selection.filter(|s| s.kind == RecordingKind::SeccompProfile);
            match (selection, self.active.get_mut(key)) {
                (Some(_), Some(active)) => active.pod = pod.clone(),
                (Some(selection), None) => {
                    let Some(dir) = pod_cgroup_candidates(pod)
                        .into_iter()
                        .map(|path| self.subtrees.root().join(path.trim_start_matches('/')))
                        .find(|dir| dir.is_dir())
                    else {
                        continue; // the kubelet has not created it yet: next sync
                    };
                    let subtree = match self.subtrees.add(&dir) {
                        Ok(subtree) => subtree,
                        Err(err) => {
                            // E.g. the subtree table is full: this pod is not recorded (said
                            // once), the others go on.
                            let entry = (
                                (key.0.clone(), selection.recording.clone()),
                                format!("pod {}/{} is not recorded: {err}", key.0, key.1),
                            );
                            if self.reported.insert(entry.clone()) {
                                tracing::warn!(reason = %entry.1, "pod not recorded");
                                out.refused.push(entry);
                            }
                            continue;
                        }
                    };
                    crate::audit::op_metrics::count(
                        crate::audit::op_metrics::Op::RecordingStarted,
                        "SeccompProfile",
                    );
                    tracing::info!(namespace = %key.0, pod = %key.1, recording = %selection.recording, "recording pod");
                    out.changed_recordings
                        .insert((key.0.clone(), selection.recording.clone()));
                    let containers = self.load(pod);
                    self.active.insert(
                        key.clone(),
                        Active {
                            subtree,
                            selection,
                            pod: pod.clone(),
                            containers,
                        },
                    );
                }
                (None, _) => {}
            }
        }
        let ended = index.ended(self.active.keys(), RecordingKind::SeccompProfile);
        for key in ended {
            self.end(&key, &mut out)?;
        }
        self.selinux.sync(index, &mut out);
        Ok(out)
    }

    /// Collects finished containers' recordings (call it often: their sets go back to the
    /// kernel side).
    pub fn poll(&mut self) -> Result<(), RecordError> {
        for (subtree, recording) in self.subtrees.poll(false)? {
            self.keep(subtree, recording);
        }
        Ok(())
    }

    /// Profiles of the recording's pods as they are now, without ending anything (the
    /// snapshot annotation).
    pub fn snapshot(&mut self, recording: &Key) -> Result<Outcome, RecordError> {
        let mut out = Outcome::default();
        let running = self.subtrees.poll(true)?;
        let mut current: HashMap<u64, Vec<ContainerRecording>> = HashMap::new();
        for (subtree, recording) in running {
            if recording.running {
                current.entry(subtree).or_default().push(recording);
            } else {
                self.keep(subtree, recording);
            }
        }
        for (key, active) in &self.active {
            if key.0 != recording.0 || active.selection.recording != recording.1 {
                continue;
            }
            let mut all: Vec<&ContainerRecording> = active.containers.values().collect();
            let running = current.remove(&active.subtree).unwrap_or_default();
            all.extend(running.iter());
            profiles_of(key, active, &all, &mut out);
        }
        self.selinux.snapshot(recording, &mut out);
        Ok(out)
    }

    fn keep(&mut self, subtree: u64, recording: ContainerRecording) {
        let finished = !recording.running;
        let Some((key, active)) = self.active.iter_mut().find(|(_, a)| a.subtree == subtree) else {
            return;
        };
        active.containers.insert(recording.name.clone(), recording);
        if finished {
            let key = key.clone();
            if let Some(active) = self.active.get(&key) {
                self.save(&key, active);
            }
        }
    }

    fn end(&mut self, key: &Key, out: &mut Outcome) -> Result<(), RecordError> {
        let Some(mut active) = self.active.remove(key) else {
            return Ok(());
        };
        for (subtree, recording) in self.subtrees.poll(false)? {
            if subtree == active.subtree {
                active.containers.insert(recording.name.clone(), recording);
            } else {
                self.keep(subtree, recording);
            }
        }
        for recording in self.subtrees.remove(active.subtree)? {
            active.containers.insert(recording.name.clone(), recording);
        }
        crate::audit::op_metrics::count(
            crate::audit::op_metrics::Op::RecordingFinished,
            "SeccompProfile",
        );
        tracing::info!(namespace = %key.0, pod = %key.1, containers = active.containers.len(), "pod recording ended");
        out.changed_recordings
            .insert((key.0.clone(), active.selection.recording.clone()));
        let all: Vec<&ContainerRecording> = active.containers.values().collect();
        profiles_of(key, &active, &all, out);
        self.forget(&active.pod);
        Ok(())
    }

    /// Stops here without ending anything: with a pinned recorder the kernel goes on recording
    /// and the next daemon takes over (a restart loses nothing of running containers).
    pub async fn suspend(self) -> Result<(), RecordError> {
        let selinux = self.selinux.active_pods().count();
        if selinux > 0 {
            tracing::warn!(
                pods = selinux,
                "SELinux recordings are kept in memory only: what these pods were denied so far is lost; the next daemon records them from now on"
            );
        }
        self.subtrees.suspend().await
    }

    /// Ends every recording (the daemon stops) and hands back what was recorded.
    pub async fn finish(mut self) -> Result<Outcome, RecordError> {
        let mut out = Outcome::default();
        let keys: Vec<Key> = self.active.keys().cloned().collect();
        for key in keys {
            self.end(&key, &mut out)?;
        }
        self.selinux.finish(&mut out);
        self.subtrees.finish().await?;
        Ok(out)
    }
}

/// One profile per selected container of the pod, from its recordings.
fn profiles_of(key: &Key, active: &Active, recordings: &[&ContainerRecording], out: &mut Outcome) {
    let names = container_ids(&active.pod);
    // Every pod's subtree holds one cgroup that is in no status: its sandbox (the pause
    // container the runtime starts first; seen on the real cluster). One such cgroup is that;
    // more mean containers the daemon could not name, each warned about.
    let unnamed: Vec<&&ContainerRecording> = recordings
        .iter()
        .filter(|r| {
            !r.container_id
                .as_ref()
                .is_some_and(|id| names.contains_key(id))
        })
        .collect();
    if let [sandbox] = unnamed[..] {
        tracing::debug!(namespace = %key.0, pod = %key.1, cgroup = %sandbox.name, "the pod's sandbox: no profile for it");
    } else {
        for recording in &unnamed {
            tracing::warn!(namespace = %key.0, pod = %key.1, cgroup = %recording.name, unnamed = unnamed.len(), "a recorded container is not in the pod's status (beyond its sandbox); no profile for it");
        }
    }
    let mut by_name: BTreeMap<String, (RecordedSyscalls, Boundary, Vec<String>)> = BTreeMap::new();
    for recording in recordings {
        let Some(name) = recording.container_id.as_ref().and_then(|id| names.get(id)) else {
            continue;
        };
        if !active.selection.containers.contains(name) {
            continue;
        }
        let entry = by_name.entry(name.clone()).or_insert_with(|| {
            (
                RecordedSyscalls {
                    numbers: BTreeSet::new(),
                    out_of_range: 0,
                    capabilities: Some(0),
                },
                recording.boundary,
                Vec::new(),
            )
        });
        entry
            .0
            .numbers
            .extend(recording.syscalls.numbers.iter().copied());
        entry.0.out_of_range += recording.syscalls.out_of_range;
        entry.1 = entry.1.merge(recording.boundary);
        // A restarted container: what any of its runs used (unknown if one run's is).
        entry.0.capabilities = entry
            .0
            .capabilities
            .zip(recording.syscalls.capabilities)
            .map(|(a, b)| a | b);
        entry.2.extend(recording.container_id.clone());
    }
    let selection = &active.selection;
    for (container, (syscalls, boundary, ids)) in by_name {
        let Some(mut metadata) = recorded_metadata(key, selection, &active.pod, &container, out)
        else {
            continue;
        };
        let mut built = build_profile(&syscalls, Vec::new());
        if boundary.found() {
            add_runtime_handoff(&mut built.seccomp);
        }
        if let Boundary::None { reason } = boundary {
            tracing::warn!(namespace = %key.0, pod = %key.1, %container, reason = reason.code(), "where the container's own syscalls begin was not found ({reason}), so its profile holds everything recorded in it, the runtime's setup included, and the capabilities it used are unknown");
        }
        let mut annotations = BTreeMap::from([
            (
                ANNOTATION_DROPPED.to_owned(),
                (syscalls.out_of_range + built.unnamed.len() as u64).to_string(),
            ),
            (ANNOTATION_BOUNDARY.to_owned(), boundary.annotation()),
        ]);
        annotations.insert(ANNOTATION_CONTAINER_ID.to_owned(), ids.join(","));
        if let Some(uid) = &active.pod.metadata.uid {
            annotations.insert(ANNOTATION_POD_UID.to_owned(), uid.clone());
        }
        if let Some(names) = built
            .seccomp
            .syscribe
            .as_ref()
            .and_then(|m| m.capabilities.as_deref())
        {
            annotations.insert(
                ANNOTATION_CAPABILITIES.to_owned(),
                capabilities::annotation(names),
            );
        }
        let mut spec = SeccompProfileSpec::from_seccomp(&built.seccomp);
        if selection.disable_after {
            spec.state = Some(ProfileState::Disabled);
        }
        metadata.annotations = Some(annotations);
        out.profiles.push(SeccompProfile {
            metadata,
            spec,
            status: None,
        });
    }
}

/// The name and labels of the profile recorded for `container` of the pod, as upstream gives
/// them (either kind): `<recording>-<container>[-<replica suffix>]`, the recording's name and
/// namespace, the container's name, and `partial` under `mergeStrategy: Containers`. None when
/// the name is not valid (the refusal is in `out`, reported as an Event).
pub(super) fn recorded_metadata(
    key: &Key,
    selection: &Selection,
    pod: &Pod,
    container: &str,
    out: &mut Outcome,
) -> Option<ObjectMeta> {
    let pod_name = pod.name_any();
    let replica = replica_suffix(&pod_name, pod.metadata.generate_name.as_deref());
    let name = match recorded_profile_name(&selection.recording, container, replica) {
        Ok(name) => name,
        Err(err @ (NameError::Recording { .. } | NameError::Profile { .. })) => {
            out.refused.push((
                (key.0.clone(), selection.recording.clone()),
                err.to_string(),
            ));
            return None;
        }
    };
    let mut labels = BTreeMap::from([
        (LABEL_RECORDING_ID.to_owned(), selection.recording.clone()),
        (LABEL_RECORDING_NAMESPACE.to_owned(), key.0.clone()),
        (LABEL_CONTAINER_ID.to_owned(), container.to_owned()),
    ]);
    if selection.merge == MergeStrategy::Containers {
        labels.insert(LABEL_PARTIAL.to_owned(), "true".to_owned());
    }
    Some(ObjectMeta {
        name: Some(name),
        labels: Some(labels),
        ..ObjectMeta::default()
    })
}
