use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt as _;
use serde_json::json;

use super::*;
use crate::{
    k8s::{crd::ProfileRecording, publish::merged_selinux},
    profile::validate::{Severity, Validator},
};

fn index(spec: serde_json::Value, pods: &[Pod]) -> NodeIndex {
    let mut index = NodeIndex::default();
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "shop", "labels": {"spo.x-k8s.io/enable-recording": ""}}
    }))
    .unwrap();
    index.apply_namespace(&ns);
    index.apply_recording(recording(spec));
    for pod in pods {
        index.apply_pod(pod.clone());
    }
    index
}

fn recording(spec: serde_json::Value) -> ProfileRecording {
    let mut full = json!({"kind": "SelinuxProfile", "recorder": "Logs",
                          "podSelector": {"matchLabels": {"app": "web"}}});
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "ProfileRecording",
        "metadata": {"name": "rec", "namespace": "shop"}, "spec": full
    }))
    .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "generateName": "web-7d9f-", "namespace": "shop",
                     "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

fn denial(pod: &str, container: &str, tcontext: &str, tclass: &str, perms: &str) -> SelinuxDenial {
    SelinuxDenial {
        namespace: "shop".into(),
        pod: pod.into(),
        container: container.into(),
        scontext: "system_u:system_r:selinuxrecording.process:s0:c1,c2".into(),
        tcontext: tcontext.into(),
        tclass: tclass.into(),
        perms: perms.split(' ').map(str::to_owned).collect(),
    }
}

fn valid(profile: &SelinuxProfile) {
    let value = serde_yaml::to_value(profile).unwrap();
    let errors: Vec<_> = Validator::default()
        .validate(&value)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_pods_denials_become_one_profile_per_container_when_it_ends() {
    let web = pod("web-7d9f-gmbrj");
    let mut index = index(
        json!({"containers": ["app", "sidecar"]}),
        std::slice::from_ref(&web),
    );
    let mut recordings = SelinuxRecordings::default();
    let mut out = Outcome::default();
    // A denial before the pod is recorded is not anyone's.
    recordings.denial(&denial(
        "web-7d9f-gmbrj",
        "app",
        "u:object_r:etc_t:s0",
        "file",
        "read",
    ));
    recordings.sync(&index, &mut out);
    assert_eq!(recordings.active_pods().count(), 1);
    assert!(
        out.changed_recordings
            .contains(&("shop".to_owned(), "rec".to_owned()))
    );
    assert!(out.selinux_profiles.is_empty());
    for d in [
        denial(
            "web-7d9f-gmbrj",
            "app",
            "u:object_r:etc_t:s0",
            "file",
            "read open",
        ),
        denial(
            "web-7d9f-gmbrj",
            "app",
            "u:object_r:etc_t:s0",
            "file",
            "getattr",
        ),
        denial(
            "web-7d9f-gmbrj",
            "app",
            "system_u:system_r:selinuxrecording.process:s0:c1,c2",
            "tcp_socket",
            "listen",
        ),
        // Hostile: not kept, counted.
        denial(
            "web-7d9f-gmbrj",
            "app",
            "u:object_r:evil\"t:s0",
            "file",
            "read",
        ),
        denial(
            "web-7d9f-gmbrj",
            "init",
            "u:object_r:etc_t:s0",
            "file",
            "write",
        ),
        denial("other-pod", "app", "u:object_r:etc_t:s0", "file", "write"),
    ] {
        recordings.denial(&d);
    }
    assert_eq!(
        recordings.counts,
        Counts {
            recorded: 4,
            not_recorded: 2,
            other_container: 1
        }
    );
    // Still selected: nothing ends.
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    assert!(out.selinux_profiles.is_empty() && out.changed_recordings.is_empty());
    // The pod is gone: one profile per selected container.
    index.delete_pod(&("shop".to_owned(), web.name_any()));
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    assert_eq!(recordings.active_pods().count(), 0);
    let names: Vec<String> = out.selinux_profiles.iter().map(|p| p.name_any()).collect();
    assert_eq!(
        names,
        ["rec-app-gmbrj", "rec-sidecar-gmbrj"],
        "seccomp's naming"
    );
    let app = &out.selinux_profiles[0];
    assert_eq!(
        serde_json::to_value(&app.spec.allow).unwrap(),
        json!({"@self": {"tcp_socket": ["listen"]}, "etc_t": {"file": ["getattr", "open", "read"]}})
    );
    assert_eq!(app.spec.inherit, default_inherit());
    assert_eq!(app.spec.state, None);
    let labels = app.labels();
    assert_eq!(labels["spo.x-k8s.io/recording-id"], "rec");
    assert_eq!(labels["spo.x-k8s.io/recording-namespace"], "shop");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "app");
    assert!(!labels.contains_key("spo.x-k8s.io/partial"));
    assert_eq!(app.annotations()[ANNOTATION_DENIALS], "4");
    assert_eq!(app.annotations()[ANNOTATION_DROPPED_DENIALS], "1");
    assert_eq!(app.annotations()[ANNOTATION_POD_UID], "uid-web-7d9f-gmbrj");
    // Never denied anything: the template alone.
    let sidecar = &out.selinux_profiles[1];
    assert!(sidecar.spec.allow.is_empty());
    assert_eq!(sidecar.annotations()[ANNOTATION_DENIALS], "0");
    for profile in &out.selinux_profiles {
        valid(profile);
    }
}

#[test]
fn replicas_are_partial_and_merge_into_one_profile() {
    let (one, two) = (pod("web-7d9f-aaaaa"), pod("web-7d9f-bbbbb"));
    let spec = json!({"mergeStrategy": "Containers", "containers": ["app"],
                      "disableProfileAfterRecording": true});
    let mut index = index(spec.clone(), &[one.clone(), two.clone()]);
    let mut recordings = SelinuxRecordings::default();
    recordings.sync(&index, &mut Outcome::default());
    recordings.denial(&denial(
        "web-7d9f-aaaaa",
        "app",
        "u:object_r:etc_t:s0",
        "file",
        "read",
    ));
    recordings.denial(&denial(
        "web-7d9f-bbbbb",
        "app",
        "u:object_r:etc_t:s0",
        "file",
        "open",
    ));
    recordings.denial(&denial(
        "web-7d9f-bbbbb",
        "app",
        "u:object_r:tmp_t:s0",
        "dir",
        "search",
    ));
    // One replica finishes, the other is no longer selected.
    let mut done = one.clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    index.apply_pod(done);
    let mut relabelled = two.clone();
    relabelled.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
    index.apply_pod(relabelled);
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    let names: Vec<String> = out.selinux_profiles.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["rec-app-aaaaa", "rec-app-bbbbb"]);
    for partial in &out.selinux_profiles {
        assert_eq!(partial.labels()["spo.x-k8s.io/partial"], "true");
        assert_eq!(partial.spec.state, Some(ProfileState::Disabled));
        valid(partial);
    }
    let merged = merged_selinux(&recording(spec), &out.selinux_profiles);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].name_any(), "rec-app");
    assert_eq!(
        serde_json::to_value(&merged[0].spec.allow).unwrap(),
        json!({"etc_t": {"file": ["open", "read"]}, "tmp_t": {"dir": ["search"]}})
    );
    assert!(!merged[0].labels().contains_key("spo.x-k8s.io/partial"));
    assert_eq!(merged[0].spec.state, Some(ProfileState::Disabled));
    valid(&merged[0]);
}

#[test]
fn an_invalid_recording_name_is_refused_not_published() {
    let web = pod("web-7d9f-gmbrj");
    let mut index = index(json!({}), std::slice::from_ref(&web));
    let mut bad = recording(json!({}));
    bad.metadata.name = Some("Bad_Name".into());
    index.delete_recording(&("shop".to_owned(), "rec".to_owned()));
    index.apply_recording(bad);
    let mut recordings = SelinuxRecordings::default();
    recordings.sync(&index, &mut Outcome::default());
    index.delete_pod(&("shop".to_owned(), web.name_any()));
    let mut out = Outcome::default();
    recordings.sync(&index, &mut out);
    assert!(out.selinux_profiles.is_empty());
    assert_eq!(out.refused.len(), 2, "one per container: {:?}", out.refused);
    assert!(out.refused[0].1.contains("DNS-1123"), "{:?}", out.refused);
}
