//! Syscribe deployed, its webhook refusing an invalid profile, an installed profile confining
//! pods run by runc and by crun, and `kubectl get`'s printer columns (s1–s5).

use serde_json::Value;
use syscribe_tests::cluster::{Kube, deployed, image};

use super::common::{MINUTE, no_mkdir_profile, recording_namespace, recording_yaml};

#[test]
fn s1_deploy_applies_and_the_daemon_and_webhook_become_ready() {
    let kube = Kube::get();
    deployed(&kube);
    let pods = kube.syscribe_pods("syscribe");
    let pod = &pods["items"][0];
    assert_eq!(pod["spec"]["serviceAccountName"], "syscribe");
    assert_eq!(pod["spec"]["nodeName"], kube.node.as_str());
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        image("syscribe").as_str(),
        "the overlay swaps only the image reference"
    );
    // The DaemonSet's /readyz, asked the way the kubelet asks it (pod IP, port 9890).
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("the daemon's pod has an address");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{ip}:9890/readyz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let webhook = kube.json(&["get", "deployment", "-n", "syscribe", "syscribe-webhook"]);
    assert_eq!(webhook["status"]["readyReplicas"], 2);
}

#[test]
fn s2_the_webhook_refuses_an_invalid_profile_through_kubectl_with_the_validators_message() {
    let kube = Kube::get();
    deployed(&kube);
    let invalid = r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: date-printer
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64]
  syscalls:
  - action: SCMP_ACT_ALLOW
    names: [brk, clock_gettiem, close, exit_group]
"#;
    let out = kube.with_stdin(&["apply"], invalid);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an invalid profile was admitted: {stderr}"
    );
    for part in [
        "admission webhook \"profiles.syscribe.dev\" denied the request",
        "spec.syscalls[0].names[1]",
        "unknown syscall \"clock_gettiem\"",
        "did you mean \"clock_gettime\"",
    ] {
        assert!(
            stderr.contains(part),
            "kubectl's output lacks {part:?}:\n{stderr}"
        );
    }
    let absent = kube.run(&["get", "seccompprofile", "date-printer"]);
    assert!(!absent.status.success(), "the refused profile exists");

    let valid = invalid.replace("clock_gettiem", "clock_gettime");
    let out = kube.with_stdin(&["apply"], &valid);
    assert!(
        out.status.success(),
        "a valid profile was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kube.delete(&["seccompprofile", "date-printer"]);
}

/// Waits until the profile is Installed with this node's status, then runs a pod under it with
/// the given runtime class and checks that mkdir is refused inside it.
fn installed_profile_confines_a_pod(runtime_class: Option<&str>) {
    let kube = Kube::get();
    deployed(&kube);
    let suffix = runtime_class.unwrap_or("runc");
    let name = format!("no-mkdir-{suffix}");
    kube.apply(&no_mkdir_profile(&name));
    let status = kube.wait_status("seccompprofile", &name, "Installed", MINUTE);
    assert_eq!(
        status["status"]["localhostProfile"],
        format!("operator/{name}.json")
    );
    let node_status = kube.json(&[
        "get",
        "securityprofilenodestatuses",
        "-l",
        &format!("spo.x-k8s.io/node-name={}", kube.node),
    ]);
    let ours: Vec<&Value> = node_status["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&name))
        })
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one node status for {name} on this node: {node_status}"
    );
    // Upstream's shape: `nodeName` and `status` at the top level.
    assert_eq!(ours[0]["status"], "Installed");
    assert_eq!(ours[0]["nodeName"], kube.node.as_str());
    let file = format!("/var/lib/kubelet/seccomp/operator/{name}.json");
    let installed: Value = serde_json::from_str(
        &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}")),
    )
    .unwrap();
    assert_eq!(installed["defaultAction"], "SCMP_ACT_ALLOW");

    let pod = format!("confined-{suffix}");
    let runtime = runtime_class
        .map(|c| format!("  runtimeClassName: {c}\n"))
        .unwrap_or_default();
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: default}}
spec:
{runtime}  restartPolicy: Never
  securityContext:
    seccompProfile: {{type: Localhost, localhostProfile: operator/{name}.json}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "echo started; mkdir /tmp/x; echo mkdir-status=$?"]
"#,
        image = image("workload"),
    ));
    kube.wait_succeeded("default", &pod, MINUTE);
    let logs = kube.ok(&["logs", "-n", "default", &pod]);
    assert!(logs.contains("started"), "{logs}");
    assert!(
        logs.contains("Operation not permitted") && logs.contains("mkdir-status=1"),
        "mkdir was not refused under {name}: {logs}"
    );
    kube.delete(&["pod", "-n", "default", &pod]);
    kube.delete(&["seccompprofile", &name]);
    kube.wait_for(&format!("{file} removed"), MINUTE, || {
        (!std::path::Path::new(&file).exists()).then_some(())
    });
}

#[test]
fn s3_an_installed_profile_confines_a_pod_run_by_runc() {
    installed_profile_confines_a_pod(None);
}

#[test]
fn s4_an_installed_profile_confines_a_pod_run_by_crun() {
    installed_profile_confines_a_pod(Some("crun"));
}

#[test]
fn s5_kubectl_get_prints_the_printer_columns() {
    let kube = Kube::get();
    deployed(&kube);
    recording_namespace(&kube, "columns");
    kube.apply(&recording_yaml("columns", "columns", "nothing-here"));
    kube.apply(&no_mkdir_profile("columns"));
    kube.wait_status("seccompprofile", "columns", "Installed", MINUTE);
    let out = kube.ok(&["get", "sp,spns,profilerecordings", "-A"]);
    let headers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("NAME") || l.starts_with("NAMESPACE"))
        .collect();
    assert_eq!(headers.len(), 3, "three tables:\n{out}");
    assert!(
        headers[0]
            .split_whitespace()
            .eq(["NAME", "STATUS", "NODES", "AGE"]),
        "{out}"
    );
    assert!(
        headers[1].split_whitespace().eq(["NAME", "STATUS", "AGE"]),
        "{out}"
    );
    assert!(
        headers[2]
            .split_whitespace()
            .eq(["NAMESPACE", "NAME", "KIND", "RECORDER", "AGE"]),
        "{out}"
    );
    assert!(
        out.contains("columns") && out.contains("Installed"),
        "{out}"
    );
    let wide = kube.ok(&["get", "spns", "-o", "wide"]);
    assert!(
        wide.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "STATUS", "AGE", "NODE", "MESSAGE"]),
        "{wide}"
    );
    kube.delete(&["sp", "columns"]);
    kube.delete(&["namespace", "columns"]);
}
