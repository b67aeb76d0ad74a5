//! The daemon's loop: the watches, the enricher threads and the signals feed the [`Daemon`].

use std::time::Duration;

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, watcher},
    },
};
use tokio::sync::mpsc;

use super::{Daemon, DaemonArgs, DaemonError, SelinuxEvent};
use crate::{
    audit::{
        enricher::{self, EnrichOptions, Shared},
        source::Stop,
        tap::{AvcTap, SelinuxDenial},
    },
    k8s::{
        crd::{
            LABEL_ENABLE_RECORDING, ProfileRecording, RawSelinuxProfile, SeccompProfile,
            SelinuxProfile,
        },
        install::{Installer, NodeProfiles},
        recordings::PodRecordings,
        selinux_node::{Built, SelinuxNode},
    },
    record::{HostPaths, RecordError, subtree::Subtrees},
    resolve::runtime::KnownNames,
};

pub async fn run(paths: HostPaths, args: DaemonArgs) -> Result<(), DaemonError> {
    // Its failed requests are counted on /metrics (by verb and code).
    let client = crate::k8s::api_errors::counting_client()
        .await
        .map_err(|source| DaemonError::Client { source })?;
    let known: KnownNames = KnownNames::default();
    // Pods' AVCs from the enricher, for SelinuxProfile recordings.
    let mut avcs: Option<mpsc::Receiver<SelinuxDenial>> = None;
    // /metrics: the enricher's counters (when it runs) and this node's coverage gauges.
    // Not ready (/readyz 503) until the recorder is loaded and every pod to record is known.
    let metrics = std::sync::Arc::new(std::sync::Mutex::new(
        crate::audit::metrics::Metrics::starting(),
    ));
    // The enrichers' stop: requested when this loop ends (they install no signal handler).
    let stop = Stop::default();
    let mut enrichers = Vec::new();
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
        let (paths, node, addr, known, shared, stop) = (
            HostPaths {
                btf: paths.btf.clone(),
                mountinfo: paths.mountinfo.clone(),
            },
            args.node.clone(),
            args.metrics_addr,
            known.clone(),
            metrics.clone(),
            stop.clone(),
        );
        let (tap, rx) = AvcTap::channel(AvcTap::CAPACITY);
        avcs = Some(rx);
        if let Some(file) = args.audit_log.clone() {
            let (paths, node, known, tap, stop) = (
                HostPaths {
                    btf: paths.btf.clone(),
                    mountinfo: paths.mountinfo.clone(),
                },
                args.node.clone(),
                known.clone(),
                tap.another(),
                stop.clone(),
            );
            enrichers.push(
                std::thread::Builder::new()
                    .name("enricher-file".into())
                    .spawn(move || follow_audit_log(&paths, node, file, known, tap, stop))
                    .map_err(|source| DaemonError::Thread { source })?,
            );
        }
        let main = std::thread::Builder::new()
            .name("enricher".into())
            .spawn(move || {
                let options = EnrichOptions::daemon(node, addr);
                let shared = Shared {
                    known: Some(known),
                    avc_tap: Some(tap),
                    metrics: Some(shared),
                };
                if let Err(err) = enricher::run(&paths, options, shared, &stop) {
                    tracing::error!(error = %err, "the enricher stopped");
                }
            })
            .map_err(|source| DaemonError::Thread { source })?;
        enrichers.push(main);
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
    .with_coverage_gauges(args.node.clone(), metrics.clone());
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
    let mut nodes = crate::k8s::node_cleanup::watch(&client);
    let mut node_cleanup = crate::k8s::node_cleanup::NodeCleanup::new(args.node.clone());
    // Free memory back to the kernel: after the start (the BTF parsed to load the recorder is
    // freed by now), then once a minute (k8s::memory).
    let mut trim = crate::k8s::memory::Trim::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| RecordError::Wait { source })?;
    // Ready once the pods, namespaces and recordings are listed (`DaemonState::changed`).
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
    stop.request();
    let stopped = daemon.stop(pinned, &args.pin_dir).await;
    enricher::wait_stopped(enrichers, Duration::from_secs(2));
    stopped
}

/// The enricher on `--audit-log FILE`: from its end if it exists now, else from its start
/// once it exists (checked every second: all it holds then is new).
fn follow_audit_log(
    paths: &HostPaths,
    node: String,
    file: std::path::PathBuf,
    known: KnownNames,
    tap: AvcTap,
    stop: Stop,
) {
    let from_end = file.exists();
    let mut said = false;
    while !file.exists() {
        if stop.requested() {
            return;
        }
        if !std::mem::replace(&mut said, true) {
            tracing::info!(path = %file.display(), "waiting for the audit log to exist");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    tracing::info!(path = %file.display(), from_end, "following the audit log");
    let options = EnrichOptions::daemon_file(node, file, from_end);
    let shared = Shared {
        known: Some(known),
        avc_tap: Some(tap),
        metrics: None,
    };
    if let Err(err) = enricher::run(paths, options, shared, &stop) {
        tracing::error!(error = %err, "the audit log's enricher stopped");
    }
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

/// A watch error: an expired watch (410 Gone, "too old resource version") is routine — the
/// watcher lists again by itself — so it is not worth a warning (seen on the real cluster);
/// anything else is, and the watcher backs off before it retries.
pub(crate) fn watch_error(what: &str, err: &watcher::Error) {
    // At most one warning per watch a minute (k8s::watch_log).
    crate::k8s::watch_log::report(what, err);
}
