//! `syscribe daemon`: one per node. Watches the node's pods, the namespaces enabled for
//! recording and the ProfileRecordings; records the selected pods' containers; publishes
//! their profiles; installs SeccompProfiles (files) and SelinuxProfiles and
//! RawSelinuxProfiles (policy modules) on the node; streams enriched denials as JSON lines on
//! stdout (with the pod index's names); serves /metrics, /healthz and /readyz.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    time::Duration,
};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event, watcher},
    },
};
use thiserror::Error;
use tokio::sync::mpsc;

use super::{
    crd::{
        ANNOTATION_SNAPSHOT, LABEL_ENABLE_RECORDING, ProfileRecording, RawSelinuxProfile,
        SeccompProfile, SelinuxProfile,
    },
    index::{Key, NodeIndex, container_ids},
    install::{Installer, NodeProfiles},
    publish::{self, PublishError},
    recordings::{Outcome, PodRecordings},
    selinux_node::{Built, SelinuxKind, SelinuxNode},
};
use crate::{
    audit::tap::{AvcTap, SelinuxDenial},
    record::{HostPaths, RecordError, subtree::Subtrees},
    resolve::runtime::{KnownNames, PodNames},
};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// This node's name (the pods recorded are the ones scheduled here).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9890")]
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
    /// Also follow this file of audit lines (e.g. auditd's /var/log/audit/audit.log) beside
    /// the kernel source: from its end, or from its start if it appears later (waited for).
    /// Its denials are enriched, printed and recorded as the kernel source's are.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<std::path::PathBuf>,
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

/// The most read back of a file in the state directory (written by a previous daemon).
pub const MAX_STATE_FILE: u64 = 64 << 20;
/// Profiles that could not be published yet are retried; at most this many wait.
const MAX_RETRIES: usize = 1000;

/// One watch stream's re-list: objects not seen again between Init and InitDone are gone.
#[derive(Default)]
struct Relist(Option<BTreeSet<Key>>);

fn key_of<K: kube::Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

pub async fn run(paths: HostPaths, args: DaemonArgs) -> Result<(), DaemonError> {
    // Its failed requests are counted on /metrics (by verb and code).
    let client = super::api_errors::counting_client()
        .await
        .map_err(|source| DaemonError::Client { source })?;
    let known: KnownNames = KnownNames::default();
    // Pods' AVCs from the enricher, for SelinuxProfile recordings.
    let mut avcs: Option<mpsc::Receiver<SelinuxDenial>> = None;
    // /metrics: the enricher's counters (when it runs) and this node's coverage gauges.
    let metrics = std::sync::Arc::new(std::sync::Mutex::new(
        crate::audit::metrics::Metrics::default(),
    ));
    if args.no_enrich {
        tracing::info!("no enricher: SelinuxProfile recordings get no denials");
        // /healthz, /readyz, the gauges (and the plain counters) without the enricher.
        crate::audit::metrics::serve(args.metrics_addr, metrics.clone()).map_err(|source| {
            DaemonError::Serve {
                addr: args.metrics_addr,
                source,
            }
        })?;
    } else {
        let (paths, node, addr, known, shared) = (
            HostPaths {
                btf: paths.btf.clone(),
                mountinfo: paths.mountinfo.clone(),
            },
            args.node.clone(),
            args.metrics_addr,
            known.clone(),
            metrics.clone(),
        );
        let (tap, rx) = AvcTap::channel(AvcTap::CAPACITY);
        avcs = Some(rx);
        if let Some(file) = args.audit_log.clone() {
            let (paths, node, known, tap) = (
                HostPaths {
                    btf: paths.btf.clone(),
                    mountinfo: paths.mountinfo.clone(),
                },
                args.node.clone(),
                known.clone(),
                tap.another(),
            );
            std::thread::Builder::new()
                .name("enricher-file".into())
                .spawn(move || follow_audit_log(&paths, node, file, known, tap))
                .map_err(|source| DaemonError::Thread { source })?;
        }
        std::thread::Builder::new()
            .name("enricher".into())
            .spawn(move || {
                let args = crate::cli::enrich::EnrichArgs::for_daemon(node, addr);
                if let Err(err) =
                    crate::cli::enrich::run_with(&paths, args, Some(known), Some(tap), Some(shared))
                {
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
    )
    .with_state_dir(args.state_dir.clone())
    .with_coverage_gauges(args.node.clone(), metrics);
    if !args.no_install {
        let selinux_on = crate::selinux::enabled();
        if !selinux_on {
            tracing::info!(
                "SELinux is off on this node: SELinux profiles are reported as not installable here"
            );
        }
        let node = SelinuxNode::new(
            args.node.clone(),
            selinux_on.then(crate::selinux::PolicyStore::host),
            crate::profile::validate::Validator::for_this_host(),
        );
        // Before any pod is recorded: the permissive type recorded pods run as.
        node.prepare_recording();
        daemon.selinux = Some(node);
    }
    let mut pods: BoxStream<_> = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", args.node)),
    )
    .default_backoff()
    .boxed();
    let mut namespaces: BoxStream<_> = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(LABEL_ENABLE_RECORDING),
    )
    .default_backoff()
    .boxed();
    let mut recording_events: BoxStream<_> = watcher(
        Api::<ProfileRecording>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut profile_events: BoxStream<_> = if args.no_install {
        futures::stream::pending().boxed()
    } else {
        watcher(
            Api::<SeccompProfile>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed()
    };
    let mut selinux_events: BoxStream<_> = if args.no_install {
        futures::stream::pending().boxed()
    } else {
        futures::stream::select(
            watcher(
                Api::<SelinuxProfile>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map(|e| e.map(SelinuxEvent::Profile)),
            watcher(
                Api::<RawSelinuxProfile>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map(|e| e.map(SelinuxEvent::Raw)),
        )
        .boxed()
    };
    // Nodes that go: their finalizers and node statuses are removed (k8s::node_cleanup).
    let mut nodes = super::node_cleanup::watch(&client);
    let mut node_cleanup = super::node_cleanup::NodeCleanup::new(args.node.clone());
    // Free memory back to the kernel: after the start (the BTF parsed to load the recorder is
    // freed by now), then once a minute (k8s::memory).
    let mut trim = super::memory::Trim::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RecordError::Wait { source })?;
    tracing::info!(node = %args.node, "daemon started");
    loop {
        tokio::select! {
            event = pods.next() => match event {
                Some(Ok(event)) => daemon.pod_event(event).await,
                Some(Err(err)) => watch_error("pod watch", &err),
                None => break,
            },
            event = namespaces.next() => match event {
                Some(Ok(event)) => daemon.namespace_event(event).await,
                Some(Err(err)) => watch_error("namespace watch", &err),
                None => break,
            },
            event = recording_events.next() => match event {
                Some(Ok(event)) => daemon.recording_event(event).await?,
                Some(Err(err)) => watch_error("recording watch", &err),
                None => break,
            },
            event = profile_events.next() => match event {
                Some(Ok(event)) => daemon.profile_event(event).await,
                Some(Err(err)) => watch_error("SeccompProfile watch", &err),
                None => break,
            },
            event = selinux_events.next() => match event {
                Some(Ok(event)) => daemon.selinux_event(event).await,
                Some(Err(err)) => watch_error("SELinux profile watch", &err),
                None => break,
            },
            event = nodes.next() => match event {
                Some(Ok(event)) => {
                    if node_cleanup.event(event) {
                        // This node's object came back: state its profiles again.
                        let all = daemon.installed.restate();
                        daemon.due(all);
                    }
                }
                Some(Err(err)) => watch_error("node watch", &err),
                None => break,
            },
            Some(built) = next_built(&mut daemon.selinux) => daemon.selinux_built(built).await,
            Some(denial) = next_avc(&mut avcs) => daemon.avc(&denial),
            created = daemon.recordings.subtrees_mut().created() => {
                if let Err(err) = created {
                    tracing::warn!(error = %err, "watching pods' cgroups");
                }
            }
            _ = tick.tick() => {
                daemon.tick().await;
                node_cleanup.run_due(&client, &mut daemon.installed).await;
                trim.tick();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    daemon.stop(pinned, &args.pin_dir).await
}

/// The enricher on `--audit-log FILE`: from its end if it exists now, else from its start
/// once it exists (checked every second: all it holds then is new).
fn follow_audit_log(
    paths: &HostPaths,
    node: String,
    file: std::path::PathBuf,
    known: KnownNames,
    tap: AvcTap,
) {
    let from_end = file.exists();
    let mut said = false;
    while !file.exists() {
        if !std::mem::replace(&mut said, true) {
            tracing::info!(path = %file.display(), "waiting for the audit log to exist");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    tracing::info!(path = %file.display(), from_end, "following the audit log");
    let args = crate::cli::enrich::EnrichArgs::for_daemon_file(node, file, from_end);
    if let Err(err) = crate::cli::enrich::run_with(paths, args, Some(known), Some(tap), None) {
        tracing::error!(error = %err, "the audit log's enricher stopped");
    }
}

/// A watch event of either SELinux kind.
pub enum SelinuxEvent {
    Profile(Event<SelinuxProfile>),
    Raw(Event<RawSelinuxProfile>),
}

/// The next pod's AVC from the enricher; never, without one.
async fn next_avc(avcs: &mut Option<mpsc::Receiver<SelinuxDenial>>) -> Option<SelinuxDenial> {
    match avcs {
        Some(rx) => rx.recv().await,
        None => futures::future::pending().await,
    }
}

/// The next finished module build; never, without SELinux profiles to install.
async fn next_built(selinux: &mut Option<SelinuxNode>) -> Option<Built> {
    match selinux {
        Some(node) => node.next_built().await,
        None => futures::future::pending().await,
    }
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

    fn due(&mut self, names: impl IntoIterator<Item = String>) {
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
            let gauges = super::coverage::node_gauges(node, self.index.pods().map(|(_, p)| p));
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

/// Applies a watch event of cluster-scoped objects to a cache by name; returns the names
/// that changed (applied or gone).
fn cache_event<K: kube::Resource>(
    cache: &mut BTreeMap<String, K>,
    relist_state: &mut Relist,
    event: Event<K>,
) -> Vec<String> {
    let current: Vec<Key> = cache.keys().map(|n| (String::new(), n.clone())).collect();
    let mut applied = Vec::new();
    let mut deleted = Vec::new();
    relist(
        relist_state,
        event,
        |obj| applied.push(obj),
        |key| deleted.push(key.1.clone()),
        || current.clone(),
    );
    let mut changed = Vec::new();
    for obj in applied {
        changed.push(obj.name_any());
        cache.insert(obj.name_any(), obj);
    }
    for name in deleted {
        cache.remove(&name);
        changed.push(name);
    }
    changed
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
        // A namespace no longer labelled (or gone) during a watch gap is not seen again.
        || {
            index
                .enabled_namespaces()
                .map(|name| (String::new(), name.clone()))
                .collect()
        },
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
    let changed = cache_event(&mut installed.profiles, relist_state, event);
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
        || index.recording_keys().cloned().collect(),
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

/// Backoff before attempt `attempts + 1`: 50 ms doubling, at most a minute.
pub(crate) fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempts.min(11))).min(Duration::from_secs(60))
}

/// A watch error: an expired watch (410 Gone, "too old resource version") is routine — the
/// watcher lists again by itself — so it is not worth a warning (seen on the real cluster);
/// anything else is, and the watcher backs off before it retries.
pub(crate) fn watch_error(what: &str, err: &watcher::Error) {
    // At most one warning per watch a minute (k8s::watch_log).
    super::watch_log::report(what, err);
}

/// Whether an API error can go away by itself (a 4xx other than a conflict or throttling
/// will not: the object is refused, e.g. by the validating webhook).
fn retryable(err: &PublishError) -> bool {
    let PublishError::Api { source, .. } = err;
    match source {
        kube::Error::Api(status) => {
            !(400..500).contains(&status.code) || matches!(status.code, 408 | 409 | 429)
        }
        _ => true,
    }
}

/// A recorded profile to publish, of either kind.
#[derive(Debug, Clone)]
pub enum Recorded {
    Seccomp(SeccompProfile),
    Selinux(SelinuxProfile),
}

impl From<SeccompProfile> for Recorded {
    fn from(profile: SeccompProfile) -> Self {
        Self::Seccomp(profile)
    }
}

impl From<SelinuxProfile> for Recorded {
    fn from(profile: SelinuxProfile) -> Self {
        Self::Selinux(profile)
    }
}

impl Recorded {
    fn name_any(&self) -> String {
        match self {
            Self::Seccomp(p) => p.name_any(),
            Self::Selinux(p) => p.name_any(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Seccomp(_) => "SeccompProfile",
            Self::Selinux(_) => "SelinuxProfile",
        }
    }

    /// The prefix of its file in the state directory (a SelinuxProfile may share a
    /// SeccompProfile's name).
    fn prefix(&self) -> &'static str {
        match self {
            Self::Seccomp(_) => "pending-",
            Self::Selinux(_) => "pending-selinux.",
        }
    }

    fn to_json(&self) -> Vec<u8> {
        match self {
            Self::Seccomp(p) => serde_json::to_vec(p),
            Self::Selinux(p) => serde_json::to_vec(p),
        }
        .expect("profiles serialize")
    }

    /// A file of the state directory: `pending-selinux.<name>.json` (a name has no '.' at its
    /// start, so no SeccompProfile's file looks like it) or `pending-<name>.json`.
    fn from_file(file_name: &str, text: &[u8]) -> Option<Self> {
        let stem = file_name.strip_suffix(".json")?;
        if stem.starts_with("pending-selinux.") {
            serde_json::from_slice(text).ok().map(Self::Selinux)
        } else if stem.starts_with("pending-") {
            serde_json::from_slice(text).ok().map(Self::Seccomp)
        } else {
            None
        }
    }

    async fn apply(&self, client: &Client) -> Result<(), PublishError> {
        match self {
            Self::Seccomp(p) => publish::apply_profile(client, p).await,
            Self::Selinux(p) => publish::apply_profile(client, p).await,
        }
    }
}

struct Waiting {
    profile: Recorded,
    attempts: u32,
    next: tokio::time::Instant,
}

/// Profiles not published yet: retried with backoff (at most MAX_RETRIES wait), each kept in
/// the state directory until published, so a killed daemon's successor publishes them.
#[derive(Default)]
struct Pending {
    dir: Option<std::path::PathBuf>,
    waiting: Vec<Waiting>,
}

impl Pending {
    fn load(dir: std::path::PathBuf) -> Self {
        let now = tokio::time::Instant::now();
        let mut waiting = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("pending-") || !name.ends_with(".json") {
                continue;
            }
            match crate::files::read_regular(&entry.path(), MAX_STATE_FILE)
                .map(|t| Recorded::from_file(&name, &t))
            {
                Ok(Some(profile)) if waiting.len() < MAX_RETRIES => {
                    tracing::info!(profile = %profile.name_any(), kind = profile.kind(), "a profile a previous daemon could not publish is published now");
                    waiting.push(Waiting {
                        profile,
                        attempts: 0,
                        next: now,
                    });
                }
                _ => {
                    tracing::warn!(file = %entry.path().display(), "unreadable pending profile; removed");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Self {
            dir: Some(dir),
            waiting,
        }
    }

    fn file(&self, profile: &Recorded) -> Option<std::path::PathBuf> {
        let name = profile.name_any();
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !name.starts_with('.')
            && !name.starts_with("selinux.");
        plain.then(|| {
            self.dir
                .as_ref()
                .map(|d| d.join(format!("{}{name}.json", profile.prefix())))
        })?
    }

    fn keep(&self, profile: &Recorded) {
        let Some(path) = self.file(profile) else {
            return;
        };
        if let Err(err) = crate::files::write_atomically(&path, &profile.to_json(), false) {
            tracing::warn!(path = %path.display(), error = %err, "keeping a profile to publish later");
        }
    }

    fn forget(&self, profile: &Recorded) {
        if let Some(path) = self.file(profile) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Publishes now; on failure the profile waits (kept on disk) unless it can never succeed.
    async fn publish(&mut self, client: &Client, profile: impl Into<Recorded>) {
        self.attempt(client, profile.into(), 0).await;
    }

    async fn attempt(&mut self, client: &Client, profile: Recorded, attempts: u32) {
        match profile.apply(client).await {
            Ok(()) => self.forget(&profile),
            Err(err) if !retryable(&err) => {
                tracing::error!(error = %err, profile = %profile.name_any(), kind = profile.kind(), "the API server refuses this profile; not retried");
                self.forget(&profile);
            }
            Err(err) if self.waiting.len() < MAX_RETRIES => {
                tracing::warn!(error = %err, attempts = attempts + 1, "publishing a profile; will retry");
                if attempts == 0 {
                    self.keep(&profile);
                }
                self.waiting.push(Waiting {
                    profile,
                    attempts: attempts + 1,
                    next: tokio::time::Instant::now() + backoff(attempts + 1),
                });
            }
            Err(err) => {
                tracing::error!(error = %err, profile = %profile.name_any(), kind = profile.kind(), "too many profiles waiting to be published; kept on disk for the next daemon");
                self.keep(&profile);
            }
        }
    }

    async fn retry_due(&mut self, client: &Client) {
        let now = tokio::time::Instant::now();
        let (due, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.next <= now);
        self.waiting = later;
        for w in due {
            self.attempt(client, w.profile, w.attempts).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {LABEL_ENABLE_RECORDING: "true"}}
        }))
        .unwrap()
    }

    fn recording(name: &str) -> ProfileRecording {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"kind": "SeccompProfile", "recorder": "Bpf", "podSelector": {}}
        }))
        .unwrap()
    }

    /// What a broken watch missed (a label removed, a recording deleted) is gone after the
    /// re-list: what the re-list did not bring back is deleted.
    #[test]
    fn a_relist_drops_what_it_did_not_see_again() {
        let mut index = NodeIndex::default();
        let (mut ns_relist, mut rec_relist) = (Relist::default(), Relist::default());
        for name in ["shop", "old"] {
            on_namespace(&mut index, &mut ns_relist, Event::Apply(namespace(name)));
        }
        for name in ["keep", "gone"] {
            on_recording(&mut index, &mut rec_relist, Event::Apply(recording(name)));
        }
        on_namespace(&mut index, &mut ns_relist, Event::Init);
        on_namespace(
            &mut index,
            &mut ns_relist,
            Event::InitApply(namespace("shop")),
        );
        on_namespace(&mut index, &mut ns_relist, Event::InitDone);
        assert_eq!(index.enabled_namespaces().collect::<Vec<_>>(), ["shop"]);
        on_recording(&mut index, &mut rec_relist, Event::Init);
        on_recording(
            &mut index,
            &mut rec_relist,
            Event::InitApply(recording("keep")),
        );
        on_recording(&mut index, &mut rec_relist, Event::InitDone);
        assert_eq!(
            index.recording_keys().collect::<Vec<_>>(),
            [&("shop".to_owned(), "keep".to_owned())]
        );
    }

    fn profile(name: &str) -> SeccompProfile {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": {"name": name}, "spec": {"defaultAction": "SCMP_ACT_ERRNO"}
        }))
        .unwrap()
    }

    /// Answers the next request with an API error `code`.
    async fn fail(handle: &mut crate::k8s::testing::Handle, code: u16) {
        let (_, send) = handle.next_request().await.expect("a request");
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "no", "reason": "Test", "code": code});
        send.send_response(
            http::Response::builder()
                .status(code)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&status).unwrap(),
                ))
                .unwrap(),
        );
    }

    /// A profile the API server could not take waits on disk for the next daemon; one it
    /// refuses (a 4xx such as the webhook's 422) is not retried.
    #[tokio::test]
    async fn unpublished_profiles_wait_on_disk_and_refused_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("syscribe-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client, mut handle) = crate::k8s::testing::mock();
        let mut pending = Pending::load(dir.clone());
        let server = tokio::spawn(async move {
            fail(&mut handle, 503).await;
            fail(&mut handle, 422).await;
        });
        pending.publish(&client, profile("down")).await;
        pending.publish(&client, profile("refused")).await;
        server.await.unwrap();
        assert_eq!(pending.waiting.len(), 1);
        assert!(dir.join("pending-down.json").exists());
        assert!(!dir.join("pending-refused.json").exists());
        assert!(
            pending.waiting[0].next > tokio::time::Instant::now(),
            "backs off"
        );
        // The next daemon takes it over.
        let next = Pending::load(dir.clone());
        assert_eq!(next.waiting.len(), 1);
        assert_eq!(next.waiting[0].profile.name_any(), "down");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    /// A SelinuxProfile waits on disk beside a SeccompProfile of the same name, and each comes
    /// back as its kind.
    #[tokio::test]
    async fn unpublished_selinux_profiles_wait_on_disk_as_their_kind() {
        let dir = std::env::temp_dir().join(format!("syscribe-pending-se-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (client, mut handle) = crate::k8s::testing::mock();
        let mut pending = Pending::load(dir.clone());
        let server = tokio::spawn(async move {
            fail(&mut handle, 503).await;
            fail(&mut handle, 503).await;
        });
        let selinux: SelinuxProfile = serde_json::from_value(serde_json::json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfile",
            "metadata": {"name": "rec-app"}, "spec": {"allow": {"etc_t": {"file": ["read"]}}}
        }))
        .unwrap();
        pending.publish(&client, selinux).await;
        pending.publish(&client, profile("rec-app")).await;
        server.await.unwrap();
        assert!(dir.join("pending-selinux.rec-app.json").exists());
        assert!(dir.join("pending-rec-app.json").exists());
        let next = Pending::load(dir.clone());
        let mut kinds: Vec<(&str, String)> = next
            .waiting
            .iter()
            .map(|w| (w.profile.kind(), w.profile.name_any()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                ("SeccompProfile", "rec-app".to_owned()),
                ("SelinuxProfile", "rec-app".to_owned())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
