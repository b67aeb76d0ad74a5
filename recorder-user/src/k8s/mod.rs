//! Everything that touches kube: the custom resources, the pod index, the reconcilers.

pub mod api_errors;
pub mod coverage;
pub mod crd;
pub mod daemon;
pub mod index;
pub mod install;
pub mod memory;
pub mod node_cleanup;
pub mod node_status;
pub mod publish;
pub mod recordings;
pub mod report;
pub mod selinux_node;
pub mod selinux_recordings;
pub mod watch_log;
pub mod webhook;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

#[cfg(test)]
mod rbac_tests;

#[cfg(test)]
mod deploy_tests {
    //! The committed manifests say what deploy/README.md promises.

    fn documents(file: &str) -> Vec<serde_yaml::Value> {
        let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn the_daemonset_is_not_privileged_and_lists_its_capabilities() {
        let ds = &documents("daemonset.yaml")[0];
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostPID"], serde_yaml::Value::Bool(true));
        let container = &pod["containers"][0];
        let sc = &container["securityContext"];
        assert_eq!(sc["privileged"], serde_yaml::Value::Bool(false));
        assert_eq!(
            sc["allowPrivilegeEscalation"],
            serde_yaml::Value::Bool(false)
        );
        assert_eq!(sc["readOnlyRootFilesystem"], serde_yaml::Value::Bool(true));
        let caps: serde_yaml::Value =
            serde_yaml::from_str("{drop: [ALL], add: [BPF, PERFMON, AUDIT_READ, SYSLOG]}").unwrap();
        assert_eq!(sc["capabilities"], caps);
        for mount in container["volumeMounts"].as_sequence().unwrap() {
            // Only the bpffs (pins), the kubelet's seccomp directory (installed profiles), the
            // state directory (finished containers' recordings), the SELinux policy store and
            // its installed policy (semodule), and the private /tmp are written; every other
            // host path is read-only.
            let writable = matches!(
                mount["mountPath"].as_str(),
                Some(
                    "/sys/fs/bpf"
                        | "/var/lib/kubelet/seccomp"
                        | "/var/lib/syscribe"
                        | "/etc/selinux"
                        | "/var/lib/selinux"
                        | "/tmp"
                )
            );
            assert_eq!(
                mount["readOnly"],
                serde_yaml::Value::Bool(!writable),
                "{mount:?}"
            );
        }
        assert_eq!(container["args"][0], serde_yaml::Value::from("daemon"));
    }

    #[test]
    fn a_node_without_selinux_still_starts_the_daemon() {
        let ds = &documents("daemonset.yaml")[0];
        let pod = &ds["spec"]["template"]["spec"];
        let host_path = |path: &str| {
            pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["hostPath"]["path"] == path)
                .unwrap_or_else(|| panic!("no hostPath volume {path}"))["hostPath"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        // Directories only SELinux nodes have are created where missing, never required.
        for path in ["/etc/selinux", "/var/lib/selinux"] {
            assert_eq!(host_path(path), "DirectoryOrCreate", "{path}");
        }
        // selinuxfs comes with the host's /sys/fs (which every node has): a hostPath of
        // /sys/fs/selinux itself fails where it is missing, since sysfs refuses mkdir.
        assert_eq!(host_path("/sys/fs"), "Directory");
        assert!(
            !pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|v| v["hostPath"]["path"] == "/sys/fs/selinux")
        );
        let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
        let sys_fs = mounts
            .iter()
            .find(|m| m["mountPath"] == "/sys/fs")
            .expect("the host's /sys/fs is mounted at /sys/fs");
        assert_eq!(sys_fs["readOnly"], serde_yaml::Value::Bool(true));
        assert!(
            mounts.iter().any(|m| m["mountPath"] == "/tmp"),
            "readOnlyRootFilesystem needs a writable /tmp for module files"
        );
    }

    #[test]
    fn the_reports_roles_grant_what_it_reads_and_nothing_else() {
        let docs = documents("report-rbac.yaml");
        let grants = |kind: &str| -> Vec<(String, String)> {
            let doc = docs.iter().find(|d| d["kind"] == kind).unwrap();
            let mut out = Vec::new();
            for rule in doc["rules"].as_sequence().unwrap() {
                for resource in rule["resources"].as_sequence().unwrap() {
                    for verb in rule["verbs"].as_sequence().unwrap() {
                        out.push((
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
            out.sort();
            out
        };
        let pair = |r: &str, v: &str| (r.to_owned(), v.to_owned());
        // fetch.rs: lists of namespaces, pods, SeccompProfiles, node statuses …
        assert_eq!(
            grants("ClusterRole"),
            [
                pair("namespaces", "list"),
                pair("pods", "list"),
                pair("seccompprofiles", "list"),
                pair("securityprofilenodestatuses", "list"),
            ]
        );
        // … and the daemon pods' /metrics through the pod proxy, in syscribe's namespace.
        assert_eq!(
            grants("Role"),
            [pair("pods", "list"), pair("pods/proxy", "get")]
        );
        let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
        assert_eq!(role["metadata"]["namespace"], "syscribe");
    }

    #[test]
    fn rbac_has_no_wildcards_and_kustomize_lists_every_manifest() {
        for doc in documents("rbac.yaml")
            .into_iter()
            .chain(documents("report-rbac.yaml"))
        {
            for rule in doc["rules"].as_sequence().into_iter().flatten() {
                for field in ["apiGroups", "resources", "verbs"] {
                    let values = rule[field].as_sequence().unwrap();
                    assert!(!values.iter().any(|v| v == "*"), "{rule:?}");
                }
            }
        }
        let kustomization = &documents("kustomization.yaml")[0];
        for resource in kustomization["resources"].as_sequence().unwrap() {
            let file = resource.as_str().unwrap();
            assert!(!documents(file).is_empty(), "{file}");
        }
    }

    fn container_args(container: &serde_yaml::Value) -> Vec<String> {
        container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn pods_are_sent_for_binding_only_from_namespaces_that_opted_in() {
        let config = &documents("webhook/mutatingwebhookconfiguration.yaml")[0];
        let hook = &config["webhooks"][0];
        assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(hook["sideEffects"], "None");
        let expressions: serde_yaml::Value = serde_yaml::from_str(
            "[{key: spo.x-k8s.io/enable-binding, operator: Exists}, \
             {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, syscribe]}]",
        )
        .unwrap();
        assert_eq!(hook["namespaceSelector"]["matchExpressions"], expressions);
        assert_eq!(
            hook["namespaceSelector"]["matchExpressions"][0]["key"],
            crate::k8s::crd::LABEL_ENABLE_BINDING
        );
        assert_eq!(hook["rules"][0]["resources"][0], "pods");
        assert_eq!(hook["rules"][0]["operations"][0], "CREATE");
        assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 10);
    }

    #[test]
    fn the_webhook_is_asked_about_profile_writes_on_the_path_it_serves() {
        let config = &documents("webhook/validatingwebhookconfiguration.yaml")[0];
        let hook = &config["webhooks"][0];
        assert_eq!(hook["admissionReviewVersions"][0], "v1");
        assert_eq!(hook["failurePolicy"], "Fail");
        let service = &hook["clientConfig"]["service"];
        assert_eq!(
            service["path"], "/validate",
            "the route crate::k8s::webhook serves"
        );
        let rule = &hook["rules"][0];
        let list = |v: &serde_yaml::Value| -> Vec<String> {
            v.as_sequence()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            list(&rule["resources"]),
            ["seccompprofiles", "selinuxprofiles", "rawselinuxprofiles"]
        );
        assert_eq!(list(&rule["operations"]), ["CREATE", "UPDATE"]);
        // The Service the configuration names exists and reaches the Deployment's port.
        let svc = &documents("webhook/service.yaml")[0];
        assert_eq!(svc["metadata"]["name"], service["name"]);
        assert_eq!(svc["spec"]["ports"][0]["port"], service["port"]);
        let deployment = &documents("webhook/deployment.yaml")[0];
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "syscribe-webhook");
        assert!(
            container_args(&pod["containers"][0]).contains(&"--bindings".to_owned()),
            "the Deployment serves /mutate"
        );
        let container = &pod["containers"][0];
        assert_eq!(container["args"][0], "webhook");
        assert_eq!(container["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"][0],
            "ALL"
        );
        // The certificate cert-manager makes is the Secret the Deployment mounts, for the
        // Service's name.
        let certificate = &documents("webhook/certificate.yaml")[1];
        assert_eq!(
            certificate["spec"]["secretName"],
            pod["volumes"][0]["secret"]["secretName"]
        );
        assert_eq!(
            certificate["spec"]["dnsNames"][0],
            serde_yaml::Value::from(format!(
                "{}.{}.svc",
                service["name"].as_str().unwrap(),
                service["namespace"].as_str().unwrap()
            ))
        );
        let kustomization = &documents("webhook/kustomization.yaml")[0];
        for resource in kustomization["resources"].as_sequence().unwrap() {
            let file = format!("webhook/{}", resource.as_str().unwrap());
            assert!(!documents(&file).is_empty(), "{file}");
        }
    }
}
