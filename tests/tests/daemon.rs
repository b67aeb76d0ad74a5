//! The daemon's recording machinery end to end, without an API server: a real runc container
//! at the kubelet cgroup path of a Pod object fed to the node index is recorded, and the pod's
//! end produces the SeccompProfile object upstream would create (captured where it would be
//! sent to the API server); that profile replays under runc, pulled as users download it and
//! installed as the daemon writes it on the node.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt as _;
use syscribe::{
    k8s::{crd::ProfileRecording, index::NodeIndex, install, recordings::PodRecordings},
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

        let runner = container.spawn_run("runc");
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
    // Recorded, and none used: echo, sleep and cat as root need no capability check.
    assert_eq!(profile.annotations()["syscribe.dev/capabilities"], "");
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

// ---------------------------------------------------------------------------------------------
// The daemon's reconcile flows (k8s::daemon::Daemon, as `syscribe daemon` runs it) against
// kube's tower-test mock API server: each watch event is fed as the watchers deliver it, each
// API request the daemon makes is asserted in order, each scenario within 30 s.

mod reconcile {
    use std::time::Duration;

    use http::Method;
    use kube::runtime::watcher::Event;
    use serde_json::{Value, json};
    use syscribe::{
        k8s::{
            crd::ProfileRecording,
            daemon::Daemon,
            install::{Installer, NodeProfiles},
            recordings::PodRecordings,
            testing::{Handle, expect, mock, scenario_within},
        },
        profile::validate::Validator,
        record::{HostPaths, subtree::Subtrees},
        resolve::runtime::KnownNames,
    };
    use syscribe_tests::{
        containers::{Bundle, PodCgroup},
        *,
    };

    const PR: &str =
        "/apis/security-profiles-operator.x-k8s.io/v1/namespaces/shop/profilerecordings";
    const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";

    fn daemon(client: kube::Client, kubelet: &TempDir) -> Daemon {
        let paths = HostPaths {
            btf: "/sys/kernel/btf/vmlinux".into(),
            mountinfo: "/proc/self/mountinfo".into(),
        };
        let recordings = PodRecordings::new(Subtrees::start(&paths).expect("recorder"));
        let installed = NodeProfiles::new(
            "node1".into(),
            Installer::new(kubelet.path()),
            Validator::default(),
        );
        Daemon::new(client, KnownNames::default(), recordings, installed)
    }

    fn recording(name: &str, spec: Value) -> ProfileRecording {
        let mut full = json!({"kind": "SeccompProfile", "recorder": "Bpf",
                              "podSelector": {"matchLabels": {"app": "web"}}});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
            "metadata": {"name": name, "namespace": "shop"}, "spec": full
        }))
        .unwrap()
    }

    /// Runs the container to its end while the daemon collects (its 50 ms tick).
    async fn run_container(daemon: &mut Daemon, container: &Bundle) -> String {
        let runner = container.spawn_run("runc");
        while !runner.is_finished() {
            tokio::select! {
                created = daemon.recordings.subtrees_mut().created() => created.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => daemon.tick().await,
            }
        }
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
        stdout(&ran)
    }

    async fn active_workloads(handle: &mut Handle, recording: &str, reply: &Value) -> Value {
        let body = expect(
            handle,
            Method::PATCH,
            &format!("{PR}/{recording}/status?"),
            reply.clone(),
        )
        .await;
        body["status"]["activeWorkloads"].clone()
    }

    /// One scenario: the namespace, the recording and the pod arrive; the container runs; the
    /// pod is deleted. `server` answers (and asserts) every request the daemon makes.
    fn pod_lifecycle<S>(recording: ProfileRecording, server: impl FnOnce(Handle, Value) -> S)
    where
        S: std::future::Future<Output = ()> + Send + 'static,
    {
        require_root();
        let pod_cgroup = PodCgroup::new();
        let container = Bundle::new(&pod_cgroup, &["/bin/sh", "-c", "echo hi; cat /etc/group"]);
        container.set_seccomp(Some(&json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        let (namespace, _, pod) = super::objects(&pod_cgroup, &container.id);
        let kubelet = TempDir::new("reconcile-kubelet");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, handle) = mock();
            let reply = serde_json::to_value(&recording).unwrap();
            let mut daemon = daemon(client, &kubelet);
            let client_side = async {
                daemon.namespace_event(Event::Apply(namespace)).await;
                daemon
                    .recording_event(Event::Apply(recording))
                    .await
                    .unwrap();
                daemon.pod_event(Event::Apply(pod.clone())).await;
                assert_eq!(
                    daemon.recordings.active_pods().count(),
                    1,
                    "pod created → its recording started, before its container"
                );
                run_container(&mut daemon, &container).await;
                daemon.pod_event(Event::Delete(pod)).await;
                assert_eq!(
                    daemon.recordings.active_pods().count(),
                    0,
                    "pod deleted → recording ended"
                );
                daemon.waiting()
            };
            // The server side's assertions first, then: nothing left to retry.
            let waiting =
                scenario_within(Duration::from_secs(30), client_side, server(handle, reply)).await;
            assert!(
                waiting.is_empty(),
                "not published or installed: {waiting:?}"
            );
        });
        drop(container);
        drop(pod_cgroup);
        assert_no_leftovers();
    }

    /// What the API server answers for a SeccompProfile write (the client reads it back).
    fn sp_reply() -> Value {
        json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
               "metadata": {"name": "test-recording-app-gmbrj"},
               "spec": {"defaultAction": "SCMP_ACT_ERRNO"}})
    }

    fn profile_reply(body: &Value) -> Value {
        let mut reply = body.clone();
        reply["metadata"]["uid"] = json!("uid-1");
        reply
    }

    #[test]
    fn pod_created_recording_starts_pod_deleted_profile_published() {
        pod_lifecycle(
            recording("test-recording", json!({})),
            |mut handle, reply| async move {
                assert_eq!(
                    active_workloads(&mut handle, "test-recording", &reply).await,
                    json!(["shop/web-7d9f-gmbrj"])
                );
                let uri =
                    format!("{SP}/test-recording-app-gmbrj?&force=true&fieldManager=syscribe");
                let (request, send) = handle.next_request().await.expect("the profile is applied");
                assert_eq!(request.method(), Method::PATCH);
                assert_eq!(request.uri().to_string(), uri);
                let body: Value =
                    serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap())
                        .unwrap();
                send.send_response(http::Response::new(kube::client::Body::from(
                    serde_json::to_vec(&profile_reply(&body)).unwrap(),
                )));
                assert_eq!(body["kind"], "SeccompProfile");
                let labels = &body["metadata"]["labels"];
                assert_eq!(labels["spo.x-k8s.io/recording-id"], "test-recording");
                assert_eq!(labels["spo.x-k8s.io/recording-namespace"], "shop");
                assert_eq!(labels["spo.x-k8s.io/container-id"], "app");
                assert_eq!(labels.get("spo.x-k8s.io/partial"), None);
                assert_eq!(body["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
                assert_eq!(body["spec"].get("state"), None, "enabled");
                let names = allowed_names(&body["spec"]);
                assert!(
                    names.contains("execve") && names.contains("openat"),
                    "{names:?}"
                );
                assert!(!names.contains("pivot_root"), "no runtime setup: {names:?}");
                assert_eq!(
                    active_workloads(&mut handle, "test-recording", &reply).await,
                    json!([])
                );
            },
        );
    }

    #[test]
    fn merge_strategy_containers_and_disabled_after_recording() {
        let spec = json!({"mergeStrategy": "Containers", "disableProfileAfterRecording": true});
        pod_lifecycle(
            recording("test-recording", spec),
            |mut handle, reply| async move {
                // The recording is kept until its partial profiles are merged.
                let body = expect(
                    &mut handle,
                    Method::PATCH,
                    &format!("{PR}/test-recording?"),
                    reply.clone(),
                )
                .await;
                assert_eq!(
                    body,
                    json!({"metadata": {"finalizers": ["spo.x-k8s.io/has-unmerged-profiles"]}})
                );
                active_workloads(&mut handle, "test-recording", &reply).await;
                let uri =
                    format!("{SP}/test-recording-app-gmbrj?&force=true&fieldManager=syscribe");
                let body = expect(&mut handle, Method::PATCH, &uri, sp_reply()).await;
                assert_eq!(body["metadata"]["labels"]["spo.x-k8s.io/partial"], "true");
                assert_eq!(body["spec"]["state"], "Disabled");
                // A partial profile says so in its status.
                let body = expect(
                    &mut handle,
                    Method::PATCH,
                    &format!("{SP}/test-recording-app-gmbrj/status?"),
                    sp_reply(),
                )
                .await;
                assert_eq!(body, json!({"status": {"status": "Partial"}}));
                assert_eq!(
                    active_workloads(&mut handle, "test-recording", &reply).await,
                    json!([])
                );
            },
        );
    }

    #[test]
    fn an_invalid_recording_name_is_an_event_not_a_crash() {
        pod_lifecycle(
            recording("Test_Recording", json!({})),
            |mut handle, reply| async move {
                active_workloads(&mut handle, "Test_Recording", &reply).await;
                let event = json!({"metadata": {"name": "x"}, "eventTime": null,
                               "reportingController": "syscribe", "reportingInstance": "x"});
                let body = expect(
                    &mut handle,
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/shop/events?",
                    event,
                )
                .await;
                assert_eq!(body["type"], "Warning");
                assert_eq!(body["reason"], "ProfileNotRecorded");
                assert_eq!(body["regarding"]["name"], "Test_Recording");
                assert!(
                    body["note"].as_str().unwrap().contains("DNS-1123"),
                    "{body}"
                );
                assert_eq!(
                    active_workloads(&mut handle, "Test_Recording", &reply).await,
                    json!([])
                );
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Restart: the `syscribe daemon` process killed (SIGKILL) in the middle of a recording and
// started again, against a stand-in API server (tests/src/fake_api.rs): the profile it
// publishes when the pod is deleted holds what the container did before the kill, while no
// daemon ran, and after the restart.

mod restart {
    use std::{
        io::{BufRead as _, BufReader},
        path::Path,
        process::{Child, Stdio},
        sync::{Arc, Mutex},
        time::Duration,
    };

    use serde_json::{Value, json};
    use syscribe_tests::{
        containers::{Bundle, PodCgroup},
        fake_api::FakeApi,
        *,
    };

    const PODS: &str = "/api/v1/pods";
    const RECORDING_STATUS: &str = "/apis/security-profiles-operator.x-k8s.io/v1/namespaces/shop/profilerecordings/test-recording/status";
    const PROFILE: &str =
        "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/test-recording-app-gmbrj";
    const INIT_PROFILE: &str =
        "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/test-recording-init-gmbrj";

    struct Daemon {
        child: Child,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Daemon {
        fn start(kubeconfig: &Path, pin: &str, dir: &Path) -> Self {
            let mut child = syscribe()
                .args(["daemon", "--node", "node1", "--no-enrich", "--no-install"])
                .args(["--metrics-addr", "127.0.0.1:0", "--pin-dir", pin])
                .arg("--kubelet-dir")
                .arg(dir.join("kubelet"))
                .arg("--state-dir")
                .arg(dir.join("state"))
                .env("KUBECONFIG", kubeconfig)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn syscribe daemon");
            let log: Arc<Mutex<Vec<String>>> = Arc::default();
            let stderr = BufReader::new(child.stderr.take().unwrap());
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            Self { child, log }
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn active(api: &FakeApi, after: usize, daemon: &Daemon) {
        let write = api.wait_for(after, Duration::from_secs(20), |w| {
            w.path == RECORDING_STATUS
                && w.body["status"]["activeWorkloads"] == json!(["shop/web-7d9f-gmbrj"])
        });
        assert!(
            write.is_some(),
            "the daemon did not start recording the pod: {:#?}",
            daemon.log()
        );
    }

    #[test]
    fn a_killed_daemon_is_started_again_and_loses_nothing() {
        require_root();
        let bpffs = BpfFs::ensure();
        let pin = format!("{}/syscribe-test-daemon-{}", BpfFs::DIR, std::process::id());
        let pod_cgroup = PodCgroup::new();
        let container = Bundle::new(
            &pod_cgroup,
            &[
                "/bin/sh",
                "-c",
                "sync; sleep 1.5; uptime; sleep 2; nproc; sleep 0.3",
            ],
        );
        container.set_seccomp(Some(&json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        // An init container that is over before the kill: its recording lives in the daemon,
        // not in the kernel, and must survive the restart too.
        // Over within milliseconds: its cgroup is named by the namer thread, whatever the
        // daemon's task is doing (an API call, a poll).
        let init = Bundle::new(&pod_cgroup, &["/bin/uname", "-a"]);
        init.set_seccomp(Some(&json!({"defaultAction": "SCMP_ACT_ALLOW"})));
        let (namespace, recording, pod) = super::objects(&pod_cgroup, &container.id);
        let mut pod = serde_json::to_value(&pod).unwrap();
        pod["spec"]["initContainers"] = json!([{"name": "init"}]);
        pod["status"]["initContainerStatuses"] = json!([{
            "name": "init", "containerID": format!("containerd://{}", init.id),
            "image": "busybox", "imageID": "", "ready": false, "restartCount": 0
        }]);
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["spec"]["nodeName"] = json!("node1");
        pod["metadata"]["resourceVersion"] = json!("1");
        let mut namespace = serde_json::to_value(&namespace).unwrap();
        namespace["apiVersion"] = json!("v1");
        namespace["kind"] = json!("Namespace");
        let api = FakeApi::start();
        api.add("/api/v1/namespaces", namespace);
        api.add(
            "/apis/security-profiles-operator.x-k8s.io/v1/profilerecordings",
            serde_json::to_value(&recording).unwrap(),
        );
        api.add(PODS, pod.clone());
        let dir = TempDir::new("daemon-restart");
        let kubeconfig = api.kubeconfig(&dir);

        let first = Daemon::start(&kubeconfig, &pin, dir.path());
        active(&api, 0, &first);
        let ran = init.run("runc");
        assert!(ran.status.success(), "init: {}", stderr(&ran));
        let state = dir.join("state");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_dir(&state).map_or(0, |d| d.count()) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the init container's recording is not kept: {:#?}",
                first.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::scope(|scope| {
            let runner = scope.spawn(|| container.run("runc"));
            std::thread::sleep(Duration::from_millis(800));
            // Killed mid-recording: nothing runs its cleanup; the pinned programs go on.
            let mut first = first;
            first.child.kill().unwrap();
            first.child.wait().unwrap();
            assert!(Path::new(&pin).exists(), "the recorder stays pinned");
            std::thread::sleep(Duration::from_millis(1400)); // uptime runs meanwhile

            let writes = api.writes().len();
            let second = Daemon::start(&kubeconfig, &pin, dir.path());
            active(&api, writes, &second);
            assert!(
                second
                    .log()
                    .iter()
                    .any(|l| l.contains("adopted the recorder state")),
                "{:#?}",
                second.log()
            );
            let ran = runner.join().unwrap();
            assert!(ran.status.success(), "{}", stderr(&ran));

            // The pod is deleted: the second daemon ends the recording and publishes.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while api.watching(PODS) == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            pod["metadata"]["resourceVersion"] = json!("2");
            assert!(api.push(PODS, "DELETED", &pod) >= 1, "nobody watches pods");
            let published = api
                .wait_for(0, Duration::from_secs(20), |w| w.path == PROFILE)
                .unwrap_or_else(|| panic!("no profile published: {:#?}", second.log()));
            let spec: &Value = &published.body["spec"];
            let names = allowed_names(spec);
            for (when, syscall) in [
                ("before the kill", "sync"),
                ("while no daemon ran", "sysinfo"),
                ("after the restart", "sched_getaffinity"),
            ] {
                assert!(
                    names.contains(syscall),
                    "{syscall} ({when}) missing from {names:?}"
                );
            }
            assert!(!names.contains("pivot_root"), "runtime setup in {names:?}");
            let init_profile = api
                .wait_for(0, Duration::from_secs(5), |w| w.path == INIT_PROFILE)
                .unwrap_or_else(|| panic!("no init profile: {:#?}", second.log()));
            let init_names = allowed_names(&init_profile.body["spec"]);
            assert!(
                init_names.contains("uname"),
                "finished before the kill: {init_names:?}"
            );
            let warnings: Vec<String> = second
                .log()
                .into_iter()
                .filter(|l| l.contains("WARN"))
                .collect();
            assert!(warnings.is_empty(), "{warnings:#?}");

            // Stopped cleanly with nothing left to record: the pins go.
            let pid = second.child.id() as libc::pid_t;
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let mut second = second;
            let status = second.child.wait().unwrap();
            assert!(status.success(), "{status:?}: {:#?}", second.log());
        });
        assert!(!Path::new(&pin).exists(), "a clean stop removes the pins");
        assert_eq!(
            std::fs::read_dir(dir.join("state")).unwrap().count(),
            0,
            "the pod's kept recordings go with its profiles"
        );
        drop(init);
        drop(container);
        drop(pod_cgroup);
        drop(bpffs);
        assert_no_leftovers();
    }
}
