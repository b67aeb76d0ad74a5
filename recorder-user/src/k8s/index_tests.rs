use super::*;

fn namespace(name: &str, enabled: bool) -> Namespace {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": if enabled {
            serde_json::json!({LABEL_ENABLE_RECORDING: "true"})
        } else { serde_json::json!({}) }}
    }))
    .unwrap()
}

fn recording(name: &str, spec: serde_json::Value) -> ProfileRecording {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "ProfileRecording",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }))
    .unwrap()
}

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "shop", "uid": "0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60", "labels": labels},
        "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "web"}, {"name": "sidecar"}]
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "containerStatuses": [
                {"name": "web", "containerID": "containerd://abc", "image": "", "imageID": "", "ready": true, "restartCount": 0},
            ]
        }
    }))
    .unwrap()
}

fn seccomp_bpf(selector: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "SeccompProfile", "recorder": "Bpf", "podSelector": selector})
}

#[test]
fn a_recording_selects_pods_of_enabled_namespaces_only() {
    let mut index = NodeIndex::default();
    index.apply_recording(recording(
        "rec",
        seccomp_bpf(serde_json::json!({"matchLabels": {"app": "web"}})),
    ));
    let web = pod("web-1", serde_json::json!({"app": "web"}));
    assert_eq!(index.selection(&web).0, None, "namespace not enabled");
    index.apply_namespace(&namespace("shop", true));
    let selection = index.selection(&web).0.expect("selected");
    assert_eq!(selection.recording, "rec");
    assert_eq!(
        selection.containers,
        ["init", "sidecar", "web"].map(String::from).into()
    );
    assert_eq!(
        index.active_workloads(&("shop".into(), "rec".into())),
        Vec::<String>::new()
    );
    index.apply_pod(web.clone());
    assert_eq!(
        index.active_workloads(&("shop".into(), "rec".into())),
        ["shop/web-1"]
    );
    assert_eq!(
        index
            .selection(&pod("db-1", serde_json::json!({"app": "db"})))
            .0,
        None
    );
    index.apply_namespace(&namespace("shop", false));
    assert_eq!(index.selection(&web).0, None, "label removed");
}

#[test]
fn containers_allowlist_expressions_and_refusals() {
    let mut index = NodeIndex::default();
    index.apply_namespace(&namespace("shop", true));
    let mut spec = seccomp_bpf(serde_json::json!({"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]},
        {"key": "canary", "operator": "DoesNotExist"}
    ]}));
    spec["containers"] = serde_json::json!(["web", "init"]);
    index.apply_recording(recording("b-rec", spec));
    index.apply_recording(recording(
        "a-bpf",
        serde_json::json!({"kind": "SelinuxProfile", "recorder": "Bpf", "podSelector": {}}),
    ));
    index.apply_recording(recording(
        "a-apparmor",
        serde_json::json!({"kind": "AppArmorProfile", "recorder": "Logs", "podSelector": {}}),
    ));
    index.apply_recording(recording("c-rec", seccomp_bpf(serde_json::json!({}))));
    let web = pod("web-1", serde_json::json!({"app": "web"}));
    let (selection, refusals) = index.selection(&web);
    let selection = selection.unwrap();
    assert_eq!(selection.recording, "b-rec");
    assert_eq!(
        selection.containers,
        ["init", "web"].map(String::from).into()
    );
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(
        matches!(&refusals[0], Refusal::Unsupported { recording, kind: RecordingKind::AppArmorProfile, .. } if recording == "a-apparmor")
    );
    assert!(
        matches!(&refusals[1], Refusal::Unsupported { recording, kind: RecordingKind::SelinuxProfile, recorder: RecorderKind::Bpf } if recording == "a-bpf")
    );
    assert!(
        matches!(&refusals[2], Refusal::Ambiguous { used, ignored } if used == "b-rec" && ignored == &["c-rec".to_owned()])
    );
    assert_eq!(selection.kind, RecordingKind::SeccompProfile);
    let canary = pod("web-2", serde_json::json!({"app": "web", "canary": "1"}));
    assert_eq!(index.selection(&canary).0.unwrap().recording, "c-rec");
    let mut done = web.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert_eq!(
        index.selection(&done).0,
        None,
        "finished pods are not recorded"
    );
}

/// SelinuxProfile with the Logs recorder (upstream's only SELinux recorder) selects pods as
/// seccomp recordings do; Seccomp with Logs is still refused.
#[test]
fn selinux_recordings_from_logs_select_pods() {
    let mut index = NodeIndex::default();
    index.apply_namespace(&namespace("shop", true));
    let mut spec = serde_json::json!({"kind": "SelinuxProfile", "recorder": "Logs",
        "mergeStrategy": "Containers", "podSelector": {"matchLabels": {"app": "web"}}});
    spec["containers"] = serde_json::json!(["web"]);
    index.apply_recording(recording("se-rec", spec));
    index.apply_recording(recording(
        "z-logs",
        serde_json::json!({"kind": "SeccompProfile", "recorder": "Logs", "podSelector": {}}),
    ));
    let (selection, refusals) = index.selection(&pod("web-1", serde_json::json!({"app": "web"})));
    let selection = selection.expect("selected");
    assert_eq!(selection.recording, "se-rec");
    assert_eq!(selection.kind, RecordingKind::SelinuxProfile);
    assert_eq!(selection.merge, MergeStrategy::Containers);
    assert_eq!(selection.containers, ["web"].map(String::from).into());
    assert!(
        matches!(&refusals[..], [Refusal::Unsupported { recording, kind: RecordingKind::SeccompProfile, recorder: RecorderKind::Logs }] if recording == "z-logs"),
        "{refusals:?}"
    );
    assert!(supported(RecordingKind::SeccompProfile, RecorderKind::Bpf));
    assert!(!supported(
        RecordingKind::AppArmorProfile,
        RecorderKind::Bpf
    ));
}

#[test]
fn pod_paths_and_container_ids() {
    let web = pod("web-1", serde_json::json!({}));
    assert_eq!(
        pod_cgroup_candidates(&web),
        [
            "/kubepods/burstable/pod0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f6e5a2b_8b1c_4b7e_9d3a_1c2b3d4e5f60.slice"
        ]
    );
    assert_eq!(
        container_ids(&web),
        [("abc".to_owned(), "web".to_owned())].into()
    );
}
