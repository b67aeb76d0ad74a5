use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use http::Method;
use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::ResourceExt as _;
use serde_json::{Value, json};

use super::*;
use crate::{
    k8s::{
        crd::{
            FINALIZER_BOUND, LABEL_NODE_NAME, LABEL_PARTIAL, LABEL_PROFILE_STATE, ProfileStatus,
            ProfileStatusKind, SeccompProfile,
        },
        node_status::summary,
        testing::{expect, mock, scenario},
    },
    profile::{merge::resolve_bases, seccomp::Seccomp, validate::Validator},
};

const SP: &str = "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles";
const SPNS: &str = "/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses";

fn profile(name: &str, extra_spec: Value, meta: Value) -> SeccompProfile {
    let mut spec = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["read", "write"]}]});
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut metadata = json!({"name": name, "uid": format!("uid-{name}"), "generation": 1});
    for (k, v) in meta.as_object().unwrap() {
        metadata[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
        "metadata": metadata, "spec": spec,
    }))
    .unwrap()
}

fn pod_using(profile_file: &str, phase: &str, container_level: bool) -> Pod {
    let sc = json!({"seccompProfile": {"type": "Localhost", "localhostProfile": profile_file}});
    let (pod_sc, container_sc) = if container_level {
        (json!({}), sc)
    } else {
        (sc, json!({}))
    };
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"securityContext": pod_sc,
                 "containers": [{"name": "app", "image": "x", "securityContext": container_sc}]},
        "status": {"phase": phase},
    }))
    .unwrap()
}

fn profile_reply() -> Value {
    serde_json::to_value(profile("p", json!({}), json!({}))).unwrap()
}

fn profiles(list: Vec<SeccompProfile>) -> BTreeMap<String, SeccompProfile> {
    list.into_iter().map(|p| (p.name_any(), p)).collect()
}

fn temp_kubelet(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("syscribe-kubelet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn names_that_could_leave_the_directory_are_refused() {
    let installer = Installer::new(Path::new("/var/lib/kubelet"));
    assert_eq!(
        installer.path_of("web-app.v2").unwrap(),
        Path::new("/var/lib/kubelet/seccomp/operator/web-app.v2.json")
    );
    let long = "a".repeat(251);
    for bad in [
        "../etc/passwd",
        "a/b",
        ".hidden",
        "..",
        "Upper",
        "",
        "-x",
        long.as_str(),
    ] {
        let err = installer.path_of(bad).unwrap_err().to_string();
        assert!(
            err.contains("cannot be a profile file name"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_linked_operator_directory_is_never_written_or_removed_through() {
    let kubelet = temp_kubelet("linked");
    let elsewhere = temp_kubelet("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("p.json"), "precious").unwrap();
    std::fs::create_dir_all(kubelet.join("seccomp")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, kubelet.join("seccomp/operator")).unwrap();
    let installer = Installer::new(&kubelet);
    let seccomp = profile("p", json!({}), json!({})).spec.to_seccomp();
    let err = installer.install("p", &seccomp).unwrap_err().to_string();
    assert!(err.contains("is a symbolic link, not a directory"), "{err}");
    let err = installer.remove("p").unwrap_err().to_string();
    assert!(err.contains("is a symbolic link, not a directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("p.json")).unwrap(),
        "precious"
    );
    // The same with the link one level up.
    std::fs::remove_file(kubelet.join("seccomp/operator")).unwrap();
    std::fs::remove_dir(kubelet.join("seccomp")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, kubelet.join("seccomp")).unwrap();
    assert!(installer.install("p", &seccomp).is_err());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    std::fs::remove_dir_all(&kubelet).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
}

#[test]
fn a_kill_written_by_the_user_is_never_weakened_by_a_base() {
    let base = profile(
        "base",
        json!({"syscalls": [{"action": "SCMP_ACT_LOG", "names": ["mkdir", "read"]}]}),
        json!({}),
    );
    let web = profile(
        "web",
        json!({"baseProfileName": "base",
               "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["write"]},
                            {"action": "SCMP_ACT_KILL", "names": ["mkdir"]}]}),
        json!({}),
    );
    let (joined, conflicts) = resolve_bases("web", &profiles(vec![base, web]), "test").unwrap();
    let verdict_of = |name: &str| {
        joined
            .syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == name))
            .map(|r| r.action)
            .collect::<Vec<_>>()
    };
    use crate::profile::seccomp::Action;
    assert_eq!(verdict_of("mkdir"), [Action::Kill]);
    assert_eq!(verdict_of("read"), [Action::Log]);
    assert_eq!(verdict_of("write"), [Action::Allow]);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0].to_string(),
        "syscall \"mkdir\" is in web's syscalls[1] (SCMP_ACT_KILL) and in base's syscalls[0] \
         (SCMP_ACT_LOG); SCMP_ACT_KILL applies (the more restrictive, or the first of two equals)"
    );
}

#[test]
fn deep_chains_and_long_lists_join_in_linear_time() {
    // 3000 bases deep, and a profile of 60,000 names over a base of the same names:
    // quadratic joins took tens of seconds; these take a fraction of one.
    let mut chain = Vec::new();
    for i in 0..3000 {
        let base = if i + 1 < 3000 {
            json!(format!("p{}", i + 1))
        } else {
            Value::Null
        };
        chain.push(profile(
            &format!("p{i}"),
            json!({"baseProfileName": base,
                   "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": [format!("n{i}"), "read"]}]}),
            json!({}),
        ));
    }
    let started = std::time::Instant::now();
    let (joined, conflicts) = resolve_bases("p0", &profiles(chain), "test").unwrap();
    assert!(conflicts.is_empty());
    assert_eq!(joined.syscalls.len(), 1);
    assert_eq!(joined.syscalls[0].names.len(), 3001);
    let names: Vec<String> = (0..60_000).map(|i| format!("s{i}")).collect();
    let big = |name: &str, base: Value| {
        profile(
            name,
            json!({"baseProfileName": base,
                   "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]}),
            json!({}),
        )
    };
    let (joined, _) = resolve_bases(
        "big",
        &profiles(vec![
            big("big", json!("bigbase")),
            big("bigbase", Value::Null),
        ]),
        "test",
    )
    .unwrap();
    assert_eq!(joined.syscalls[0].names.len(), 60_000);
    eprintln!(
        "joined 3000 bases and 2 x 60,000 names in {:?}",
        started.elapsed()
    );
}

#[test]
fn installs_atomically_once_and_removes() {
    let kubelet = temp_kubelet("files");
    let installer = Installer::new(&kubelet);
    let seccomp = profile("p", json!({}), json!({})).spec.to_seccomp();
    assert!(installer.install("p", &seccomp).unwrap(), "written");
    assert!(!installer.install("p", &seccomp).unwrap(), "unchanged");
    let path = kubelet.join("seccomp/operator/p.json");
    let back: Seccomp = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, seccomp);
    // No temporary file is left behind.
    let entries: Vec<_> = std::fs::read_dir(installer.dir()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert!(installer.remove("p").unwrap());
    assert!(!installer.remove("p").unwrap());
    assert!(!path.exists());
    std::fs::remove_dir_all(&kubelet).unwrap();
}

#[test]
fn running_pods_that_name_the_file_use_it() {
    let file = "operator/p.json";
    assert_eq!(
        users("p", [&pod_using(file, "Running", false)]),
        ["shop/web"]
    );
    assert_eq!(
        users("p", [&pod_using(file, "Pending", true)]),
        ["shop/web"]
    );
    assert!(users("p", [&pod_using(file, "Succeeded", true)]).is_empty());
    assert!(users("p", [&pod_using("operator/other.json", "Running", true)]).is_empty());
    assert!(users("p", [&pod_using("p.json", "Running", true)]).is_empty());
}

#[test]
fn plans() {
    let mut validator = Validator::default();
    let base = profile(
        "base",
        json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["futex", "read"]}]}),
        json!({}),
    );
    let app = profile("app", json!({"baseProfileName": "base"}), json!({}));
    let all = profiles(vec![base, app]);
    let Plan::Install(merged) = plan("app", &all, [], &mut validator) else {
        panic!("app installs");
    };
    assert_eq!(merged.syscalls.len(), 1, "{merged:?}");
    assert_eq!(
        merged.syscalls[0].names,
        ["futex", "read", "write"],
        "base names first, each once"
    );

    let orphan = profiles(vec![profile(
        "app",
        json!({"baseProfileName": "nope"}),
        json!({}),
    )]);
    assert_eq!(
        plan("app", &orphan, [], &mut validator),
        Plan::Refuse("no SeccompProfile named nope in the cluster".into())
    );
    let typo = profiles(vec![profile(
        "t",
        json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["raed"]}]}),
        json!({}),
    )]);
    let Plan::Refuse(reason) = plan("t", &typo, [], &mut validator) else {
        panic!("invalid profiles are refused");
    };
    assert!(
        reason.contains("syscalls[0].names[0]: unknown syscall \"raed\"")
            && reason.contains("did you mean \"read\""),
        "{reason}"
    );
    let partial = profiles(vec![profile(
        "r",
        json!({}),
        json!({"labels": {LABEL_PARTIAL: "true"}}),
    )]);
    assert_eq!(plan("r", &partial, [], &mut validator), Plan::Skip);
    let disabled = profiles(vec![profile("p", json!({"state": "Disabled"}), json!({}))]);
    let user = pod_using("operator/p.json", "Running", false);
    assert_eq!(
        plan("p", &disabled, [&user], &mut validator),
        Plan::Hold {
            users: vec!["shop/web".into()]
        }
    );
    assert_eq!(
        plan("p", &disabled, [], &mut validator),
        Plan::Remove { deleted: false }
    );
    let deleted = profiles(vec![profile(
        "p",
        json!({}),
        json!({"deletionTimestamp": "2026-11-26T20:00:00Z"}),
    )]);
    assert_eq!(
        plan("p", &deleted, [], &mut validator),
        Plan::Remove { deleted: true }
    );
    // Still named by a ProfileBinding: the file stays for the binding's next pods.
    let bound = profiles(vec![profile(
        "p",
        json!({}),
        json!({"deletionTimestamp": "2026-11-26T20:00:00Z", "finalizers": [FINALIZER_BOUND]}),
    )]);
    assert_eq!(
        plan("p", &bound, [], &mut validator),
        Plan::Hold {
            users: vec!["a ProfileBinding (finalizer syscribe.dev/bound)".into()]
        }
    );
}

#[test]
fn long_names_are_shortened_with_a_hash() {
    let node = "ip-10-0-0-1.eu-west-1.compute.internal.example-corporation-cluster-7";
    let finalizer = node_finalizer(node);
    let (prefix, name) = finalizer.split_once('/').unwrap();
    assert_eq!(prefix, "syscribe.dev");
    assert!(
        name.len() <= 63 && name.starts_with("installed-ip-10-0-0-1"),
        "{name}"
    );
    assert_ne!(node_finalizer(node), node_finalizer(&format!("{node}x")));
    let id = profile_id("test-recording-nginx-deployment-web-server-7d9f8c6b5-gmbrj");
    assert!(
        id.len() <= 63 && id.ends_with(|c: char| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(profile_id("p"), "SeccompProfile-p");
    assert_eq!(node_finalizer("node1"), "syscribe.dev/installed-node1");
    assert!(node_status_name(&"p".repeat(250), node).len() <= 253);
}

#[test]
fn summaries() {
    use ProfileStatusKind::*;
    assert_eq!(summary(&[]), None);
    assert_eq!(summary(&[Installed, Installed]), Some(Installed));
    assert_eq!(summary(&[Installed, Pending]), Some(Pending));
    assert_eq!(summary(&[Terminating, Pending]), Some(Terminating));
    assert_eq!(summary(&[Installed, Error, Terminating]), Some(Error));
    assert_eq!(summary(&[Disabled, Disabled]), Some(Disabled));
    assert_eq!(summary(&[Disabled, Installed]), Some(Installed));
}

fn node_list(statuses: &[&str]) -> Value {
    json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SecurityProfileNodeStatusList",
           "metadata": {}, "items": statuses.iter().enumerate().map(|(i, s)| json!({
               "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SecurityProfileNodeStatus",
               "metadata": {"name": format!("p-node{i}")}, "nodeName": format!("node{i}"),
               "status": s})).collect::<Vec<_>>()})
}

/// This node's status write: one apply of the object (upstream's shape: state at the top
/// level, no status subresource), then the list of all nodes' statuses; returns the body.
async fn node_status(handle: &mut crate::k8s::testing::Handle, others: &[&str]) -> Value {
    let reply = json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SecurityProfileNodeStatus", "metadata": {"name": "p-node1"},
        "nodeName": "node1"});
    let uri = format!("{SPNS}/p-node1?&force=true&fieldManager=syscribe");
    let object = expect(handle, Method::PATCH, &uri, reply).await;
    let state = object["status"].as_str().unwrap().to_owned();
    let mut all: Vec<&str> = others.to_vec();
    all.push(&state);
    let selector = "spo.x-k8s.io%2Fprofile-id%3DSeccompProfile-p";
    expect(
        handle,
        Method::GET,
        &format!("{SPNS}?&labelSelector={selector}"),
        node_list(&all),
    )
    .await;
    object
}

#[tokio::test]
async fn a_new_profile_goes_pending_then_installed() {
    let kubelet = temp_kubelet("new");
    let (client, mut handle) = mock();
    let mut node = NodeProfiles::new(
        "node1".into(),
        Installer::new(&kubelet),
        Validator::default(),
    );
    node.profiles = profiles(vec![profile("p", json!({}), json!({}))]);
    let server = async move {
        let finalizer = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p?&fieldManager=syscribe-node1"),
            profile_reply(),
        )
        .await;
        assert_eq!(
            finalizer["metadata"]["finalizers"],
            json!(["syscribe.dev/installed-node1"])
        );
        let object = node_status(&mut handle, &[]).await;
        assert_eq!(object["metadata"]["labels"][LABEL_PROFILE_STATE], "Pending");
        assert_eq!(object["metadata"]["labels"][LABEL_NODE_NAME], "node1");
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-p");
        assert_eq!(object["nodeName"], "node1");
        assert_eq!(object["status"], "Pending");
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Pending");
        assert_eq!(summary["status"]["path"], Value::Null);
        let status = node_status(&mut handle, &["Installed"]).await;
        assert_eq!(status["status"], "Installed");
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Installed");
        assert_eq!(summary["status"]["localhostProfile"], "operator/p.json");
        assert!(
            summary["status"]["path"]
                .as_str()
                .unwrap()
                .ends_with("seccomp/operator/p.json")
        );
        assert_eq!(summary["status"]["conditions"][0]["status"], "True");
    };
    scenario(node.reconcile(&client, "p", []), server)
        .await
        .unwrap();
    let file = kubelet.join("seccomp/operator/p.json");
    let installed: Seccomp = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(installed.syscalls[0].names, ["read", "write"]);
    // The watcher brings our own writes back: nothing is written again.
    let mut p = profile(
        "p",
        json!({}),
        json!({"finalizers": ["syscribe.dev/installed-node1"]}),
    );
    p.status = Some(ProfileStatus {
        status: Some(ProfileStatusKind::Installed),
        ..ProfileStatus::default()
    });
    node.profiles = profiles(vec![p]);
    let (client, _handle) = mock();
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        node.reconcile(&client, "p", []),
    )
    .await
    .expect("no API request")
    .unwrap();
    std::fs::remove_dir_all(&kubelet).unwrap();
}

#[tokio::test]
async fn an_invalid_profile_is_an_error_and_never_written() {
    let kubelet = temp_kubelet("invalid");
    let (client, mut handle) = mock();
    let mut node = NodeProfiles::new(
        "node1".into(),
        Installer::new(&kubelet),
        Validator::default(),
    );
    node.profiles = profiles(vec![profile(
        "p",
        json!({"syscalls": [{"action": "SCMP_ACT_ALLOW", "names": ["opne"]}]}),
        json!({"finalizers": ["syscribe.dev/installed-node1"]}),
    )]);
    let server = async move {
        let object = node_status(&mut handle, &["Installed"]).await;
        assert_eq!(object["metadata"]["labels"][LABEL_PROFILE_STATE], "Error");
        let message = object["message"].as_str().unwrap();
        assert!(
            message.contains("syscalls[0].names[0]: unknown syscall \"opne\""),
            "{message}"
        );
        assert!(message.contains("did you mean \"open\""), "{message}");
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Error");
        assert_eq!(summary["status"]["conditions"][0]["status"], "False");
        assert!(
            summary["status"]["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("opne")
        );
    };
    scenario(node.reconcile(&client, "p", []), server)
        .await
        .unwrap();
    assert!(!kubelet.join("seccomp/operator/p.json").exists());
    let _ = std::fs::remove_dir_all(&kubelet);
}

#[tokio::test]
async fn a_deleted_profile_in_use_stays_terminating_until_its_pod_is_gone() {
    let kubelet = temp_kubelet("deleted");
    let installer = Installer::new(&kubelet);
    let p = profile(
        "p",
        json!({}),
        json!({"finalizers": ["syscribe.dev/installed-node1"], "deletionTimestamp": "2026-11-26T20:00:00Z"}),
    );
    installer.install("p", &p.spec.to_seccomp()).unwrap();
    let mut node = NodeProfiles::new("node1".into(), installer, Validator::default());
    node.profiles = profiles(vec![p]);
    let user = pod_using("operator/p.json", "Running", true);
    let (client, mut handle) = mock();
    let server = async move {
        let object = node_status(&mut handle, &[]).await;
        assert_eq!(
            object["metadata"]["labels"][LABEL_PROFILE_STATE],
            "Terminating"
        );
        assert_eq!(object["message"], "still used by shop/web");
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Terminating");
    };
    scenario(node.reconcile(&client, "p", [&user]), server)
        .await
        .unwrap();
    let file = kubelet.join("seccomp/operator/p.json");
    assert!(file.exists(), "kept while used");
    assert_eq!(node.held(), ["p"]);
    // The pod is gone: the file goes, then this node's finalizer.
    let (client, mut handle) = mock();
    let server = async move {
        let body = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p?&fieldManager=syscribe-node1"),
            profile_reply(),
        )
        .await;
        assert_eq!(body["metadata"]["finalizers"], json!([]));
    };
    scenario(node.reconcile(&client, "p", []), server)
        .await
        .unwrap();
    assert!(!file.exists());
    assert!(node.held().is_empty());
    std::fs::remove_dir_all(&kubelet).unwrap();
}

#[tokio::test]
async fn a_disabled_profile_is_removed_and_says_so() {
    let kubelet = temp_kubelet("disabled");
    let installer = Installer::new(&kubelet);
    let p = profile(
        "p",
        json!({"state": "Disabled"}),
        json!({"finalizers": ["syscribe.dev/installed-node1"]}),
    );
    installer.install("p", &p.spec.to_seccomp()).unwrap();
    let mut node = NodeProfiles::new("node1".into(), installer, Validator::default());
    node.profiles = profiles(vec![p]);
    let (client, mut handle) = mock();
    let server = async move {
        let status = node_status(&mut handle, &["Disabled"]).await;
        assert_eq!(status["status"], "Disabled");
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Disabled");
        assert_eq!(summary["status"]["localhostProfile"], Value::Null);
    };
    scenario(node.reconcile(&client, "p", []), server)
        .await
        .unwrap();
    assert!(!kubelet.join("seccomp/operator/p.json").exists());
    std::fs::remove_dir_all(&kubelet).unwrap();
}

#[test]
fn a_base_change_reaches_every_profile_built_on_it() {
    let mut node = NodeProfiles::new(
        "n".into(),
        Installer::new(Path::new("/nonexistent")),
        Validator::default(),
    );
    node.profiles = profiles(vec![
        profile("base", json!({}), json!({})),
        profile("mid", json!({"baseProfileName": "base"}), json!({})),
        profile("top", json!({"baseProfileName": "mid"}), json!({})),
        profile("other", json!({}), json!({})),
    ]);
    assert_eq!(node.affected("base"), ["base", "mid", "top"]);
    assert_eq!(node.affected("other"), ["other"]);
}

#[tokio::test]
async fn a_pending_summary_is_made_again_once_the_other_nodes_settle() {
    let kubelet = temp_kubelet("recheck");
    let (client, mut handle) = mock();
    let mut node = NodeProfiles::new(
        "node1".into(),
        Installer::new(&kubelet),
        Validator::default(),
    );
    let p = profile(
        "p",
        json!({}),
        json!({"finalizers": ["syscribe.dev/installed-node1"]}),
    );
    node.installer.install("p", &p.spec.to_seccomp()).unwrap();
    node.profiles = profiles(vec![p]);
    let server = async move {
        // node0 has not installed it yet when node1 lists: Pending.
        node_status(&mut handle, &["Pending"]).await;
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Pending");
        // Later node1 looks again: both installed, and it says so.
        let selector = "spo.x-k8s.io%2Fprofile-id%3DSeccompProfile-p";
        let uri = format!("{SPNS}?&labelSelector={selector}");
        expect(
            &mut handle,
            Method::GET,
            &uri,
            node_list(&["Installed", "Installed"]),
        )
        .await;
        let summary = expect(
            &mut handle,
            Method::PATCH,
            &format!("{SP}/p/status?"),
            profile_reply(),
        )
        .await;
        assert_eq!(summary["status"]["status"], "Installed");
        // And once more after its own write: the same, so nothing is written.
        expect(
            &mut handle,
            Method::GET,
            &uri,
            node_list(&["Installed", "Installed"]),
        )
        .await;
    };
    let client_side = async {
        node.reconcile(&client, "p", []).await.unwrap();
        node.recheck_due(&client).await.unwrap();
        assert_eq!(node.recheck.len(), 1, "not due yet: nothing asked");
        node.expire_rechecks();
        node.recheck_due(&client).await.unwrap();
        assert_eq!(
            node.recheck.len(),
            1,
            "a written summary is looked at again"
        );
        // The watch brings the written status back.
        let written = node.profiles.get_mut("p").unwrap();
        written.status = Some(ProfileStatus {
            status: Some(ProfileStatusKind::Installed),
            path: Some(node.installer.dir().join("p.json").display().to_string()),
            localhost_profile: Some("operator/p.json".into()),
            nodes: Some("2/2".into()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Installed".into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
            }],
            ..ProfileStatus::default()
        });
        node.expire_rechecks();
        node.recheck_due(&client).await.unwrap();
        assert!(node.recheck.is_empty(), "settled");
    };
    scenario(client_side, server).await;
    std::fs::remove_dir_all(&kubelet).unwrap();
}
