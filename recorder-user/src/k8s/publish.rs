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
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;

    use crate::k8s::testing::{expect, mock, scenario};

    const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";
    const PR: &str =
        "/apis/security-profiles-operator.x-k8s.io/v1/namespaces/shop/profilerecordings";

    fn profile(name: &str, partial: bool, names: &[&str]) -> SeccompProfile {
        let mut labels = json!({
            LABEL_RECORDING_ID: "rec", LABEL_RECORDING_NAMESPACE: "shop", LABEL_CONTAINER_ID: "app"
        });
        if partial {
            labels[LABEL_PARTIAL] = json!("true");
        }
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
            "metadata": {"name": name, "labels": labels},
            "spec": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                     "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]}
        }))
        .unwrap()
    }

    fn recording(merge: &str, deleting: bool, finalizers: &[&str]) -> ProfileRecording {
        let mut meta = json!({"name": "rec", "namespace": "shop", "finalizers": finalizers});
        if deleting {
            meta["deletionTimestamp"] = json!("2026-11-26T17:00:00Z");
        }
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": meta,
            "spec": {"kind": "SeccompProfile", "recorder": "Bpf", "mergeStrategy": merge,
                     "podSelector": {"matchLabels": {"app": "web"}}, "disableProfileAfterRecording": true}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_recorded_profile_is_applied_server_side() {
        let (client, mut handle) = mock();
        let sp = profile("rec-app-gmbrj", false, &["read", "write"]);
        let reply = serde_json::to_value(&sp).unwrap();
        scenario(apply_profile(&client, &sp), async move {
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/rec-app-gmbrj?&force=true&fieldManager=syscribe"),
                reply,
            )
            .await;
            assert_eq!(body["metadata"]["labels"][LABEL_RECORDING_ID], "rec");
            assert_eq!(
                body["spec"]["syscalls"][0]["names"],
                json!(["read", "write"])
            );
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_partial_profile_gets_status_partial() {
        let (client, mut handle) = mock();
        let sp = profile("rec-app-gmbrj", true, &["read"]);
        let reply = serde_json::to_value(&sp).unwrap();
        scenario(apply_profile(&client, &sp), async move {
            expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/rec-app-gmbrj?&force=true&fieldManager=syscribe"),
                reply.clone(),
            )
            .await;
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/rec-app-gmbrj/status?"),
                reply,
            )
            .await;
            assert_eq!(status, json!({"status": {"status": "Partial"}}));
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn active_workloads_and_snapshot_clearing() {
        let (client, mut handle) = mock();
        let key = ("shop".to_owned(), "rec".to_owned());
        let reply = serde_json::to_value(recording("None", false, &[])).unwrap();
        scenario(
            async {
                set_active_workloads(&client, &key, vec!["shop/web-1".into()])
                    .await
                    .unwrap();
                clear_snapshot(&client, &key).await.unwrap();
            },
            async move {
                let body = expect(
                    &mut handle,
                    Method::PATCH,
                    &format!("{PR}/rec/status?"),
                    reply.clone(),
                )
                .await;
                assert_eq!(body, json!({"status": {"activeWorkloads": ["shop/web-1"]}}));
                let body = expect(&mut handle, Method::PATCH, &format!("{PR}/rec?"), reply).await;
                assert_eq!(
                    body,
                    json!({"metadata": {"annotations": {ANNOTATION_SNAPSHOT: null}}})
                );
            },
        )
        .await;
    }

    #[tokio::test]
    async fn an_invalid_recording_name_becomes_a_warning_event() {
        let (client, mut handle) = mock();
        let key = ("shop".to_owned(), "Bad_Name".to_owned());
        let err = recorded_profile_name(&key.1, "app", None)
            .unwrap_err()
            .to_string();
        let note = err.clone();
        scenario(warn(&client, &key, "InvalidName", &note), async move {
            let body = expect(
                &mut handle,
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
                json!({"metadata": {"name": "x"}, "eventTime": null, "reportingController": "syscribe", "reportingInstance": "x"}),
            )
            .await;
            assert_eq!(body["type"], "Warning");
            assert_eq!(body["reason"], "InvalidName");
            assert_eq!(body["regarding"]["name"], "Bad_Name");
            assert!(body["note"].as_str().unwrap().contains("not a DNS-1123 label"), "{body}");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn containers_merge_strategy_keeps_the_recording_until_merged() {
        let (client, mut handle) = mock();
        // Created: the finalizer goes on.
        let created = recording("Containers", false, &[]);
        let reply = serde_json::to_value(&created).unwrap();
        scenario(ensure_merge_finalizer(&client, &created), async move {
            let body = expect(&mut handle, Method::PATCH, &format!("{PR}/rec?"), reply).await;
            assert_eq!(
                body,
                json!({"metadata": {"finalizers": [FINALIZER_UNMERGED]}})
            );
        })
        .await
        .unwrap();

        // Deleted: partials merged into rec-app with coverage, partials deleted, finalizer off.
        let (client, mut handle) = mock();
        let deleted = recording("Containers", true, &[FINALIZER_UNMERGED]);
        let reply = serde_json::to_value(&deleted).unwrap();
        let partials = json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfileList",
            "metadata": {},
            "items": [profile("rec-app-aaaaa", true, &["read", "write"]), profile("rec-app-bbbbb", true, &["read", "openat"])]
        });
        let merged = scenario(merge_on_deletion(&client, &deleted), async move {
            let selector = "spo.x-k8s.io%2Frecording-id%3Drec%2Cspo.x-k8s.io%2Frecording-namespace%3Dshop%2Cspo.x-k8s.io%2Fpartial%3Dtrue";
            expect(&mut handle, Method::GET, &format!("{SP}?&labelSelector={selector}"), partials).await;
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SP}/rec-app?&force=true&fieldManager=syscribe"),
                json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile", "metadata": {"name": "rec-app"}, "spec": {"defaultAction": "SCMP_ACT_ERRNO"}}),
            )
            .await;
            assert_eq!(body["spec"]["syscalls"][0]["names"], json!(["openat", "read", "write"]));
            assert_eq!(body["spec"]["state"], "Disabled", "disableProfileAfterRecording");
            assert!(body["metadata"]["labels"].get(LABEL_PARTIAL).is_none());
            let coverage: Value = serde_json::from_str(
                body["metadata"]["annotations"][ANNOTATION_COVERAGE].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(coverage, json!({"version": "v1", "total": 2, "syscalls": {"openat": 1, "read": 2, "write": 1}}));
            expect(
                &mut handle,
                Method::DELETE,
                &format!("{SP}?&labelSelector={selector}"),
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}),
            )
            .await;
            let body = expect(&mut handle, Method::PATCH, &format!("{PR}/rec?"), reply).await;
            assert_eq!(body, json!({"metadata": {"finalizers": []}}));
        })
        .await
        .unwrap();
        assert_eq!(merged, ["rec-app"]);
    }

    /// Merged replicas used what any of them used; one replica without recorded capabilities
    /// makes the merged profile's unknown (no annotation) rather than understated.
    #[test]
    fn merged_profiles_carry_the_union_of_the_replicas_capabilities() {
        let with_caps = |name: &str, caps: Option<&str>| {
            let mut profile = profile(name, true, &["read"]);
            if let Some(caps) = caps {
                profile
                    .annotations_mut()
                    .insert(ANNOTATION_CAPABILITIES.to_owned(), caps.to_owned());
            }
            profile
        };
        let deleted = recording("Containers", true, &[FINALIZER_UNMERGED]);
        let merged = merged_seccomp(
            &deleted,
            &[
                with_caps("rec-app-aaaaa", Some("CAP_NET_BIND_SERVICE,CAP_CHOWN")),
                with_caps("rec-app-bbbbb", Some("CAP_CHOWN,CAP_KILL")),
                with_caps("rec-app-ccccc", Some("")),
            ],
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].annotations()[ANNOTATION_CAPABILITIES],
            "CAP_CHOWN,CAP_KILL,CAP_NET_BIND_SERVICE"
        );
        let merged = merged_seccomp(
            &deleted,
            &[
                with_caps("rec-app-aaaaa", Some("CAP_CHOWN")),
                with_caps("rec-app-bbbbb", None),
            ],
        );
        assert!(
            !merged[0]
                .annotations()
                .contains_key(ANNOTATION_CAPABILITIES),
            "{:?}",
            merged[0].annotations()
        );
    }

    const SE: &str = "/apis/security-profiles-operator.x-k8s.io/v1/selinuxprofiles";

    fn selinux_partial(name: &str, allow: Value) -> Value {
        json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfile",
            "metadata": {"name": name, "labels": {
                LABEL_RECORDING_ID: "rec", LABEL_RECORDING_NAMESPACE: "shop",
                LABEL_CONTAINER_ID: "app", LABEL_PARTIAL: "true"}},
            "spec": {"inherit": [{"kind": "System", "name": "container"}], "allow": allow}
        })
    }

    /// A SelinuxProfile recording's partials are SelinuxProfiles: applied server-side with
    /// status Partial, and merged (union of allow rules) into `<recording>-<container>` when the
    /// recording is deleted.
    #[tokio::test]
    async fn selinux_partials_are_applied_and_merged_as_selinux_profiles() {
        let (client, mut handle) = mock();
        let partial: SelinuxProfile = serde_json::from_value(selinux_partial(
            "rec-app-aaaaa",
            json!({"etc_t": {"file": ["read"]}}),
        ))
        .unwrap();
        let reply = serde_json::to_value(&partial).unwrap();
        scenario(apply_profile(&client, &partial), async move {
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SE}/rec-app-aaaaa?&force=true&fieldManager=syscribe"),
                reply.clone(),
            )
            .await;
            assert_eq!(body["kind"], "SelinuxProfile");
            assert_eq!(body["spec"]["allow"], json!({"etc_t": {"file": ["read"]}}));
            let status = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SE}/rec-app-aaaaa/status?"),
                reply,
            )
            .await;
            assert_eq!(status, json!({"status": {"status": "Partial"}}));
        })
        .await
        .unwrap();

        let (client, mut handle) = mock();
        let mut deleted = recording("Containers", true, &[FINALIZER_UNMERGED]);
        deleted.spec.kind = RecordingKind::SelinuxProfile;
        deleted.spec.recorder = super::super::crd::RecorderKind::Logs;
        let reply = serde_json::to_value(&deleted).unwrap();
        let partials = json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SelinuxProfileList",
            "metadata": {},
            "items": [
                selinux_partial("rec-app-aaaaa", json!({"etc_t": {"file": ["read"]}})),
                selinux_partial("rec-app-bbbbb", json!({"etc_t": {"file": ["open"]}, "@self": {"tcp_socket": ["listen"]}})),
            ]
        });
        let merged = scenario(merge_on_deletion(&client, &deleted), async move {
            let selector = "spo.x-k8s.io%2Frecording-id%3Drec%2Cspo.x-k8s.io%2Frecording-namespace%3Dshop%2Cspo.x-k8s.io%2Fpartial%3Dtrue";
            expect(&mut handle, Method::GET, &format!("{SE}?&labelSelector={selector}"), partials).await;
            let body = expect(
                &mut handle,
                Method::PATCH,
                &format!("{SE}/rec-app?&force=true&fieldManager=syscribe"),
                selinux_partial("rec-app", json!({})),
            )
            .await;
            assert_eq!(
                body["spec"]["allow"],
                json!({"@self": {"tcp_socket": ["listen"]}, "etc_t": {"file": ["open", "read"]}})
            );
            assert_eq!(body["spec"]["state"], "Disabled", "disableProfileAfterRecording");
            assert_eq!(body["metadata"]["labels"][LABEL_RECORDING_ID], "rec");
            assert!(body["metadata"]["labels"].get(LABEL_PARTIAL).is_none());
            expect(
                &mut handle,
                Method::DELETE,
                &format!("{SE}?&labelSelector={selector}"),
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}),
            )
            .await;
            let body = expect(&mut handle, Method::PATCH, &format!("{PR}/rec?"), reply).await;
            assert_eq!(body, json!({"metadata": {"finalizers": []}}));
        })
        .await
        .unwrap();
        assert_eq!(merged, ["rec-app"]);
    }
}
