//! The webhook's API side (`--bindings`): watch caches of ProfileBindings (what `/mutate`
//! binds with), of the pods it bound (label `syscribe.dev/bound`) and of the profiles' metadata,
//! and one reconciler over them that keeps
//! - the finalizer `syscribe.dev/bound` on every profile a ProfileBinding names, and only
//!   there (a bound profile stays Terminating until its last binding is deleted);
//! - each binding's `status.activeWorkloads`: the pods it bound at their creation
//!   (annotation `syscribe.dev/bindings`) that have not finished, as `namespace/name`.
//!
//! Written from the pods as they are, never at admission: a pod admitted by this webhook may
//! still be refused after it (another webhook, a quota), and a pod with `generateName` has
//! no name yet when it is admitted. Every replica runs it; the writes are idempotent, and
//! finalizer changes carry the resourceVersion they were computed from (a conflict is
//! retried on the next change, never forced).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt as _, reflector,
        reflector::Store,
        watcher::{self, watcher},
    },
};
use serde_json::json;
use tracing::Instrument as _;

use crate::k8s::crd::{
    ANNOTATION_BINDINGS, FINALIZER_BOUND, LABEL_BOUND, ProfileBinding, RecordingKind,
    SeccompProfile, SelinuxProfile,
};

/// Changes seen within this are reconciled together.
const SETTLE: Duration = Duration::from_millis(300);

/// What `/mutate` reads.
#[derive(Clone)]
pub struct BindingCache {
    pub bindings: Store<ProfileBinding>,
    /// All caches listed once: until then `/mutate` and `/readyz` answer 503 (an empty
    /// cache would let pods through unbound).
    pub ready: Arc<AtomicBool>,
}

/// Starts the watches and the reconciler (spawned tasks, each in its span).
pub fn start(client: Client) -> BindingCache {
    let (bindings, bindings_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let (seccomp, seccomp_writer) = reflector::store();
    let (selinux, selinux_writer) = reflector::store();
    let changes: Vec<BoxStream<'static, Result<(), watcher::Error>>> = vec![
        reflector(
            bindings_writer,
            watcher(
                Api::<ProfileBinding>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|e| e.map(drop))
        .boxed(),
        reflector(
            pods_writer,
            watcher(
                Api::<Pod>::all(client.clone()),
                watcher::Config::default().labels(LABEL_BOUND),
            ),
        )
        .default_backoff()
        .map(|e| e.map(drop))
        .boxed(),
        reflector(
            seccomp_writer,
            watcher(
                Api::<PartialObjectMeta<SeccompProfile>>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|e| e.map(drop))
        .boxed(),
        reflector(
            selinux_writer,
            watcher(
                Api::<PartialObjectMeta<SelinuxProfile>>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|e| e.map(drop))
        .boxed(),
    ];
    let cache = BindingCache {
        bindings: bindings.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let ready = cache.ready.clone();
    let stores = Stores {
        bindings,
        pods,
        seccomp,
        selinux,
    };
    tokio::spawn(
        async move {
            let mut changes = futures::stream::select_all(changes);
            let mut synced = false;
            loop {
                // One change, then whatever follows within SETTLE.
                match changes.next().await {
                    None => return,
                    Some(Err(err)) => {
                        // 410 (expired) is routine; anything else is worth a warning.
                        crate::k8s::daemon::watch_error(
                            "watching bindings, pods or profiles",
                            &err,
                        );
                        continue;
                    }
                    Some(Ok(())) => {}
                }
                let settle = tokio::time::sleep(SETTLE);
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        _ = &mut settle => break,
                        more = changes.next() => if more.is_none() { return },
                    }
                }
                if !synced {
                    synced = stores.synced();
                    if !synced {
                        continue;
                    }
                    ready.store(true, Ordering::Release);
                    tracing::info!("ProfileBinding caches synced");
                }
                stores.reconcile(&client).await;
            }
        }
        .instrument(tracing::info_span!("bindings")),
    );
    cache
}

struct Stores {
    bindings: Store<ProfileBinding>,
    pods: Store<Pod>,
    seccomp: Store<PartialObjectMeta<SeccompProfile>>,
    selinux: Store<PartialObjectMeta<SelinuxProfile>>,
}

impl Stores {
    /// Whether every store has been listed once (not waited for: a store not listed yet is
    /// looked at again on the next change).
    fn synced(&self) -> bool {
        use futures::FutureExt as _;
        let listed = |f: Option<Result<(), _>>| f.is_some_and(|r: Result<(), _>| r.is_ok());
        listed(self.bindings.wait_until_ready().now_or_never())
            && listed(self.pods.wait_until_ready().now_or_never())
            && listed(self.seccomp.wait_until_ready().now_or_never())
            && listed(self.selinux.wait_until_ready().now_or_never())
    }

    async fn reconcile(&self, client: &Client) {
        let bindings = self.bindings.state();
        let named = profiles_named(bindings.iter().map(|b| b.as_ref()));
        let seccomp = Api::<SeccompProfile>::all(client.clone());
        for profile in self.seccomp.state() {
            let bound = named.contains(&(RecordingKind::SeccompProfile, profile.name_any()));
            hold(&seccomp, &profile, bound).await;
        }
        let selinux = Api::<SelinuxProfile>::all(client.clone());
        for profile in self.selinux.state() {
            let bound = named.contains(&(RecordingKind::SelinuxProfile, profile.name_any()));
            hold(&selinux, &profile, bound).await;
        }
        let workloads = active_workloads(self.pods.state().iter().map(|p| p.as_ref()));
        for binding in &bindings {
            let namespace = binding.namespace().unwrap_or_default();
            let want = workloads
                .get(&(namespace.clone(), binding.name_any()))
                .cloned()
                .unwrap_or_default();
            let have = binding
                .status
                .as_ref()
                .map(|s| s.active_workloads.clone())
                .unwrap_or_default();
            if want == have || binding.meta().deletion_timestamp.is_some() {
                continue;
            }
            let api: Api<ProfileBinding> = Api::namespaced(client.clone(), &namespace);
            // None bound: the field goes (a merge patch's null), as upstream leaves it absent.
            let body = if want.is_empty() {
                json!({"status": {"activeWorkloads": null}})
            } else {
                json!({"status": {"activeWorkloads": want}})
            };
            let patched = api
                .patch_status(
                    &binding.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&body),
                )
                .await;
            match patched {
                Ok(_) => {
                    tracing::info!(namespace, binding = %binding.name_any(), workloads = want.len(), "activeWorkloads")
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                    tracing::debug!(namespace, binding = %binding.name_any(), code = status.code, "status not written; next change")
                }
                Err(err) => {
                    tracing::warn!(namespace, binding = %binding.name_any(), error = %err, "writing activeWorkloads")
                }
            }
        }
    }
}

/// (kind, name) of every profile a binding not being deleted names.
pub fn profiles_named<'a>(
    bindings: impl IntoIterator<Item = &'a ProfileBinding>,
) -> BTreeSet<(RecordingKind, String)> {
    bindings
        .into_iter()
        .filter(|b| b.meta().deletion_timestamp.is_none())
        .map(|b| (b.spec.profile_ref.kind, b.spec.profile_ref.name.clone()))
        .collect()
}

/// (namespace, binding) → the `namespace/name` of the unfinished pods it bound, sorted.
pub fn active_workloads<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeMap<(String, String), Vec<String>> {
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) || pod.meta().deletion_timestamp.is_some()
        {
            continue;
        }
        let Some(names) = pod.annotations().get(ANNOTATION_BINDINGS) else {
            continue;
        };
        let namespace = pod.namespace().unwrap_or_default();
        let id = format!("{namespace}/{}", pod.name_any());
        for binding in names.split(',').filter(|n| !n.is_empty()) {
            found
                .entry((namespace.clone(), binding.to_owned()))
                .or_default()
                .push(id.clone());
        }
    }
    for ids in found.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    found
}

/// The finalizers `profile` should have: [`FINALIZER_BOUND`] added while bound (never to
/// a profile being deleted: the API server forbids it), removed when not; none when nothing
/// changes.
pub fn finalizers_wanted(
    finalizers: &[String],
    deleting: bool,
    bound: bool,
) -> Option<Vec<String>> {
    let has = finalizers.iter().any(|f| f == FINALIZER_BOUND);
    match (bound, has) {
        (true, false) if !deleting => {
            let mut all = finalizers.to_vec();
            all.push(FINALIZER_BOUND.to_owned());
            Some(all)
        }
        (false, true) => Some(
            finalizers
                .iter()
                .filter(|f| *f != FINALIZER_BOUND)
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

/// Brings one profile's finalizer in line (a merge patch with its resourceVersion).
async fn hold<K>(
    api: &Api<K>, // kinds: SeccompProfile, SelinuxProfile
    profile: &PartialObjectMeta<K>,
    bound: bool,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deleting = profile.metadata.deletion_timestamp.is_some();
    let Some(finalizers) = finalizers_wanted(profile.finalizers(), deleting, bound) else {
        return;
    };
    let name = profile.name_any();
    let body = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": profile.resource_version(),
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => tracing::info!(profile = name, bound, "finalizer {FINALIZER_BOUND}"),
        // Changed meanwhile (the other replica, the nodes' finalizers) or gone: its watch
        // event brings it back here.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            tracing::debug!(
                profile = name,
                code = status.code,
                "finalizer not changed; next change"
            )
        }
        Err(err) => {
            tracing::warn!(profile = name, error = %err, "setting finalizer {FINALIZER_BOUND}")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_finalizer_follows_the_bindings_and_is_never_added_while_deleting() {
        let node = "syscribe.dev/node-a".to_owned();
        let bound = FINALIZER_BOUND.to_owned();
        assert_eq!(
            finalizers_wanted(std::slice::from_ref(&node), false, true),
            Some(vec![node.clone(), bound.clone()])
        );
        assert_eq!(
            finalizers_wanted(&[node.clone(), bound.clone()], false, true),
            None
        );
        assert_eq!(
            finalizers_wanted(std::slice::from_ref(&node), true, true),
            None
        );
        assert_eq!(
            finalizers_wanted(&[bound.clone(), node.clone()], true, false),
            Some(vec![node.clone()])
        );
        assert_eq!(finalizers_wanted(&[], false, false), None);
    }

    #[test]
    fn active_workloads_are_the_unfinished_pods_each_binding_bound() {
        let pod = |name: &str, ns: &str, bindings: Option<&str>, phase: &str| -> Pod {
            let mut meta = json!({"name": name, "namespace": ns});
            if let Some(b) = bindings {
                meta["annotations"] = json!({ANNOTATION_BINDINGS: b});
            }
            serde_json::from_value(json!({"metadata": meta, "status": {"phase": phase}})).unwrap()
        };
        let pods = [
            pod("b", "shop", Some("web,all"), "Running"),
            pod("a", "shop", Some("web"), "Pending"),
            pod("done", "shop", Some("web"), "Succeeded"),
            pod("c", "bank", Some("web"), "Running"),
            pod("free", "shop", None, "Running"),
        ];
        let found = active_workloads(&pods);
        let key = |ns: &str, b: &str| (ns.to_owned(), b.to_owned());
        assert_eq!(found[&key("shop", "web")], ["shop/a", "shop/b"]);
        assert_eq!(found[&key("shop", "all")], ["shop/b"]);
        assert_eq!(found[&key("bank", "web")], ["bank/c"]);
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn profiles_named_leave_out_bindings_being_deleted() {
        let binding = |name: &str, profile: &str, deleting: bool| -> ProfileBinding {
            let mut meta = json!({"name": name, "namespace": "shop"});
            if deleting {
                meta["deletionTimestamp"] = json!("2026-11-30T10:00:00Z");
            }
            serde_json::from_value(json!({
                "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileBinding",
                "metadata": meta,
                "spec": {"profileRef": {"kind": "SeccompProfile", "name": profile}, "image": "*"}}))
            .unwrap()
        };
        let named = profiles_named(&[binding("a", "web", false), binding("b", "old", true)]);
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            [(RecordingKind::SeccompProfile, "web".to_owned())]
        );
    }
}
