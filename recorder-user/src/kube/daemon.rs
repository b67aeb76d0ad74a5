//! `syscribe daemon`: one per node. Watches the node's pods, the namespaces enabled for
//! recording and the ProfileRecordings; records the selected pods' containers; publishes
//! their profiles; streams enriched denials as JSON lines on stdout (with the pod index's
//! names); serves /metrics, /healthz and /readyz.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    time::Duration,
};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::watcher::{self, Event, watcher},
};
use thiserror::Error;

use super::{
    crd::{ANNOTATION_SNAPSHOT, LABEL_ENABLE_RECORDING, ProfileRecording, SeccompProfile},
    index::{Key, NodeIndex, container_ids},
    install::{Installer, NodeProfiles},
    publish::{self, PublishError},
    recordings::{Outcome, PodRecordings},
};
use crate::{
    record::{HostPaths, RecordError, subtree::Subtrees},
    resolve::runtime::{KnownNames, PodNames},
};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// This node's name (the pods recorded are the ones scheduled here).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9100")]
    pub metrics_addr: SocketAddr,
    /// Do not stream enriched denials.
    #[arg(long)]
    pub no_enrich: bool,
    /// Where the recorder's kernel state is pinned (bpffs) so recordings survive a restart of
    /// the daemon; without a bpf filesystem there, recordings end with the daemon.
    #[arg(long, default_value = "/sys/fs/bpf/syscribe")]
    pub pin_dir: std::path::PathBuf,
    /// The kubelet's root directory: SeccompProfiles are installed in its
    /// `seccomp/operator/` for pods' `localhostProfile: operator/<name>.json`.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: std::path::PathBuf,
    /// Where the recordings of containers that finished in still-running pods are kept, so a
    /// restarted daemon has them (the kernel holds only running containers' sets).
    #[arg(long, default_value = "/var/lib/syscribe")]
    pub state_dir: std::path::PathBuf,
    /// Do not install SeccompProfiles on this node (record only).
    #[arg(long)]
    pub no_install: bool,
}

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("cannot reach the Kubernetes API (in-cluster config or kubeconfig): {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot serve /metrics and /healthz on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("watching {what}: {source}")]
    Watch {
        what: &'static str,
        #[source]
        source: watcher::Error,
    },
}

/// Profiles that could not be published yet are retried; at most this many wait.
const MAX_RETRIES: usize = 1000;

/// One watch stream's re-list: objects not seen again between Init and InitDone are gone.
#[derive(Default)]
struct Relist(Option<BTreeSet<Key>>);

fn key_of<K: kube::Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

pub async fn run(paths: HostPaths, args: DaemonArgs) -> Result<(), DaemonError> {
    let client = Client::try_default()
        .await
        .map_err(|source| DaemonError::Client { source })?;
    let known: KnownNames = KnownNames::default();
    if args.no_enrich {
        // /healthz, /readyz (and the plain counters) without the enricher.
        let metrics = std::sync::Arc::new(std::sync::Mutex::new(
            crate::audit::metrics::Metrics::default(),
        ));
        crate::audit::metrics::serve(args.metrics_addr, metrics).map_err(|source| {
            DaemonError::Serve {
                addr: args.metrics_addr,
                source,
            }
        })?;
    } else {
        let (paths, node, addr, known) = (
            HostPaths {
                btf: paths.btf.clone(),
                mountinfo: paths.mountinfo.clone(),
            },
            args.node.clone(),
            args.metrics_addr,
            known.clone(),
        );
        std::thread::Builder::new()
            .name("enricher".into())
            .spawn(move || {
                let args = crate::cli::enrich::EnrichArgs::for_daemon(node, addr);
                if let Err(err) = crate::cli::enrich::run_with(&paths, args, Some(known)) {
                    tracing::error!(error = %err, "the enricher stopped");
                }
            })
            .map_err(|source| DaemonError::Thread { source })?;
    }

    let (subtrees, pinned) = match Subtrees::start_pinned(&paths, &args.pin_dir) {
        Ok(subtrees) => (subtrees, true),
        Err(RecordError::Bpf(err)) if matches!(*err, crate::bpf::BpfError::NotBpffs { .. }) => {
            tracing::warn!(error = %err, "recordings will not survive a restart of the daemon");
            (Subtrees::start(&paths)?, false)
        }
        Err(err) => return Err(err.into()),
    };
    let installed = NodeProfiles::new(
        args.node.clone(),
        Installer::new(&args.kubelet_dir),
        crate::profile::validate::Validator::for_this_host(),
    );
    let mut daemon = Daemon::new(
        client.clone(),
        known,
        PodRecordings::new(subtrees).with_state_dir(args.state_dir.clone()),
        installed,
    );
    let mut pods: BoxStream<_> = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", args.node)),
    )
    .boxed();
    let mut namespaces: BoxStream<_> = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(LABEL_ENABLE_RECORDING),
    )
    .boxed();
    let mut recording_events: BoxStream<_> = watcher(
        Api::<ProfileRecording>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut profile_events: BoxStream<_> = if args.no_install {
        futures::stream::pending().boxed()
    } else {
        watcher(
            Api::<SeccompProfile>::all(client.clone()),
            watcher::Config::default(),
        )
        .boxed()
    };
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RecordError::Wait { source })?;
    tracing::info!(node = %args.node, "daemon started");
    loop {
        tokio::select! {
            event = pods.next() => match event {
                Some(Ok(event)) => daemon.pod_event(event).await,
                Some(Err(err)) => tracing::warn!(error = %err, "pod watch"),
                None => break,
            },
            event = namespaces.next() => match event {
                Some(Ok(event)) => daemon.namespace_event(event).await,
                Some(Err(err)) => tracing::warn!(error = %err, "namespace watch"),
                None => break,
            },
            event = recording_events.next() => match event {
                Some(Ok(event)) => daemon.recording_event(event).await?,
                Some(Err(err)) => tracing::warn!(error = %err, "recording watch"),
                None => break,
            },
            event = profile_events.next() => match event {
                Some(Ok(event)) => daemon.profile_event(event).await,
                Some(Err(err)) => tracing::warn!(error = %err, "SeccompProfile watch"),
                None => break,
            },
            created = daemon.recordings.subtrees_mut().created() => {
                if let Err(err) = created {
                    tracing::warn!(error = %err, "watching pods' cgroups");
                }
            }
            _ = tick.tick() => daemon.tick().await,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    daemon.stop(pinned, &args.pin_dir).await
}

/// The daemon's state and what it does with each watch event; `run` feeds it. The recorder
/// is real (root); the API client may be a mock (the reconcile tests drive this directly).
pub struct Daemon {
    client: Client,
    known: KnownNames,
    index: NodeIndex,
    pub recordings: PodRecordings,
    pub installed: NodeProfiles,
    /// Profiles that could not be published yet (at most MAX_RETRIES).
    retry: Vec<SeccompProfile>,
    /// Profiles whose reconcile failed or is due (pods changed under a held one).
    unreconciled: BTreeSet<String>,
    pod_relist: Relist,
    namespace_relist: Relist,
    recording_relist: Relist,
    profile_relist: Relist,
    /// Whether the pods, namespaces and recordings have each been listed once: then every
    /// pod still to record is known, and subtrees adopted from a previous daemon that nobody
    /// wants any more are pruned.
    listed: [bool; 3],
    pruned: bool,
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
            retry: Vec::new(),
            unreconciled: BTreeSet::new(),
            pod_relist: Relist::default(),
            namespace_relist: Relist::default(),
            recording_relist: Relist::default(),
            profile_relist: Relist::default(),
            listed: [false; 3],
            pruned: false,
        }
    }

    pub fn index(&self) -> &NodeIndex {
        &self.index
    }

    /// Profiles waiting to be published again, and profiles whose installation failed.
    pub fn waiting(&self) -> Vec<String> {
        self.retry
            .iter()
            .map(|p| p.name_any())
            .chain(self.unreconciled.iter().cloned())
            .collect()
    }

    pub async fn pod_event(&mut self, event: Event<Pod>) {
        self.listed[0] |= matches!(event, Event::InitDone);
        on_pod(&mut self.index, &self.known, &mut self.pod_relist, event);
        // A profile kept for its users may be free to go now.
        self.unreconciled.extend(self.installed.held());
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

    pub async fn profile_event(&mut self, event: Event<SeccompProfile>) {
        let affected = on_profile(&mut self.installed, &mut self.profile_relist, event);
        self.unreconciled.extend(affected);
        self.reconcile_profiles().await;
    }

    /// Every 50 ms: collect what the kernel recorded, publish what waits, re-summarize.
    pub async fn tick(&mut self) {
        // A failed read is retried at the next tick; the daemon goes on.
        if let Err(err) = self.recordings.poll() {
            tracing::warn!(error = %err, "collecting recordings");
        }
        let waiting = std::mem::take(&mut self.retry);
        for profile in waiting {
            apply_or_retry(&self.client, &mut self.retry, profile).await;
        }
        if let Err(err) = self.installed.recheck_due(&self.client).await {
            tracing::warn!(error = %err, "summarizing a profile's status");
        }
        self.reconcile_profiles().await;
    }

    async fn reconcile_profiles(&mut self) {
        for name in std::mem::take(&mut self.unreconciled) {
            let pods = self.index.pods().map(|(_, pod)| pod);
            if let Err(err) = self.installed.reconcile(&self.client, &name, pods).await {
                tracing::warn!(error = %err, profile = %name, "installing a profile; will retry");
                self.unreconciled.insert(name);
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
            self.recordings.finish().await?;
        }
        Ok(())
    }
}

fn relist<K: kube::Resource>(
    relist: &mut Relist,
    event: Event<K>,
    mut apply: impl FnMut(K),
    mut delete: impl FnMut(&Key),
    current: impl Fn() -> Vec<Key>,
) {
    match event {
        Event::Apply(obj) => apply(obj),
        Event::Delete(obj) => delete(&key_of(&obj)),
        Event::Init => relist.0 = Some(BTreeSet::new()),
        Event::InitApply(obj) => {
            if let Some(seen) = relist.0.as_mut() {
                seen.insert(key_of(&obj));
            }
            apply(obj);
        }
        Event::InitDone => {
            if let Some(seen) = relist.0.take() {
                for key in current().into_iter().filter(|k| !seen.contains(k)) {
                    delete(&key);
                }
            }
        }
    }
}

fn on_pod(index: &mut NodeIndex, known: &KnownNames, relist_state: &mut Relist, event: Event<Pod>) {
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    // The index's keys are listed only when a re-list ends, not for every pod event.
    relist(
        relist_state,
        event,
        |pod| applied.push(pod),
        |key| deleted.push(key.clone()),
        || index.pods().map(|(k, _)| k.clone()).collect(),
    );
    let Ok(mut names) = known.write() else {
        return;
    };
    for pod in applied {
        for (id, container) in container_ids(&pod) {
            names.insert(
                id,
                PodNames {
                    namespace: pod.namespace(),
                    pod: Some(pod.name_any()),
                    container: Some(container),
                },
            );
        }
        index.apply_pod(pod);
    }
    for key in deleted {
        if let Some(pod) = index.delete_pod(&key) {
            for id in container_ids(&pod).keys() {
                names.remove(id);
            }
        }
    }
}

fn on_namespace(index: &mut NodeIndex, relist_state: &mut Relist, event: Event<Namespace>) {
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    relist(
        relist_state,
        event,
        |ns| applied.push(ns),
        |key| deleted.push(key.1.clone()),
        Vec::new,
    );
    for ns in applied {
        index.apply_namespace(&ns);
    }
    for name in deleted {
        index.delete_namespace(&name);
    }
}

/// Keeps the profile cache; returns the profiles to reconcile (the changed ones and every
/// profile built on them).
fn on_profile(
    installed: &mut NodeProfiles,
    relist_state: &mut Relist,
    event: Event<SeccompProfile>,
) -> Vec<String> {
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    relist(
        relist_state,
        event,
        |p| applied.push(p),
        |key| deleted.push(key.1.clone()),
        || {
            installed
                .profiles
                .keys()
                .map(|name| (String::new(), name.clone()))
                .collect()
        },
    );
    let mut changed = Vec::new();
    for profile in applied {
        let name = profile.name_any();
        installed.profiles.insert(name.clone(), profile);
        changed.push(name);
    }
    for name in deleted {
        installed.profiles.remove(&name);
        changed.push(name);
    }
    let mut out: Vec<String> = Vec::new();
    for name in changed {
        for affected in installed.affected(&name) {
            if !out.contains(&affected) {
                out.push(affected);
            }
        }
    }
    out
}

/// Applies the event to the index; returns the recording to act on, if one was applied.
fn on_recording(
    index: &mut NodeIndex,
    relist_state: &mut Relist,
    event: Event<ProfileRecording>,
) -> Option<ProfileRecording> {
    let mut applied = None;
    let mut deleted = Vec::new();
    relist(
        relist_state,
        event,
        |r| applied = Some(r),
        |key| deleted.push(key.clone()),
        Vec::new,
    );
    for key in deleted {
        index.delete_recording(&key);
    }
    if let Some(recording) = &applied {
        index.apply_recording(recording.clone());
    }
    applied
}

/// Finalizer and merge for `mergeStrategy: Containers`; the snapshot annotation.
async fn handle_recording(
    client: &Client,
    recordings: &mut PodRecordings,
    retry: &mut Vec<SeccompProfile>,
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
        tracing::info!(recording = %key.1, profiles = outcome.profiles.len(), "snapshot");
        for profile in outcome.profiles {
            apply_or_retry(client, retry, profile).await;
        }
        if let Err(err) = publish::clear_snapshot(client, &key).await {
            tracing::warn!(error = %err, "clearing the snapshot annotation");
        }
    }
    Ok(())
}

async fn apply_or_retry(client: &Client, retry: &mut Vec<SeccompProfile>, profile: SeccompProfile) {
    if let Err(err) = publish::apply_profile(client, &profile).await {
        tracing::warn!(error = %err, "publishing a profile; will retry");
        if retry.len() < MAX_RETRIES {
            retry.push(profile);
        } else {
            tracing::error!(profile = %profile.name_any(), "too many profiles waiting to be published; dropped");
        }
    }
}

async fn publish_outcome(
    client: &Client,
    index: &NodeIndex,
    retry: &mut Vec<SeccompProfile>,
    outcome: Outcome,
) {
    for profile in outcome.profiles {
        tracing::info!(profile = %profile.name_any(), "publishing recorded profile");
        apply_or_retry(client, retry, profile).await;
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
