//! The daemon's state and what each event does to it: recordings start and end and their
//! profiles are published, profiles are installed (with retries), re-lists are applied.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{Client, ResourceExt as _, runtime::watcher::Event};

use super::{
    DaemonError,
    events::{Relist, cache_event, key_of, on_namespace, on_pod, on_profile, on_recording},
    pending::{Pending, backoff},
};
use crate::{
    audit::tap::SelinuxDenial,
    k8s::{
        crd::{
            ANNOTATION_SNAPSHOT, ProfileRecording, RawSelinuxProfile, SeccompProfile,
            SelinuxProfile,
        },
        index::{Key, NodeIndex},
        install::NodeProfiles,
        publish::{self, PublishError},
        recordings::{Outcome, PodRecordings},
        selinux_node::{Built, SelinuxKind, SelinuxNode},
    },
    resolve::runtime::KnownNames,
};

/// A watch event of either SELinux kind.
pub enum SelinuxEvent {
    Profile(Event<SelinuxProfile>),
    Raw(Event<RawSelinuxProfile>),
}

/// The daemon's state and what it does with each watch event; `run` feeds it. The recorder
/// is real (root); the API client may be a mock (the reconcile tests drive this directly).
pub struct Daemon {
    client: Client,
    known: KnownNames,
    index: NodeIndex,
    pub recordings: PodRecordings,
    pub installed: NodeProfiles,
    /// SelinuxProfiles and RawSelinuxProfiles (None: not installing on this node).
    pub selinux: Option<SelinuxNode>,
    /// SELinux profiles to reconcile: attempts so far and when to try next.
    selinux_due: BTreeMap<(SelinuxKind, String), (u32, tokio::time::Instant)>,
    selinux_relist: [Relist; 2],
    /// Profiles that could not be published yet.
    retry: Pending,
    /// Profiles to reconcile (changed, failed, or held while pods changed): attempts so far
    /// and when to try next.
    unreconciled: BTreeMap<String, (u32, tokio::time::Instant)>,
    pod_relist: Relist,
    namespace_relist: Relist,
    recording_relist: Relist,
    profile_relist: Relist,
    /// Whether the pods, namespaces and recordings have each been listed once: then every
    /// pod still to record is known, and subtrees adopted from a previous daemon that nobody
    /// wants any more are pruned.
    listed: [bool; 3],
    pruned: bool,
    /// This node's name and the /metrics its coverage gauges are set in.
    coverage: Option<(
        String,
        std::sync::Arc<std::sync::Mutex<crate::audit::metrics::Metrics>>,
    )>,
}

impl Daemon {
    pub fn new(
        client: Client,
        known: KnownNames,
        recordings: PodRecordings,
        installed: NodeProfiles,
    ) -> Self {
        Self {
            client,
            known,
            index: NodeIndex::default(),
            recordings,
            installed,
            selinux: None,
            selinux_due: BTreeMap::new(),
            selinux_relist: [Relist::default(), Relist::default()],
            retry: Pending::default(),
            unreconciled: BTreeMap::new(),
            pod_relist: Relist::default(),
            namespace_relist: Relist::default(),
            recording_relist: Relist::default(),
            profile_relist: Relist::default(),
            listed: [false; 3],
            pruned: false,
            coverage: None,
        }
    }

    pub fn index(&self) -> &NodeIndex {
        &self.index
    }

    /// Keeps profiles not published yet in `dir` (`pending-<name>.json`), and takes over
    /// those a previous daemon left there.
    pub fn with_state_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.retry = Pending::load(dir);
        self
    }

    /// Sets this node's coverage gauges (`k8s::coverage`) in `metrics` at each pod event.
    pub fn with_coverage_gauges(
        mut self,
        node: String,
        metrics: std::sync::Arc<std::sync::Mutex<crate::audit::metrics::Metrics>>,
    ) -> Self {
        self.coverage = Some((node, metrics));
        self
    }

    pub(super) fn due(&mut self, names: impl IntoIterator<Item = String>) {
        let now = tokio::time::Instant::now();
        for name in names {
            self.unreconciled.insert(name, (0, now));
        }
    }

    /// Profiles waiting to be published again, and profiles whose installation failed.
    pub fn waiting(&self) -> Vec<String> {
        self.retry
            .waiting
            .iter()
            .map(|w| w.profile.name_any())
            .chain(self.unreconciled.keys().cloned())
            .collect()
    }

    pub async fn pod_event(&mut self, event: Event<Pod>) {
        self.listed[0] |= matches!(event, Event::InitDone);
        on_pod(&mut self.index, &self.known, &mut self.pod_relist, event);
        if let Some((node, metrics)) = &self.coverage {
            let gauges = crate::k8s::coverage::node_gauges(node, self.index.pods().map(|(_, p)| p));
            if let Ok(mut metrics) = metrics.lock() {
                metrics.gauges = gauges;
            }
        }
        // A profile kept for its users may be free to go now.
        let held = self.installed.held();
        self.due(held);
        let held = self
            .selinux
            .as_ref()
            .map(SelinuxNode::held)
            .unwrap_or_default();
        let now = tokio::time::Instant::now();
        for key in held {
            self.selinux_due.insert(key, (0, now));
        }
        self.changed().await;
    }

    pub async fn namespace_event(&mut self, event: Event<Namespace>) {
        self.listed[1] |= matches!(event, Event::InitDone);
        on_namespace(&mut self.index, &mut self.namespace_relist, event);
        self.changed().await;
    }

    pub async fn recording_event(
        &mut self,
        event: Event<ProfileRecording>,
    ) -> Result<(), DaemonError> {
        self.listed[2] |= matches!(event, Event::InitDone);
        if let Some(recording) = on_recording(&mut self.index, &mut self.recording_relist, event) {
            handle_recording(
                &self.client,
                &mut self.recordings,
                &mut self.retry,
                &recording,
            )
            .await?;
        }
        self.changed().await;
        Ok(())
    }

    /// A pod's AVC, from the enricher's tap: into its SelinuxProfile recording, if any.
    pub fn avc(&mut self, denial: &SelinuxDenial) {
        self.recordings.selinux_mut().denial(denial);
    }

    pub async fn profile_event(&mut self, event: Event<SeccompProfile>) {
        let affected = on_profile(&mut self.installed, &mut self.profile_relist, event);
        self.due(affected);
        self.reconcile_profiles().await;
    }

    pub async fn selinux_event(&mut self, event: SelinuxEvent) {
        let Some(node) = self.selinux.as_mut() else {
            return;
        };
        let (kind, changed) = match event {
            SelinuxEvent::Profile(event) => (
                SelinuxKind::Profile,
                cache_event(&mut node.profiles, &mut self.selinux_relist[0], event),
            ),
            SelinuxEvent::Raw(event) => (
                SelinuxKind::Raw,
                cache_event(&mut node.raw, &mut self.selinux_relist[1], event),
            ),
        };
        let now = tokio::time::Instant::now();
        for name in changed {
            // A RawSelinuxProfile that shares its name with a SelinuxProfile is looked at again
            // whenever either changes.
            self.selinux_due
                .insert((SelinuxKind::Raw, name.clone()), (0, now));
            self.selinux_due.insert((kind, name), (0, now));
        }
        self.reconcile_selinux().await;
    }

    pub async fn selinux_built(&mut self, built: Built) {
        let Some(node) = self.selinux.as_mut() else {
            return;
        };
        let pods = self.index.pods().map(|(_, pod)| pod);
        if let Err(err) = node.built(&self.client, built, pods).await {
            tracing::warn!(error = %err, "writing an SELinux profile's status");
        }
    }

    async fn reconcile_selinux(&mut self) {
        let Some(node) = self.selinux.as_mut() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let due: Vec<((SelinuxKind, String), u32)> = self
            .selinux_due
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(key, (attempts, _))| (key.clone(), *attempts))
            .collect();
        for ((kind, name), attempts) in due {
            self.selinux_due.remove(&(kind, name.clone()));
            let pods = self.index.pods().map(|(_, pod)| pod);
            if let Err(err) = node.reconcile(&self.client, kind, &name, pods).await {
                tracing::warn!(error = %err, kind = kind.name(), profile = %name, attempts = attempts + 1, "installing an SELinux profile; will retry");
                self.selinux_due
                    .insert((kind, name), (attempts + 1, now + backoff(attempts + 1)));
            }
        }
    }

    /// Every 50 ms: collect what the kernel recorded, publish what waits, re-summarize.
    pub async fn tick(&mut self) {
        // A failed read is retried at the next tick; the daemon goes on.
        if let Err(err) = self.recordings.poll() {
            tracing::warn!(error = %err, "collecting recordings");
        }
        self.retry.retry_due(&self.client).await;
        if let Err(err) = self.installed.recheck_due(&self.client).await {
            tracing::warn!(error = %err, "summarizing a profile's status");
        }
        self.reconcile_profiles().await;
        self.reconcile_selinux().await;
    }

    async fn reconcile_profiles(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<(String, u32)> = self
            .unreconciled
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(name, (attempts, _))| (name.clone(), *attempts))
            .collect();
        for (name, attempts) in due {
            self.unreconciled.remove(&name);
            let pods = self.index.pods().map(|(_, pod)| pod);
            if let Err(err) = self.installed.reconcile(&self.client, &name, pods).await {
                tracing::warn!(error = %err, profile = %name, attempts = attempts + 1, "installing a profile; will retry");
                self.unreconciled
                    .insert(name, (attempts + 1, now + backoff(attempts + 1)));
            }
        }
    }

    /// After the index changed: recordings start and end, their profiles are published, and
    /// held profiles are looked at again.
    async fn changed(&mut self) {
        self.reconcile_profiles().await;
        match self.recordings.sync(&self.index) {
            Ok(outcome) => {
                publish_outcome(&self.client, &self.index, &mut self.retry, outcome).await
            }
            Err(err) => tracing::warn!(error = %err, "starting or ending pod recordings"),
        }
        if !self.pruned && self.listed.iter().all(|l| *l) {
            // Every pod to record was added by the sync above (or is not there yet to be
            // added: its cgroup missing means it is not running anything to keep).
            self.pruned = true;
            // Ready (/readyz 200): from here every pod to record on this node is recorded.
            if let Some((_, metrics)) = &self.coverage {
                metrics
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .starting = false;
            }
            tracing::info!("ready: pods, namespaces and recordings listed");
            if let Err(err) = self.recordings.subtrees_mut().prune_adopted() {
                tracing::warn!(error = %err, "pruning subtrees of ended pods");
            }
            let forgotten = self.recordings.forget_unknown_state();
            if forgotten > 0 {
                tracing::warn!(
                    pods = forgotten,
                    "kept recordings of pods that ended while no daemon ran were dropped"
                );
            }
        }
    }

    /// Stopping: recordings of running pods stay in the kernel for the next daemon when the
    /// recorder is pinned; else they end here.
    pub async fn stop(self, pinned: bool, pin_dir: &std::path::Path) -> Result<(), DaemonError> {
        if pinned && self.recordings.active_pods().next().is_some() {
            tracing::info!(pin_dir = %pin_dir.display(), "daemon stopping; recordings go on in the kernel for the next daemon");
            self.recordings.suspend().await?;
        } else {
            tracing::info!("daemon stopping");
            // The recordings end here: their profiles are published (or kept on disk for the
            // next daemon when the API cannot be reached now).
            let outcome = self.recordings.finish().await?;
            let mut retry = self.retry;
            for profile in outcome.profiles {
                retry.publish(&self.client, profile).await;
            }
            for profile in outcome.selinux_profiles {
                retry.publish(&self.client, profile).await;
            }
        }
        Ok(())
    }
}

/// Finalizer and merge for `mergeStrategy: Containers`; the snapshot annotation.
async fn handle_recording(
    client: &Client,
    recordings: &mut PodRecordings,
    retry: &mut Pending,
    recording: &ProfileRecording,
) -> Result<(), DaemonError> {
    let result: Result<(), PublishError> = async {
        publish::ensure_merge_finalizer(client, recording).await?;
        let merged = publish::merge_on_deletion(client, recording).await?;
        if !merged.is_empty() {
            tracing::info!(recording = %recording.name_any(), profiles = ?merged, "partial profiles merged");
        }
        Ok(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "recording finalization");
    }
    if recording.annotations().contains_key(ANNOTATION_SNAPSHOT) {
        let key = key_of(recording);
        let outcome = recordings.snapshot(&key)?;
        tracing::info!(recording = %key.1, profiles = outcome.profiles.len() + outcome.selinux_profiles.len(), "snapshot");
        for profile in outcome.profiles {
            retry.publish(client, profile).await;
        }
        for profile in outcome.selinux_profiles {
            retry.publish(client, profile).await;
        }
        if let Err(err) = publish::clear_snapshot(client, &key).await {
            tracing::warn!(error = %err, "clearing the snapshot annotation");
        }
    }
    Ok(())
}

async fn publish_outcome(
    client: &Client,
    index: &NodeIndex,
    retry: &mut Pending,
    outcome: Outcome,
) {
    for profile in outcome.profiles {
        tracing::info!(profile = %profile.name_any(), "publishing recorded profile");
        retry.publish(client, profile).await;
    }
    for profile in outcome.selinux_profiles {
        tracing::info!(profile = %profile.name_any(), "publishing recorded SELinux profile");
        retry.publish(client, profile).await;
    }
    for (recording, reason) in outcome.refused {
        if let Err(err) = publish::warn(client, &recording, "ProfileNotRecorded", &reason).await {
            tracing::warn!(error = %err, %reason, "publishing an event");
        }
    }
    let mut workloads: HashMap<Key, Vec<String>> = HashMap::new();
    for recording in outcome.changed_recordings {
        let active = index.active_workloads(&recording);
        workloads.insert(recording, active);
    }
    for (recording, active) in workloads {
        if let Err(err) = publish::set_active_workloads(client, &recording, active).await {
            tracing::warn!(error = %err, "updating activeWorkloads");
        }
    }
}
