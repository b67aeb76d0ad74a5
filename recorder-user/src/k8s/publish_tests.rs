use http::Method;
use serde_json::{Value, json};

use super::*;

use crate::k8s::testing::{expect, mock, scenario};

const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";
const PR: &str = "/apis/security-profiles-operator.x-k8s.io/v1/namespaces/shop/profilerecordings";

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
