use super::*;
use crate::profile::seccomp::CompareOp;

#[test]
fn older_upstream_versions_are_served_and_v1_is_stored() {
    let crds: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&crds_yaml())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let versions = |kind: &str| -> Vec<(String, bool, bool)> {
        crds.iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap()
            .spec
            .versions
            .iter()
            .map(|v| (v.name.clone(), v.served, v.storage))
            .collect()
    };
    let v = |name: &str, storage: bool| (name.to_owned(), true, storage);
    // Upstream's examples say v1alpha2 for both SELinux kinds.
    for kind in ["SelinuxProfile", "RawSelinuxProfile"] {
        assert_eq!(
            versions(kind),
            [v("v1", true), v("v1alpha2", false)],
            "{kind}"
        );
    }
    assert_eq!(
        versions("SeccompProfile"),
        [v("v1", true), v("v1beta1", false), v("v1alpha1", false)]
    );
    assert_eq!(versions("ProfileRecording"), [v("v1", true)]);
    assert_eq!(
        versions("ProfileBinding"),
        [v("v1", true), v("v1alpha1", false)]
    );
    // The same schema: the API server converts by renaming the version.
    let crd = crds
        .iter()
        .find(|c| c.spec.names.kind == "SelinuxProfile")
        .unwrap();
    assert_eq!(crd.spec.versions[0].schema, crd.spec.versions[1].schema);
}

#[test]
fn upstream_manifests_deserialize() {
    let recording: ProfileRecording = serde_yaml::from_str(
        r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {name: test-recording, namespace: shop}
spec:
  kind: SeccompProfile
  recorder: Bpf
  podSelector: {matchLabels: {app: alpine}}
"#,
    )
    .unwrap();
    assert_eq!(recording.spec.merge_strategy, MergeStrategy::None);
    assert_eq!(recording.spec.containers, None);
    let profile: SeccompProfile = serde_yaml::from_str(
        r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: profile1}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64]
  syscalls:
  - action: SCMP_ACT_ALLOW
    names: [exit_group, read]
  - action: SCMP_ACT_ERRNO
    errnoRet: 1
    names: [personality]
    args: [{index: 0, value: 8, op: SCMP_CMP_NE}]
"#,
    )
    .unwrap();
    assert_eq!(profile.spec.syscalls[1].args[0].op, CompareOp::NotEqual);
    let back = SeccompProfileSpec::from_seccomp(&profile.spec.to_seccomp());
    assert_eq!(back, profile.spec, "OCI round trip");
}

#[test]
fn a_rule_reads_the_same_from_the_cluster_and_from_an_oci_file() {
    // One type for both: an argument without a value (upstream SPO omits a zero) is 0 in
    // each, and a misspelled field inside a rule is refused by each, never ignored.
    let rule = r#"{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}"#;
    let spec: SeccompProfileSpec = serde_json::from_str(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{rule}]}}"#
    ))
    .unwrap();
    let oci: Seccomp = serde_json::from_str(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{rule}]}}"#
    ))
    .unwrap();
    assert_eq!(spec.syscalls, oci.syscalls);
    assert_eq!(oci.syscalls[0].args[0].value, 0);
    let misspelled = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "arg": []}]}"#;
    let err = serde_json::from_str::<SeccompProfileSpec>(misspelled).unwrap_err();
    assert!(err.to_string().contains("unknown field `arg`"), "{err}");
    let err = serde_json::from_str::<Seccomp>(misspelled).unwrap_err();
    assert!(err.to_string().contains("unknown field `arg`"), "{err}");
}

#[test]
fn deploy_crds_yaml_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == crds_yaml(),
        "deploy/crds.yaml is stale: regenerate it with `cargo xtask syscribe crds > deploy/crds.yaml`"
    );
}

#[test]
fn every_kind_is_in_the_group() {
    use kube::Resource as _;
    let groups = [
        ProfileRecording::group(&()),
        ProfileBinding::group(&()),
        SeccompProfile::group(&()),
        SelinuxProfile::group(&()),
        RawSelinuxProfile::group(&()),
        SecurityProfileNodeStatus::group(&()),
    ];
    for group in groups {
        assert_eq!(group, GROUP);
    }
    for crd in crds_yaml().split("---\n") {
        let crd: CustomResourceDefinition = serde_yaml::from_str(crd).unwrap();
        assert_eq!(crd.spec.group, GROUP);
        assert!(crd.metadata.name.unwrap().ends_with(&format!(".{GROUP}")));
    }
}

#[test]
fn crds_have_upstream_names_scopes_and_short_names() {
    let sp = SeccompProfile::crd();
    assert_eq!(sp.spec.group, GROUP);
    assert_eq!(sp.spec.scope, "Cluster");
    assert_eq!(
        sp.spec.names.short_names.as_deref(),
        Some(&["sp".to_owned()][..])
    );
    assert_eq!(ProfileRecording::crd().spec.scope, "Namespaced");
    assert_eq!(ProfileBinding::crd().spec.scope, "Namespaced");
    // Upstream's example (examples/profilebinding.yaml) in its v1alpha1 spelling, and a v1 one.
    let binding: ProfileBinding = serde_yaml::from_str(
        "apiVersion: security-profiles-operator.x-k8s.io/v1alpha1\nkind: ProfileBinding\nmetadata:\n  name: profile-binding\nspec:\n  profileRef:\n    kind: SeccompProfile\n    name: profile-allow-unsafe\n  image: nginx:1.19.1\n",
    )
    .unwrap();
    assert_eq!(binding.spec.profile_ref.kind, RecordingKind::SeccompProfile);
    assert_eq!(binding.spec.pod_selector, None);
    let binding: ProfileBinding = serde_yaml::from_str(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: ProfileBinding\nmetadata: {name: b}\nspec:\n  profileRef: {kind: SelinuxProfile, name: web}\n  image: '*'\n  podSelector: {matchLabels: {app: web}}\n",
    )
    .unwrap();
    assert_eq!(binding.spec.image, ANY_IMAGE);
    assert_eq!(SelinuxProfile::crd().spec.scope, "Cluster");
    let raw = RawSelinuxProfile::crd();
    assert_eq!(raw.spec.scope, "Cluster");
    assert_eq!(raw.spec.names.plural, "rawselinuxprofiles");
    // Upstream's own example, unchanged.
    let example: RawSelinuxProfile = serde_yaml::from_str(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: RawSelinuxProfile\nmetadata:\n  name: errorlogger\nspec:\n  policy: |\n    (blockinherit container)\n    (allow process var_log_t ( dir ( open read getattr lock search ioctl add_name remove_name write )))\n",
    )
    .unwrap();
    assert!(
        example
            .spec
            .policy
            .starts_with("(blockinherit container)\n")
    );
    let spns = SecurityProfileNodeStatus::crd();
    assert_eq!(spns.spec.scope, "Cluster");
    assert_eq!(
        spns.spec.names.short_names.as_deref(),
        Some(&["spns".to_owned()][..])
    );
    let selinux: SelinuxProfile = serde_yaml::from_str(
        "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SelinuxProfile\nmetadata: {name: errorlogger}\nspec:\n  allow:\n    var_log_t:\n      dir: [open, read, getattr, lock, search, ioctl, add_name, remove_name, write]\n",
    )
    .unwrap();
    assert_eq!(selinux.spec.inherit[0].name, "container", "default inherit");
    let yaml = crds_yaml();
    assert_eq!(yaml.matches("kind: CustomResourceDefinition").count(), 6);
    assert!(
        !yaml.contains("additionalProperties: false"),
        "structural schemas only"
    );
}
