//! The daemon's recording machinery end to end, without an API server: a real runc container
//! at the kubelet cgroup path of a Pod object fed to the node index is recorded, and the pod's
//! end produces the SeccompProfile object upstream would create (captured where it would be
//! sent to the API server); that profile replays under runc, pulled as users download it and
//! installed as the daemon writes it on the node.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt as _;
use syscribe::{
    kube::{crd::ProfileRecording, index::NodeIndex, install, recordings::PodRecordings},
    profile::validate::Validator,
    record::{HostPaths, subtree::Subtrees},
};
use syscribe_tests::{
    containers::{Bundle, PodCgroup},
    *,
};

fn objects(pod_cgroup: &PodCgroup, container_id: &str) -> (Namespace, ProfileRecording, Pod) {
    let namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shop", "labels": {"spo.x-k8s.io/enable-recording": "true"}}
    }))
    .unwrap();
    let recording = serde_json::from_value(serde_json::json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "ProfileRecording",
        "metadata": {"name": "test-recording", "namespace": "shop"},
        "spec": {"kind": "SeccompProfile", "recorder": "Bpf", "podSelector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "web-7d9f-gmbrj", "generateName": "web-7d9f-", "namespace": "shop",
            "uid": pod_cgroup.uid, "labels": {"app": "web"}
        },
        "spec": {"containers": [{"name": "app"}]},
        "status": {
            "phase": "Running", "qosClass": "BestEffort",
            "containerStatuses": [{
                "name": "app", "containerID": format!("containerd://{container_id}"),
                "image": "busybox", "imageID": "", "ready": true, "restartCount": 0
            }]
        }
    }))
    .unwrap();
    (namespace, recording, pod)
}

#[test]
fn a_selected_pod_becomes_a_seccomp_profile_that_replays() {
    require_root();
    let pod_cgroup = PodCgroup::new();
    let container = Bundle::new(
        &pod_cgroup,
        &["/bin/sh", "-c", "echo hello; sleep 0.3; cat /etc/group"],
    );
    // The runtime installs a filter (any): where its own setup ends.
    container.set_seccomp(Some(
        &serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}),
    ));
    let (namespace, recording, pod) = objects(&pod_cgroup, &container.id);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (profiles, recorded_output) = runtime.block_on(async {
        let paths = HostPaths {
            btf: "/sys/kernel/btf/vmlinux".into(),
            mountinfo: "/proc/self/mountinfo".into(),
        };
        let mut recordings = PodRecordings::new(Subtrees::start(&paths).expect("recorder"));
        let mut index = NodeIndex::default();
        index.apply_namespace(&namespace);
        index.apply_recording(recording);
        index.apply_pod(pod.clone());
        let outcome = recordings.sync(&index).unwrap();
        assert_eq!(
            recordings.active_pods().count(),
            1,
            "the pod's cgroup exists: its recording starts before its containers"
        );
        assert!(
            outcome
                .changed_recordings
                .contains(&("shop".to_owned(), "test-recording".to_owned()))
        );

        let runner = std::thread::spawn({
            let path = container.path().to_owned();
            let id = container.id.clone();
            move || {
                let out = std::process::Command::new("runc")
                    .args(["run", "--bundle"])
                    .arg(&path)
                    .arg(&id)
                    .output()
                    .unwrap();
                let _ = std::process::Command::new("runc")
                    .args(["delete", "--force", &id])
                    .output();
                out
            }
        });
        while !runner.is_finished() {
            tokio::select! {
                created = recordings.subtrees_mut().created() => created.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => recordings.poll().unwrap(),
            }
        }
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));

        // The pod is deleted: its recording ends and its profile is published.
        index.delete_pod(&("shop".to_owned(), pod.name_any()));
        let outcome = recordings.sync(&index).unwrap();
        assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
        assert_eq!(recordings.active_pods().count(), 0);
        let rest = recordings.finish().await.unwrap();
        assert!(rest.profiles.is_empty());
        (outcome.profiles, stdout(&ran))
    });

    assert_eq!(profiles.len(), 1, "one profile per container");
    let profile = &profiles[0];
    assert_eq!(
        profile.name_any(),
        "test-recording-app-gmbrj",
        "upstream naming"
    );
    let labels = profile.labels();
    assert_eq!(labels["spo.x-k8s.io/recording-id"], "test-recording");
    assert_eq!(labels["spo.x-k8s.io/recording-namespace"], "shop");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "app");
    assert!(!labels.contains_key("spo.x-k8s.io/partial"));
    assert_eq!(
        profile.annotations()["syscribe.dev/container-id"],
        container.id
    );
    let json = serde_json::to_value(profile).unwrap();
    assert_eq!(json["apiVersion"], "security-profiles-operator.x-k8s.io/v1");
    assert_eq!(json["kind"], "SeccompProfile");
    assert_eq!(json["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
    let names = allowed_names(&serde_json::to_value(profile.spec.to_seccomp()).unwrap());
    for setup in ["pivot_root", "mount", "sethostname"] {
        assert!(!names.contains(setup), "runtime setup {setup} in {names:?}");
    }
    for needed in ["execve", "write", "nanosleep", "openat"] {
        assert!(names.contains(needed), "{needed} missing from {names:?}");
    }

    // The published profile, downloaded as users do (`syscribe pull`), as runc loads it.
    let dir = TempDir::new("daemon-pull");
    let yaml = dir.join("profile.yaml");
    std::fs::write(&yaml, serde_yaml::to_string(profile).unwrap()).unwrap();
    let oci_path = dir.join("profile.json");
    let pulled = syscribe()
        .args(["pull", "test-recording-app-gmbrj", "-f"])
        .arg(&yaml)
        .arg("-o")
        .arg(&oci_path)
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let oci: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&oci_path).unwrap()).unwrap();
    assert_eq!(allowed_names(&oci), names);
    container.set_seccomp(Some(&oci));
    let replayed = container.run("runc");
    assert!(replayed.status.success(), "replay: {}", stderr(&replayed));
    assert_eq!(stdout(&replayed), recorded_output);

    // The same object as the daemon installs it on the node: planned (validated), written to
    // <kubelet>/seccomp/operator/<name>.json, and that file — what the kubelet hands runc for
    // `localhostProfile: operator/test-recording-app-gmbrj.json` — replays the container too.
    let kubelet = TempDir::new("daemon-kubelet");
    let all: std::collections::BTreeMap<String, _> = [(profile.name_any(), profile.clone())]
        .into_iter()
        .collect();
    let plan = install::plan(
        "test-recording-app-gmbrj",
        &all,
        [],
        &mut Validator::default(),
    );
    let install::Plan::Install(seccomp) = plan else {
        panic!("a recorded profile installs: {plan:?}");
    };
    let installer = install::Installer::new(kubelet.path());
    assert!(
        installer
            .install("test-recording-app-gmbrj", &seccomp)
            .unwrap()
    );
    let installed_path = kubelet.join("seccomp/operator/test-recording-app-gmbrj.json");
    let installed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&installed_path).unwrap()).unwrap();
    assert_eq!(allowed_names(&installed), names);
    container.set_seccomp(Some(&installed));
    let replayed = container.run("runc");
    assert!(
        replayed.status.success(),
        "installed replay: {}",
        stderr(&replayed)
    );
    assert_eq!(stdout(&replayed), recorded_output);
    drop(container);
    drop(pod_cgroup);
    assert_no_leftovers();
}
