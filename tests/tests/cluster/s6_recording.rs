//! Ming records a pod by labelling its namespace and runs it under its own profile (s6–s6c).

use syscribe_tests::cluster::{Kube, deployed, image};

use super::common::{MINUTE, allowed_names, label_for_recording, recording_yaml};

/// Ming's flow: label a namespace, create a ProfileRecording, run the workload, delete its pod
/// — and the recorded profile is published, installed, and runs the same workload under it
/// with only the capabilities it recorded, while what the workload never did is refused.
/// `seccomp` is the recorded pod's own seccomp type: RuntimeDefault (the runtime's filter marks
/// where the container begins) or Unconfined (Kubernetes' default without `seccompDefault`: the
/// recording starts at the container's first exec after its root switch — docs/design.md, "The
/// runtime boundary"); `runtime_class` picks runc (none) or crun.
fn recorded_pod_runs_under_its_own_profile(
    recording: &str,
    namespace: &str,
    runtime_class: Option<&str>,
    seccomp: &str,
) {
    let kube = Kube::get();
    deployed(&kube);
    let workload = "uname -n; mkdir -p /tmp/d; echo recorded > /tmp/d/f; chown 1:1 /tmp/d/f; cat /tmp/d/f; \
         stat -c owner=%u /tmp/d/f; sleep 1";
    label_for_recording(&kube, namespace);
    kube.apply(&recording_yaml(namespace, recording, "web"));
    let runtime = runtime_class
        .map(|c| format!("  runtimeClassName: {c}\n"))
        .unwrap_or_default();
    let pod = |name: &str, ns: &str, labels: &str, seccomp: &str, caps: &str, command: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
{runtime}  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext:
    seccompProfile: {seccomp}
  containers:
  - name: web
    image: {image}
    command: [sh, -c, {command:?}]
{caps}"#,
            image = image("workload"),
        )
    };
    // No kubectl exec into the recorded pod: a process exec'd into a running container adds
    // to its profile (tests/containers.rs), and this test is about the container's own start.
    kube.apply(&pod(
        "web",
        namespace,
        "app: web",
        &format!("{{type: {seccomp}}}"),
        "",
        &format!("{workload}; echo workload-done; exec sleep 3600"),
    ));
    kube.wait_log(namespace, "web", "workload-done", MINUTE);
    let active = kube.json(&["get", "profilerecording", "-n", namespace, recording]);
    assert_eq!(
        active["status"]["activeWorkloads"],
        serde_json::json!([format!("{namespace}/web")]),
        "the recording names the pod it records: {active}"
    );
    kube.delete(&["pod", "-n", namespace, "web"]);
    let name = format!("{recording}-web");
    let profile = kube.wait_status("seccompprofile", &name, "Installed", MINUTE);
    let labels = &profile["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], recording, "{profile}");
    assert_eq!(
        labels["spo.x-k8s.io/recording-namespace"], namespace,
        "{profile}"
    );
    assert_eq!(labels["spo.x-k8s.io/container-id"], "web", "{profile}");
    let annotations = &profile["metadata"]["annotations"];
    let boundary = if seccomp == "Unconfined" {
        "exec"
    } else {
        "filter"
    };
    assert_eq!(
        annotations["syscribe.dev/recording-boundary"], boundary,
        "a {seccomp} pod is recorded from its {boundary}: {profile}"
    );
    assert_eq!(
        annotations["syscribe.dev/capabilities"], "CAP_CHOWN",
        "the workload's chown is the one capability it used: {profile}"
    );
    assert_eq!(profile["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
    let names = allowed_names(&profile["spec"]);
    for needed in ["uname", "mkdir", "execve"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} is not in the recorded {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| ["chown", "lchown", "fchownat"].contains(&n.as_str())),
        "no chown in the recorded {names:?}"
    );
    // The runtime's setup: root, mounts, names, namespaces — none of it is the container's.
    for never in [
        "socket",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "sethostname",
        "unshare",
        "setns",
        "open_tree",
        "move_mount",
    ] {
        assert!(
            !names.iter().any(|n| n == never),
            "{never} is in the recorded {names:?}"
        );
    }

    // The same workload under the recorded profile and with only the recorded capability (as
    // `syscribe record --format securitycontext` prints it), in a namespace that records
    // nothing; then a socket the recording never saw.
    let localhost = format!("{{type: Localhost, localhostProfile: operator/{name}.json}}");
    let only_chown = "    securityContext:\n      capabilities: {drop: [ALL], add: [CHOWN]}\n";
    let replay = format!("replay-{recording}");
    let stranger = format!("stranger-{recording}");
    kube.apply(&pod(
        &replay,
        "default",
        "app: replay",
        &localhost,
        only_chown,
        workload,
    ));
    kube.apply(&pod(
        &stranger,
        "default",
        "app: stranger",
        &localhost,
        only_chown,
        "nc 127.0.0.1 80 </dev/null; echo nc-status=$?",
    ));
    for name in [&replay, &stranger] {
        kube.wait_succeeded("default", name, MINUTE);
    }
    let replayed = kube.ok(&["logs", "-n", "default", &replay]);
    assert!(
        replayed.contains("recorded") && replayed.contains("owner=1"),
        "the replay under its profile and capability: {replayed}"
    );
    let refused = kube.ok(&["logs", "-n", "default", &stranger]);
    assert!(
        refused.contains("Operation not permitted") && refused.contains("nc-status=1"),
        "a socket the recording never saw must be refused: {refused}"
    );
    kube.delete(&["pod", "-n", "default", &replay, &stranger]);
    kube.delete(&["namespace", namespace]);
    kube.delete(&["seccompprofile", &name]);
}

#[test]
fn s6_a_pod_recorded_by_labelling_its_namespace_runs_under_its_own_profile() {
    recorded_pod_runs_under_its_own_profile("ming", "shop", None, "RuntimeDefault");
}

#[test]
fn s6b_an_unconfined_pod_run_by_runc_is_recorded_from_its_exec() {
    recorded_pod_runs_under_its_own_profile(
        "ming-unconfined",
        "shop-unconfined",
        None,
        "Unconfined",
    );
}

#[test]
fn s6c_an_unconfined_pod_run_by_crun_is_recorded_from_its_exec() {
    recorded_pod_runs_under_its_own_profile("ming-crun", "shop-crun", Some("crun"), "Unconfined");
}
