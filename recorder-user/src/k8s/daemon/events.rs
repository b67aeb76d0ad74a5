//! Watch events into the daemon's caches and the pod index. A re-list (Init … InitDone) ends
//! with what it did not see again deleted: what a broken watch missed is gone after it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{ResourceExt as _, runtime::watcher::Event};

use crate::{
    k8s::{
        crd::{ProfileRecording, SeccompProfile},
        index::{Key, NodeIndex, container_ids},
        install::NodeProfiles,
    },
    resolve::runtime::{KnownNames, PodNames},
};

/// One watch stream's re-list: objects not seen again between Init and InitDone are gone.
#[derive(Default)]
pub(super) struct Relist(Option<BTreeSet<Key>>);

pub(super) fn key_of<K: kube::Resource>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
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
pub(super) fn cache_event<K: kube::Resource>(
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

pub(super) fn on_pod(
    index: &mut NodeIndex,
    known: &KnownNames,
    relist_state: &mut Relist,
    event: Event<Pod>,
) {
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

pub(super) fn on_namespace(
    index: &mut NodeIndex,
    relist_state: &mut Relist,
    event: Event<Namespace>,
) {
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
pub(super) fn on_profile(
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
pub(super) fn on_recording(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::LABEL_ENABLE_RECORDING;

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
}
