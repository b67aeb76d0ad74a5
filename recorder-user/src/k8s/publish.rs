//! The API side of recording: applying recorded profiles, keeping `activeWorkloads` current,
//! Events for recordings that cannot produce profiles, the snapshot annotation, and merging
//! partial profiles when a `mergeStrategy: Containers` recording is deleted. Thin: decisions
//! are in `profile::` and `k8s::recordings`; this only talks to the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use thiserror::Error;

use super::{
    crd::{
        ANNOTATION_COVERAGE, ANNOTATION_SNAPSHOT, LABEL_CONTAINER_ID, LABEL_PARTIAL,
        LABEL_RECORDING_ID, LABEL_RECORDING_NAMESPACE, MergeStrategy, ProfileRecording,
        ProfileStatus, ProfileStatusKind, RecordingKind, SeccompProfile, SeccompProfileSpec,
        SelinuxProfile, SelinuxProfileSpec,
    },
    index::Key,
    node_status::NodeProfile,
};
use crate::profile::{
    capabilities, crd::ANNOTATION_CAPABILITIES, merge::merge_partials,
    naming::recorded_profile_name, selinux_record::SelinuxRecording,
};

/// The field manager of everything syscribe writes.
pub const MANAGER: &str = "syscribe";
/// Keeps a `mergeStrategy: Containers` recording until its partial profiles are merged.
pub const FINALIZER_UNMERGED: &str = "spo.x-k8s.io/has-unmerged-profiles";

#[derive(Debug, Error)]
pub enum PublishError {
    #[error("{op} {kind} {name}: {source}")]
    Api {
        op: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub(crate) fn api_err(
    op: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> PublishError {
    let name = name.to_owned();
    move |source| PublishError::Api {
        op,
        kind,
        name,
        source,
    }
}

/// Creates or updates a recorded profile of either kind (server-side apply); partial ones get
/// status Partial.
pub async fn apply_profile<K>(client: &Client, profile: &K) -> Result<(), PublishError>
where
    K: NodeProfile + kube::Resource<Scope = kube::core::ClusterResourceScope>,
{
    let api: Api<K> = Api::all(client.clone()); // kinds: SeccompProfile, SelinuxProfile
    let name = profile.name_any();
    let mut body = profile.clone();
    body.meta_mut().managed_fields = None;
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(api_err("apply", K::KIND, &name))?;
    if profile.labels().get(LABEL_PARTIAL).map(String::as_str) == Some("true") {
        let status = serde_json::json!({"status": ProfileStatus {
            status: Some(ProfileStatusKind::Partial),
            ..ProfileStatus::default()
        }});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(api_err("set the status of", K::KIND, &name))?;
    }
    Ok(())
}

/// Sets a recording's `status.activeWorkloads`.
pub async fn set_active_workloads(
    client: &Client,
    recording: &Key,
    workloads: Vec<String>,
) -> Result<(), PublishError> {
    let api: Api<ProfileRecording> = Api::namespaced(client.clone(), &recording.0);
    let status = serde_json::json!({"status": {"activeWorkloads": workloads}});
    api.patch_status(
        &recording.1,
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .map_err(api_err(
        "set the status of",
        "ProfileRecording",
        &recording.1,
    ))?;
    Ok(())
}

/// A Warning Event on the recording: why it did not produce a profile.
pub async fn warn(
    client: &Client,
    recording: &Key,
    reason: &str,
    note: &str,
) -> Result<(), PublishError> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("NODE_NAME").ok(),
        },
    );
    let reference = ObjectReference {
        api_version: Some(ProfileRecording::api_version(&()).into_owned()),
        kind: Some(ProfileRecording::kind(&()).into_owned()),
        name: Some(recording.1.clone()),
        namespace: Some(recording.0.clone()),
        ..ObjectReference::default()
    };
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: reason.into(),
                note: Some(note.chars().take(1024).collect()),
                action: "Record".into(),
                secondary: None,
            },
            &reference,
        )
        .await
        .map_err(api_err(
            "publish an event on",
            "ProfileRecording",
            &recording.1,
        ))
}

/// Removes the snapshot annotation once the snapshot was published.
pub async fn clear_snapshot(client: &Client, recording: &Key) -> Result<(), PublishError> {
    let api: Api<ProfileRecording> = Api::namespaced(client.clone(), &recording.0);
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_SNAPSHOT: null}}});
    api.patch(&recording.1, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err(
            "clear the snapshot annotation of",
            "ProfileRecording",
            &recording.1,
        ))?;
    Ok(())
}

/// Makes sure a `mergeStrategy: Containers` recording carries the finalizer that keeps it
/// until its partial profiles are merged.
pub async fn ensure_merge_finalizer(
    client: &Client,
    recording: &ProfileRecording,
) -> Result<(), PublishError> {
    if recording.spec.merge_strategy != MergeStrategy::Containers
        || recording
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER_UNMERGED)
        || recording.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let mut finalizers = recording.finalizers().to_vec();
    finalizers.push(FINALIZER_UNMERGED.to_owned());
    set_finalizers(client, recording, finalizers).await
}

async fn set_finalizers(
    client: &Client,
    recording: &ProfileRecording,
    finalizers: Vec<String>,
) -> Result<(), PublishError> {
    let api: Api<ProfileRecording> =
        Api::namespaced(client.clone(), &recording.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers}});
    api.patch(
        &recording.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(api_err(
        "set the finalizers of",
        "ProfileRecording",
        &recording.name_any(),
    ))?;
    Ok(())
}

/// A deleted `mergeStrategy: Containers` recording: its partial profiles (of the recording's
/// kind), grouped by container, become one `<recording>-<container>` profile each (union; a
/// SeccompProfile gets the coverage annotation); the partials are deleted and the finalizer
/// removed.
pub async fn merge_on_deletion(
    client: &Client,
    recording: &ProfileRecording,
) -> Result<Vec<String>, PublishError> {
    if recording.metadata.deletion_timestamp.is_none()
        || !recording
            .finalizers()
            .iter()
            .any(|f| f == FINALIZER_UNMERGED)
    {
        return Ok(Vec::new());
    }
    let merged_names = match recording.spec.kind {
        RecordingKind::SelinuxProfile => {
            merge_kind::<SelinuxProfile>(client, recording, merged_selinux).await?
        }
        _ => merge_kind::<SeccompProfile>(client, recording, merged_seccomp).await?,
    };
    let finalizers = recording
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER_UNMERGED)
        .cloned()
        .collect();
    set_finalizers(client, recording, finalizers).await?;
    Ok(merged_names)
}

/// Lists the recording's partial profiles of kind `K`, applies what `merge` makes of them,
/// deletes them. Returns the merged profiles' names.
async fn merge_kind<K>(
    client: &Client,
    recording: &ProfileRecording,
    merge: fn(&ProfileRecording, &[K]) -> Vec<K>,
) -> Result<Vec<String>, PublishError>
where
    K: NodeProfile + kube::Resource<Scope = kube::core::ClusterResourceScope>,
{
    let name = recording.name_any();
    let namespace = recording.namespace().unwrap_or_default();
    let api: Api<K> = Api::all(client.clone()); // kinds: SeccompProfile, SelinuxProfile
    let selector = format!(
        "{LABEL_RECORDING_ID}={name},{LABEL_RECORDING_NAMESPACE}={namespace},{LABEL_PARTIAL}=true"
    );
    let partials = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(api_err(
            "list the partial profiles of",
            "ProfileRecording",
            &name,
        ))?;
    let mut merged_names = Vec::new();
    for profile in merge(recording, &partials.items) {
        apply_profile(client, &profile).await?;
        merged_names.push(profile.name_any());
    }
    if !partials.items.is_empty() {
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .map_err(api_err(
            "delete the partial profiles of",
            "ProfileRecording",
            &name,
        ))?;
    }
    Ok(merged_names)
}

/// Partial profiles by the container they were recorded from (its label).
fn by_container<K: kube::Resource>(partials: &[K]) -> BTreeMap<String, Vec<&K>> {
    let mut by_container: BTreeMap<String, Vec<&K>> = BTreeMap::new();
    for partial in partials {
        if let Some(container) = partial.labels().get(LABEL_CONTAINER_ID) {
            by_container
                .entry(container.clone())
                .or_default()
                .push(partial);
        }
    }
    by_container
}

/// The merged profile of `container`: `<recording>-<container>`, labelled with the recording;
/// None when that is not a valid name.
fn merged_metadata(recording: &ProfileRecording, container: &str) -> Option<ObjectMeta> {
    let name = recording.name_any();
    let merged_name = recorded_profile_name(&name, container, None).ok()?;
    Some(ObjectMeta {
        name: Some(merged_name),
        labels: Some(BTreeMap::from([
            (LABEL_RECORDING_ID.to_owned(), name),
            (
                LABEL_RECORDING_NAMESPACE.to_owned(),
                recording.namespace().unwrap_or_default(),
            ),
        ])),
        ..ObjectMeta::default()
    })
}

/// SeccompProfile partials → one profile per container: the union, with its coverage.
pub fn merged_seccomp(
    recording: &ProfileRecording,
    partials: &[SeccompProfile],
) -> Vec<SeccompProfile> {
    let mut out = Vec::new();
    for (container, partials) in by_container(partials) {
        let seccomps: Vec<_> = partials.iter().map(|p| p.spec.to_seccomp()).collect();
        let Some((merged, coverage)) = merge_partials(&seccomps) else {
            continue;
        };
        let Some(mut metadata) = merged_metadata(recording, &container) else {
            continue;
        };
        let mut annotations = BTreeMap::from([(
            ANNOTATION_COVERAGE.to_owned(),
            serde_json::to_string(&coverage).expect("coverage serializes"),
        )]);
        // Every replica's capabilities (unknown when one replica's were not recorded).
        let lists: Vec<Option<Vec<String>>> = partials
            .iter()
            .map(|p| {
                p.annotations()
                    .get(ANNOTATION_CAPABILITIES)
                    .map(|value| capabilities::from_annotation(value))
            })
            .collect();
        if let Some(names) = capabilities::union(lists.iter().map(Option::as_deref)) {
            annotations.insert(
                ANNOTATION_CAPABILITIES.to_owned(),
                capabilities::annotation(&names),
            );
        }
        metadata.annotations = Some(annotations);
        let mut spec = SeccompProfileSpec::from_seccomp(&merged);
        if recording.spec.disable_profile_after_recording {
            spec.state = Some(super::crd::ProfileState::Disabled);
        }
        out.push(SeccompProfile {
            metadata,
            spec,
            status: None,
        });
    }
    out
}

/// SelinuxProfile partials → one profile per container: the union of their allow rules (the
/// recorded profiles' shape: the container template inherited).
pub fn merged_selinux(
    recording: &ProfileRecording,
    partials: &[SelinuxProfile],
) -> Vec<SelinuxProfile> {
    let mut out = Vec::new();
    for (container, partials) in by_container(partials) {
        let Some(metadata) = merged_metadata(recording, &container) else {
            continue;
        };
        let mut merged = SelinuxRecording::default();
        for partial in &partials {
            merged.merge(&SelinuxRecording {
                allow: partial.spec.allow.clone(),
                ..SelinuxRecording::default()
            });
        }
        out.push(SelinuxProfile {
            metadata,
            spec: SelinuxProfileSpec {
                inherit: super::crd::default_inherit(),
                allow: merged.allow,
                mode: None,
                permissive: false,
                state: recording
                    .spec
                    .disable_profile_after_recording
                    .then_some(super::crd::ProfileState::Disabled),
            },
            status: None,
        });
    }
    out
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
