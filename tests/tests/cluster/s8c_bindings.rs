//! ProfileBindings through the mutating webhook (s8c), and a stopped webhook (s8d).

use std::time::Duration;

use syscribe_tests::cluster::{Kube, deployed, image};

use super::common::{BINDING, MINUTE, namespace_yaml, no_mkdir_profile};

fn binding_yaml(namespace: &str, name: &str, profile: &str, image: &str, selector: &str) -> String {
    format!(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileBinding
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  profileRef: {{kind: SeccompProfile, name: {profile}}}
  image: "{image}"
{selector}"#
    )
}

/// What the bound workload prints: its seccomp mode and whether mkdir was allowed.
const CHECK: &str = "grep Seccomp: /proc/1/status; mkdir /tmp/x; echo mkdir-status=$?";

/// A pod without any securityContext that prints [`CHECK`] and exits.
fn check_pod(namespace: &str, name: &str, tier: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {{tier: {tier}}}}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "{CHECK}"]
"#,
        image = image("workload")
    )
}

fn confined(logs: &str) -> bool {
    logs.contains("Seccomp:\t2") && logs.contains("mkdir-status=1")
}

fn unconfined(logs: &str) -> bool {
    logs.contains("Seccomp:\t0") && logs.contains("mkdir-status=0")
}

/// Issue 16: ProfileBindings bind new pods of opted-in namespaces through the mutating
/// webhook, by image and by podSelector; conflicts refuse the pod; activeWorkloads lists the
/// bound pods; a bound profile stays Terminating until its binding goes.
#[test]
fn s8c_profile_bindings_confine_pods_that_never_named_a_profile() {
    let kube = Kube::get();
    deployed(&kube);
    let (on, off, profile) = ("bind-on", "bind-off", "no-mkdir-bound");
    kube.apply(&namespace_yaml(on, Some(BINDING)));
    kube.apply(&namespace_yaml(off, None));
    kube.apply(&no_mkdir_profile(profile));
    kube.wait_status("seccompprofile", profile, "Installed", MINUTE);
    let workload = image("workload");

    // By podSelector: only the pod labelled tier=locked is bound; nothing in `off` is.
    kube.apply(&binding_yaml(
        on,
        "by-label",
        profile,
        "*",
        "  podSelector: {matchLabels: {tier: locked}}\n",
    ));
    // The webhook's cache follows the binding's watch event.
    std::thread::sleep(Duration::from_secs(3));
    kube.apply(&check_pod(on, "locked", "locked"));
    kube.apply(&check_pod(on, "open", "open"));
    kube.apply(&check_pod(off, "elsewhere", "locked"));
    for (ns, pod) in [(on, "locked"), (on, "open"), (off, "elsewhere")] {
        kube.wait_succeeded(ns, pod, MINUTE);
    }
    let locked = kube.json(&["get", "pod", "-n", on, "locked"]);
    assert_eq!(
        locked["spec"]["containers"][0]["securityContext"]["seccompProfile"],
        serde_json::json!({"type": "Localhost", "localhostProfile": format!("operator/{profile}.json")})
    );
    assert_eq!(
        locked["metadata"]["annotations"]["syscribe.dev/bindings"],
        "by-label"
    );
    let logs = kube.ok(&["logs", "-n", on, "locked"]);
    assert!(confined(&logs), "the bound pod ran unconfined: {logs}");
    for (ns, pod) in [(on, "open"), (off, "elsewhere")] {
        let spec = kube.json(&["get", "pod", "-n", ns, pod]);
        assert!(
            spec["spec"]["containers"][0]
                .get("securityContext")
                .is_none(),
            "{spec}"
        );
        let logs = kube.ok(&["logs", "-n", ns, pod]);
        assert!(unconfined(&logs), "{ns}/{pod} was touched: {logs}");
    }
    println!(
        "by podSelector: {on}/locked bound (Seccomp 2, mkdir refused); {on}/open and {off}/elsewhere untouched"
    );

    // A second binding giving the same container another profile: the pod is refused,
    // both bindings named.
    kube.apply(&binding_yaml(on, "other", "no-mkdir-other", &workload, ""));
    let conflict = kube.wait_for("the conflicting pod refused", MINUTE, || {
        let out = kube.with_stdin(&["apply"], &check_pod(on, "locked-2", "locked"));
        if out.status.success() {
            kube.delete(&["pod", "-n", on, "locked-2"]);
            return None;
        }
        Some(String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        conflict.contains("\"by-label\"")
            && conflict.contains("\"other\"")
            && conflict.contains("different profiles"),
        "{conflict}"
    );
    println!("conflict: {}", conflict.trim());
    kube.delete(&["profilebinding", "-n", on, "by-label", "other"]);

    // By image: a Deployment's pods, which say nothing of seccomp, run under the profile.
    kube.apply(&binding_yaml(on, "by-image", profile, &workload, ""));
    std::thread::sleep(Duration::from_secs(3));
    kube.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {on}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: {workload}
        command: [sh, -c, "{CHECK}; sleep 3600"]
"#
    ));
    let pod = kube.wait_for("the Deployment's pod running", MINUTE, || {
        let pods = kube.json(&["get", "pods", "-n", on, "-l", "app=web"]);
        let pod = pods["items"].as_array()?.first()?.clone();
        (pod["status"]["phase"] == "Running")
            .then(|| pod["metadata"]["name"].as_str().unwrap().to_owned())
    });
    let logs = kube.wait_log(on, &pod, "mkdir-status", MINUTE);
    assert!(
        confined(&logs),
        "the Deployment's pod ran unconfined: {logs}"
    );
    let expected = serde_json::json!([format!("{on}/{pod}")]);
    kube.wait_for(
        "activeWorkloads listing the Deployment's pod",
        MINUTE,
        || {
            let b = kube.json(&["get", "profilebinding", "-n", on, "by-image"]);
            (b["status"]["activeWorkloads"] == expected).then_some(())
        },
    );
    println!("by image: {on}/{pod} bound, listed in by-image's activeWorkloads");

    // The bound profile cannot be deleted out from under its pods.
    kube.ok(&["delete", "seccompprofile", profile, "--wait=false"]);
    std::thread::sleep(Duration::from_secs(5));
    let sp = kube.json(&["get", "seccompprofile", profile]);
    assert!(sp["metadata"]["deletionTimestamp"].is_string(), "{sp}");
    assert!(
        sp["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "syscribe.dev/bound"),
        "{sp}"
    );
    kube.delete(&["deployment", "-n", on, "web"]);
    kube.wait_for(
        "the Deployment's pods gone and activeWorkloads empty",
        MINUTE,
        || {
            let pods = kube.json(&["get", "pods", "-n", on, "-l", "app=web"]);
            let b = kube.json(&["get", "profilebinding", "-n", on, "by-image"]);
            (pods["items"].as_array().unwrap().is_empty()
                && b["status"].get("activeWorkloads").is_none())
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let file = format!("/var/lib/kubelet/seccomp/operator/{profile}.json");
    let sp = kube.json(&["get", "seccompprofile", profile]);
    assert!(
        sp["metadata"]["deletionTimestamp"].is_string(),
        "still bound, still there: {sp}"
    );
    assert!(
        std::path::Path::new(&file).exists(),
        "the bound profile's file went"
    );
    println!("deleted while bound: still Terminating with no pod left, file kept");
    kube.delete(&["profilebinding", "-n", on, "by-image"]);
    kube.wait_for(&format!("SeccompProfile {profile} gone"), MINUTE, || {
        let out = kube.run(&["get", "seccompprofile", profile]);
        (!out.status.success()).then_some(())
    });
    kube.wait_for(&format!("{file} removed"), MINUTE, || {
        (!std::path::Path::new(&file).exists()).then_some(())
    });
    println!("binding deleted: the profile and its file went");
    kube.ok(&["delete", "namespace", on, off, "--wait=false"]);
}

/// A stopped webhook blocks no pod outside the namespaces that opted in to binding; inside
/// them it fails closed (no pod starts unbound).
#[test]
fn s8d_with_the_webhook_stopped_pods_elsewhere_still_start() {
    let kube = Kube::get();
    deployed(&kube);
    let (on, off) = ("down-on", "down-off");
    kube.apply(&namespace_yaml(on, Some(BINDING)));
    kube.apply(&namespace_yaml(off, None));
    kube.ok(&[
        "scale",
        "-n",
        "syscribe",
        "deployment/syscribe-webhook",
        "--replicas=0",
    ]);
    kube.wait_for("no webhook pod left", MINUTE, || {
        let pods = kube.syscribe_pods("syscribe-webhook");
        pods["items"].as_array().unwrap().is_empty().then_some(())
    });
    kube.apply(&check_pod(off, "free", "locked"));
    kube.wait_succeeded(off, "free", MINUTE);
    let refused = kube.with_stdin(&["apply"], &check_pod(on, "held", "locked"));
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    println!("opted-in namespace, webhook down: {}", stderr.trim());
    kube.ok(&[
        "scale",
        "-n",
        "syscribe",
        "deployment/syscribe-webhook",
        "--replicas=2",
    ]);
    kube.ok(&[
        "rollout",
        "status",
        "-n",
        "syscribe",
        "deployment/syscribe-webhook",
        "--timeout=120s",
    ]);
    assert!(
        !refused.status.success() && stderr.contains("bindings.syscribe.dev"),
        "{stderr}"
    );
    // Back: the API server reaches it again for pods of the opted-in namespace.
    kube.wait_for(
        "the API server calling the webhook again",
        Duration::from_secs(120),
        || {
            kube.with_stdin(
                &["create", "--dry-run=server"],
                &check_pod(on, "held", "locked"),
            )
            .status
            .success()
            .then_some(())
        },
    );
    kube.ok(&["delete", "namespace", on, off, "--wait=false"]);
}
