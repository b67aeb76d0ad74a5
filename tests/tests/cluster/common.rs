//! Helpers more than one module of the cluster tests uses.

use std::time::Duration;

use serde_json::Value;
use syscribe_tests::cluster::Kube;

pub const MINUTE: Duration = Duration::from_secs(60);

/// A profile that allows everything but mkdir/mkdirat (EPERM): a pod under it runs normally
/// and its `mkdir` fails, which proves the kubelet handed this very file to the runtime.
pub fn no_mkdir_profile(name: &str) -> String {
    format!(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: {name}
spec:
  defaultAction: SCMP_ACT_ALLOW
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32]
  syscalls:
  - action: SCMP_ACT_ERRNO
    errnoRet: 1
    names: [mkdir, mkdirat]
"#
    )
}

/// The label that opts a namespace in to recording.
pub const RECORDING: &str = "spo.x-k8s.io/enable-recording";
/// The label that opts a namespace in to ProfileBindings.
pub const BINDING: &str = "spo.x-k8s.io/enable-binding";

/// A Namespace, with `label: "true"` when there is one.
pub fn namespace_yaml(name: &str, label: Option<&str>) -> String {
    let labels = label
        .map(|label| format!(", labels: {{{label}: \"true\"}}"))
        .unwrap_or_default();
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}{labels}}}\n")
}

/// A namespace labelled for recording (created, or labelled when it exists).
pub fn recording_namespace(kube: &Kube, name: &str) {
    kube.apply(&namespace_yaml(name, Some(RECORDING)));
}

/// A namespace created, then labelled for recording with `kubectl label` as upstream's docs
/// have a user do it.
pub fn label_for_recording(kube: &Kube, name: &str) {
    kube.apply(&namespace_yaml(name, None));
    kube.ok(&[
        "label",
        "namespace",
        name,
        &format!("{RECORDING}=true"),
        "--overwrite",
    ]);
}

/// A ProfileRecording `name` in `namespace`: SeccompProfiles, by the BPF recorder, of the pods
/// labelled `app: <app>`.
pub fn recording_yaml(namespace: &str, name: &str, app: &str) -> String {
    format!(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  kind: SeccompProfile
  recorder: Bpf
  podSelector: {{matchLabels: {{app: {app}}}}}
"#
    )
}

/// The SeccompProfile `name`, once it exists.
pub fn seccomp_profile(kube: &Kube, name: &str) -> Option<Value> {
    kube.object("seccompprofile", name)
}

/// Every name a profile's rules allow (the recorded profiles' one ALLOW rule, or all rules).
pub fn allowed_names(spec: &Value) -> Vec<String> {
    spec["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|rule| rule["names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// The installed file of a profile, parsed; None while there is none.
pub fn installed_file(name: &str) -> Option<Value> {
    let text = std::fs::read(format!("/var/lib/kubelet/seccomp/operator/{name}.json")).ok()?;
    serde_json::from_slice(&text).ok()
}
