//! SelinuxProfile recording on live records, through the code the daemon runs: real processes
//! placed in real cgroups laid out as the kubelet's (cgroupfs driver:
//! `/kubepods/besteffort/pod<uid>/<64-hex id>`, here in the cgroup2 hierarchy at
//! /sys/fs/cgroup/unified), named through the pod index as the daemon names them
//! (`container_ids` → KnownNames); real-format AVC and SYSCALL lines naming their real pids go
//! through the enricher's pipeline and its tap into `SelinuxRecordings`; the pods' end gives
//! the SelinuxProfile objects, and the two replicas' partial profiles merge into one. SELinux
//! is not enabled on these machines, so the kernel itself never writes an AVC: the lines are
//! the kernel's format, the processes and cgroups are real. Needs root (cgroups): fails without.

use std::{
    path::PathBuf,
    process::{Child, Command},
};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt as _;
use serde_json::{Map, Value, json};
use syscribe::{
    audit::{
        enrich::Enriched,
        pipeline::{Options, Pipeline, Sink},
        tap::AvcTap,
    },
    k8s::{
        crd::ProfileRecording,
        index::{NodeIndex, container_ids},
        publish::merged_selinux,
        recordings::Outcome,
        selinux_recordings::SelinuxRecordings,
    },
    profile::validate::{Severity, Validator},
    resolve::{
        process::ProcResolver,
        runtime::{KnownNames, PodNames, RuntimeNames},
    },
};
use syscribe_tests::{containers::PodCgroup, *};

/// A process in a container cgroup of a pod's cgroup; killed and its cgroup removed on drop.
struct Contained {
    child: Child,
    dir: PathBuf,
    id: String,
}

impl Contained {
    fn start(pod: &PodCgroup, n: u32) -> Self {
        let id = format!("{:032x}{:032x}", std::process::id(), 0x5e1_0000 + n);
        let dir = pod.unified_dir().join(&id);
        std::fs::create_dir(&dir).expect("create the container's cgroup");
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string())
            .expect("move the process into the container's cgroup");
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(
            cgroup.contains(&format!("0::{}/{id}", pod.path())),
            "{cgroup}"
        );
        Self { child, dir, id }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Contained {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The enricher's printed lines.
#[derive(Default)]
struct Printed(Vec<Value>);

impl Sink for Printed {
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()> {
        let mut json = Vec::new();
        line.write_json(&mut json);
        self.0.push(serde_json::from_slice(&json).unwrap());
        Ok(())
    }
    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()> {
        self.0.push(Value::Object(line.clone()));
        Ok(())
    }
}

fn pod_object(pod: &PodCgroup, name: &str, container_id: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "generateName": "web-7d9f-", "namespace": "shop",
                     "uid": pod.uid, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running", "qosClass": "BestEffort",
            "containerStatuses": [{"name": "app", "containerID": format!("containerd://{container_id}"),
                "image": "busybox", "imageID": "", "ready": true, "restartCount": 0}]}
    }))
    .unwrap()
}

const SOURCE: &str = "system_u:system_r:selinuxrecording.process:s0:c1,c2";

/// One audit event: its AVC (as auditd writes it) and its SYSCALL record.
fn event(
    serial: u32,
    pid: u32,
    perms: &str,
    comm: &str,
    tcontext: &str,
    tclass: &str,
) -> [String; 2] {
    // Written now, after the process started (an earlier record would be another process's
    // that had the pid before).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let at = format!("{}.{:03}:{serial}", now.as_secs(), now.subsec_millis());
    [
        format!(
            r#"type=AVC msg=audit({at}): avc:  denied  {{ {perms} }} for  pid={pid} comm={comm} name="my file" dev="vda1" ino=4242 scontext={SOURCE} tcontext={tcontext} tclass={tclass} permissive=1"#
        ),
        format!(
            r#"type=SYSCALL msg=audit({at}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd0 a2=0 a3=0 items=1 ppid=1 pid={pid} auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm={comm} exe="/usr/bin/sleep" subj={SOURCE} key=(null)"#
        ),
    ]
}

#[test]
fn avcs_of_two_replicas_become_their_profiles_and_merge_into_one() {
    require_root();
    let (pod_a, pod_b) = (PodCgroup::new(), PodCgroup::new());
    let (a, b) = (Contained::start(&pod_a, 1), Contained::start(&pod_b, 2));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let pods = [
        pod_object(&pod_a, "web-7d9f-aaaaa", &a.id),
        pod_object(&pod_b, "web-7d9f-bbbbb", &b.id),
    ];

    // The daemon's view: the namespace enabled, the recording, the pods — and the names of
    // their containers, as its pod watch fills them in.
    let mut index = NodeIndex::default();
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "shop", "labels": {"spo.x-k8s.io/enable-recording": "true"}}
    }))
    .unwrap();
    index.apply_namespace(&namespace);
    let recording: ProfileRecording = serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
        "metadata": {"name": "test-selinux-recording", "namespace": "shop"},
        "spec": {"kind": "SelinuxProfile", "recorder": "Logs", "mergeStrategy": "Containers",
                 "podSelector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    index.apply_recording(recording.clone());
    let known = KnownNames::default();
    for pod in &pods {
        for (id, container) in container_ids(pod) {
            known.write().unwrap().insert(
                id,
                PodNames {
                    namespace: pod.namespace(),
                    pod: Some(pod.name_any()),
                    container: Some(container),
                },
            );
        }
        index.apply_pod(pod.clone());
    }
    let mut recordings = SelinuxRecordings::default();
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    assert_eq!(
        recordings.active_pods().count(),
        2,
        "both replicas recorded"
    );

    // The enricher as the daemon runs it (live /proc, the cgroup2 mount, the daemon's names).
    let (tap, mut denials) = AvcTap::channel(AvcTap::CAPACITY);
    let mut pipeline = Pipeline::new(
        Options {
            node: Some("node1".into()),
            filters: Vec::new(),
            aggregate: None,
            metrics: None,
            per_source_rate: 0,
            per_source_burst: 1,
            avc_tap: Some(tap),
        },
        ProcResolver::new("/proc".into(), "/sys/fs/cgroup/unified".into(), None),
        RuntimeNames::default().with_known(known),
    );
    let (pa, pb) = (a.pid(), b.pid());
    let me = std::process::id();
    let events = [
        event(
            101,
            pa,
            "read",
            r#""app""#,
            "system_u:object_r:etc_t:s0",
            "file",
        ),
        // auditd writes a command with a space in hex.
        event(
            102,
            pa,
            "open",
            "6D7920617070",
            "system_u:object_r:etc_t:s0",
            "file",
        ),
        event(103, pa, "listen", r#""app""#, SOURCE, "tcp_socket"),
        event(
            104,
            pb,
            "getattr",
            r#""app""#,
            "system_u:object_r:etc_t:s0",
            "file",
        ),
        event(
            105,
            pb,
            "search",
            r#""app""#,
            "system_u:object_r:var_log_t:s0",
            "dir",
        ),
        // Hostile: a target type no profile can hold is counted, not kept.
        event(
            106,
            pb,
            "read",
            r#""app""#,
            "system_u:object_r:evil)(allow:s0",
            "file",
        ),
        // A process of no pod: printed, not recorded.
        event(
            107,
            me,
            "write",
            r#""test""#,
            "system_u:object_r:etc_t:s0",
            "file",
        ),
    ];
    let mut printed = Printed::default();
    for line in events.iter().flatten() {
        pipeline.line(line, &mut printed).unwrap();
    }
    pipeline.finish(&mut printed).unwrap();
    assert_eq!(printed.0.len(), 7, "{:#?}", printed.0);
    assert_eq!(
        pipeline.counts.grouped, 7,
        "each AVC completed by its SYSCALL"
    );
    let first = &printed.0[0];
    assert_eq!(first["namespace"], "shop", "{first}");
    assert_eq!(first["pod"], "web-7d9f-aaaaa");
    assert_eq!(first["container"], "app");
    assert_eq!(first["containerID"], a.id.as_str());
    assert_eq!(first["podUID"], pod_a.uid.as_str());
    assert_eq!(first["executable"], "/usr/bin/sleep");
    assert_eq!(first["syscallName"], "openat");
    assert!(printed.0[6].get("pod").is_none(), "{}", printed.0[6]);

    // The daemon's loop: each denial from the tap into the recordings.
    let mut handed = 0;
    while let Ok(denial) = denials.try_recv() {
        recordings.denial(&denial);
        handed += 1;
    }
    assert_eq!(handed, 6, "the pods' AVCs, not the host process's");
    assert_eq!(pipeline.avc_tap_dropped(), 0);
    assert_eq!(recordings.counts.recorded, 6);

    // The pods end: one partial profile per replica.
    for pod in &pods {
        index.delete_pod(&("shop".to_owned(), pod.name_any()));
    }
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    assert_eq!(recordings.active_pods().count(), 0);
    assert!(out.refused.is_empty(), "{:?}", out.refused);
    let partials = &out.selinux_profiles;
    let names: Vec<String> = partials.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        names,
        [
            "test-selinux-recording-app-aaaaa",
            "test-selinux-recording-app-bbbbb"
        ]
    );
    let allow = |i: usize| serde_json::to_value(&partials[i].spec.allow).unwrap();
    assert_eq!(
        allow(0),
        json!({"@self": {"tcp_socket": ["listen"]}, "etc_t": {"file": ["open", "read"]}})
    );
    assert_eq!(
        allow(1),
        json!({"etc_t": {"file": ["getattr"]}, "var_log_t": {"dir": ["search"]}})
    );
    for (partial, (denied, dropped)) in partials.iter().zip([("3", "0"), ("3", "1")]) {
        let labels = partial.labels();
        assert_eq!(
            labels["spo.x-k8s.io/recording-id"],
            "test-selinux-recording"
        );
        assert_eq!(labels["spo.x-k8s.io/recording-namespace"], "shop");
        assert_eq!(labels["spo.x-k8s.io/container-id"], "app");
        assert_eq!(labels["spo.x-k8s.io/partial"], "true");
        assert_eq!(
            partial.annotations()["syscribe.dev/recorded-denials"],
            denied
        );
        assert_eq!(
            partial.annotations()["syscribe.dev/dropped-denials"],
            dropped
        );
    }

    // The recording is deleted: the replicas' profiles merge into one.
    let merged = merged_selinux(&recording, partials);
    assert_eq!(merged.len(), 1);
    let merged = &merged[0];
    assert_eq!(merged.name_any(), "test-selinux-recording-app");
    assert!(!merged.labels().contains_key("spo.x-k8s.io/partial"));
    let json = serde_json::to_value(merged).unwrap();
    assert_eq!(json["apiVersion"], "security-profiles-operator.x-k8s.io/v1");
    assert_eq!(json["kind"], "SelinuxProfile");
    assert_eq!(
        json["spec"],
        json!({
            "inherit": [{"kind": "System", "name": "container"}],
            "allow": {
                "@self": {"tcp_socket": ["listen"]},
                "etc_t": {"file": ["getattr", "open", "read"]},
                "var_log_t": {"dir": ["search"]},
            }
        })
    );
    // Every profile produced is one `syscribe validate` accepts.
    let mut validator = Validator::default();
    for profile in partials.iter().chain([merged]) {
        let problems = validator.validate(&serde_yaml::to_value(profile).unwrap());
        let errors: Vec<_> = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", profile.name_any());
    }
    drop((a, b));
}
