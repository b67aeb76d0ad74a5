//! Syscribe on a real Kubernetes (`cargo xtask cluster up`: kube-apiserver with RBAC and the
//! production admission plugins, kubelet, containerd with runc and crun, CNI, kube-proxy),
//! deployed with `kubectl apply -k` from deploy/ and driven through kubectl as a user drives it.
//! Built only with the `cluster` feature; `cargo xtask test` runs it with the cluster up.
//!
//! The tests share one deployment and run in name order (`--test-threads=1`): `s9_…` reads the
//! logs of everything before it.

use std::time::Duration;

use serde_json::Value;
use syscribe_tests::cluster::{Kube, TEST_AUDIT_LOG, deployed, image};

const MINUTE: Duration = Duration::from_secs(60);

/// A profile that allows everything but mkdir/mkdirat (EPERM): a pod under it runs normally
/// and its `mkdir` fails, which proves the kubelet handed this very file to the runtime.
fn no_mkdir_profile(name: &str) -> String {
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

#[test]
fn s1_deploy_applies_and_the_daemon_and_webhook_become_ready() {
    let kube = Kube::get();
    deployed(&kube);
    let pods = kube.json(&[
        "get",
        "pods",
        "-n",
        "syscribe",
        "-l",
        "app.kubernetes.io/name=syscribe",
    ]);
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
    kube.ok(&["delete", "seccompprofile", "date-printer", "--wait=true"]);
}

/// Waits until the profile is Installed with this node's status, then runs a pod under it with
/// the given runtime class and checks that mkdir is refused inside it.
fn installed_profile_confines_a_pod(runtime_class: Option<&str>) {
    let kube = Kube::get();
    deployed(&kube);
    let suffix = runtime_class.unwrap_or("runc");
    let name = format!("no-mkdir-{suffix}");
    kube.apply(&no_mkdir_profile(&name));
    let status = kube.wait_for(&format!("SeccompProfile {name} Installed"), MINUTE, || {
        let sp = kube.json(&["get", "seccompprofile", &name]);
        (sp["status"]["status"] == "Installed").then_some(sp)
    });
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
    kube.ok(&["delete", "pod", "-n", "default", &pod, "--wait=true"]);
    kube.ok(&["delete", "seccompprofile", &name, "--wait=true"]);
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
    kube.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: columns, labels: {spo.x-k8s.io/enable-recording: \"true\"}}\n",
    );
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {name: columns, namespace: columns}
spec:
  kind: SeccompProfile
  recorder: Bpf
  podSelector: {matchLabels: {app: nothing-here}}
"#,
    );
    kube.apply(&no_mkdir_profile("columns"));
    kube.wait_for("SeccompProfile columns Installed", MINUTE, || {
        (kube.ok(&["get", "sp", "columns", "-o", "jsonpath={.status.status}"]) == "Installed")
            .then_some(())
    });
    let out = kube.ok(&["get", "sp,spns,profilerecordings", "-A"]);
    let headers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("NAME") || l.starts_with("NAMESPACE"))
        .collect();
    assert_eq!(headers.len(), 3, "three tables:\n{out}");
    assert!(
        headers[0].split_whitespace().eq(["NAME", "STATUS", "AGE"]),
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
    kube.ok(&["delete", "sp", "columns", "--wait=true"]);
    kube.ok(&["delete", "namespace", "columns", "--wait=true"]);
}

/// Ming's flow: label a namespace, create a ProfileRecording, run the workload, delete its pod
/// — and the recorded profile is published, installed, and runs the same workload under it,
/// while what the workload never did is refused.
#[test]
fn s6_a_pod_recorded_by_labelling_its_namespace_runs_under_its_own_profile() {
    let kube = Kube::get();
    deployed(&kube);
    let workload = "uname -n; mkdir -p /tmp/d; echo recorded > /tmp/d/f; cat /tmp/d/f; sleep 1";
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    kube.ok(&[
        "label",
        "namespace",
        "shop",
        "spo.x-k8s.io/enable-recording=true",
        "--overwrite",
    ]);
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {name: ming, namespace: shop}
spec:
  kind: SeccompProfile
  recorder: Bpf
  podSelector: {matchLabels: {app: web}}
"#,
    );
    let pod = |name: &str, ns: &str, labels: &str, security: &str, command: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{security}  containers:
  - name: web
    image: {image}
    command: [sh, -c, {command:?}]
"#,
            image = image("workload"),
        )
    };
    // RuntimeDefault, as clusters with `seccompDefault` run every pod: the runtime's filter
    // marks where the container's own syscalls begin. (An Unconfined pod — the kubelet's
    // default otherwise — is recorded from its runtime's last setup step instead: docs/design.md,
    // "The runtime boundary"; proven with runc and crun in tests/containers.rs, not here yet.)
    let runtime_default = "  securityContext:\n    seccompProfile: {type: RuntimeDefault}\n";
    kube.apply(&pod(
        "web",
        "shop",
        "app: web",
        runtime_default,
        &format!("{workload}; touch /tmp/done; exec sleep 3600"),
    ));
    kube.wait_for("the recorded pod Running", MINUTE, || {
        (kube.pod_phase("shop", "web") == "Running").then_some(())
    });
    kube.wait_for("the workload done", MINUTE, || {
        kube.run(&["exec", "-n", "shop", "web", "--", "test", "-e", "/tmp/done"])
            .status
            .success()
            .then_some(())
    });
    let active = kube.json(&["get", "profilerecording", "-n", "shop", "ming"]);
    assert_eq!(
        active["status"]["activeWorkloads"],
        serde_json::json!(["shop/web"]),
        "the recording names the pod it records: {active}"
    );
    kube.ok(&["delete", "pod", "-n", "shop", "web", "--wait=true"]);
    let profile = kube.wait_for(
        "SeccompProfile ming-web published and Installed",
        MINUTE,
        || {
            let out = kube.run(&["get", "seccompprofile", "ming-web", "-o", "json"]);
            let sp: Value = serde_json::from_slice(&out.stdout).ok()?;
            (sp["status"]["status"] == "Installed").then_some(sp)
        },
    );
    let labels = &profile["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], "ming", "{profile}");
    assert_eq!(
        labels["spo.x-k8s.io/recording-namespace"], "shop",
        "{profile}"
    );
    assert_eq!(labels["spo.x-k8s.io/container-id"], "web", "{profile}");
    assert_eq!(profile["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
    let names: Vec<&str> = profile["spec"]["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needed in ["uname", "mkdir", "execve"] {
        assert!(
            names.contains(&needed),
            "{needed} is not in the recorded {names:?}"
        );
    }
    for never in ["socket", "mount", "pivot_root", "sethostname"] {
        assert!(
            !names.contains(&never),
            "{never} is in the recorded {names:?}"
        );
    }

    // The same workload under the recorded profile, in a namespace that records nothing.
    let security = "  securityContext:\n    seccompProfile: {type: Localhost, localhostProfile: operator/ming-web.json}\n";
    kube.apply(&pod("replay", "default", "app: replay", security, workload));
    kube.apply(&pod(
        "stranger",
        "default",
        "app: stranger",
        security,
        "nc 127.0.0.1 80 </dev/null; echo nc-status=$?",
    ));
    for name in ["replay", "stranger"] {
        kube.wait_succeeded("default", name, MINUTE);
    }
    let replay = kube.ok(&["logs", "-n", "default", "replay"]);
    assert!(
        replay.contains("recorded"),
        "the replay under its profile: {replay}"
    );
    let stranger = kube.ok(&["logs", "-n", "default", "stranger"]);
    assert!(
        stranger.contains("Operation not permitted") && stranger.contains("nc-status=1"),
        "a socket the recording never saw must be refused: {stranger}"
    );
    kube.ok(&[
        "delete",
        "pod",
        "-n",
        "default",
        "replay",
        "stranger",
        "--wait=true",
    ]);
    kube.ok(&["delete", "namespace", "shop", "--wait=true"]);
    kube.ok(&["delete", "seccompprofile", "ming-web", "--wait=true"]);
}

/// An app developer records a SelinuxProfile as upstream documents it: a `kind: SelinuxProfile`,
/// `recorder: Logs` ProfileRecording, a pod that runs as `selinuxrecording.process`. SELinux is
/// off on this node, so no kernel writes an AVC: the test writes, to the audit log the daemon
/// follows (`--audit-log`, see the overlay), the AVC and SYSCALL records an SELinux node would
/// write for the pod's real process (its pid found in the pod's container cgroup). Deleting the
/// pod publishes `<recording>-<container>` with exactly those accesses allowed.
#[test]
fn s7b_a_pods_avcs_become_its_recorded_selinux_profile() {
    let kube = Kube::get();
    deployed(&kube);
    kube.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: selinux-shop}\n");
    kube.ok(&[
        "label",
        "namespace",
        "selinux-shop",
        "spo.x-k8s.io/enable-recording=true",
        "--overwrite",
    ]);
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {name: seli, namespace: selinux-shop}
spec:
  kind: SelinuxProfile
  recorder: Logs
  podSelector: {matchLabels: {app: web}}
"#,
    );
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: selinux-shop, labels: {{app: web}}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {image}
    command: [sh, -c, "exec sleep 3600"]
    securityContext:
      seLinuxOptions:
        type: selinuxrecording.process
"#,
        image = image("workload"),
    ));
    kube.wait_for("the recorded pod Running", MINUTE, || {
        (kube.pod_phase("selinux-shop", "web") == "Running").then_some(())
    });
    kube.wait_for("the recording naming the pod", MINUTE, || {
        let rec = kube.json(&["get", "profilerecording", "-n", "selinux-shop", "seli"]);
        (rec["status"]["activeWorkloads"] == serde_json::json!(["selinux-shop/web"])).then_some(())
    });
    let pod = kube.json(&["get", "pod", "-n", "selinux-shop", "web"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|id| id.split_once("://"))
        .map(|(_, id)| id.to_owned())
        .expect("the container's id");
    // The container's process, in its cgroup (cgroupfs driver; BestEffort pod).
    let pid: u32 = kube.wait_for("the container's process", MINUTE, || {
        std::fs::read_dir("/sys/fs/cgroup")
            .ok()?
            .flatten()
            .find_map(|hierarchy| {
                let procs = hierarchy
                    .path()
                    .join(format!("kubepods/besteffort/pod{uid}/{id}/cgroup.procs"));
                std::fs::read_to_string(procs)
                    .ok()?
                    .lines()
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            })
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let source = "system_u:system_r:selinuxrecording.process:s0:c1,c2";
    let mut lines = String::new();
    for (serial, perms, tcontext, tclass) in [
        (1, "read", "system_u:object_r:etc_t:s0", "file"),
        (2, "open", "system_u:object_r:etc_t:s0", "file"),
        (3, "listen", source, "tcp_socket"),
    ] {
        let at = format!(
            "{}.{:03}:{}",
            now.as_secs(),
            now.subsec_millis(),
            900_000 + serial
        );
        lines += &format!(
            "type=AVC msg=audit({at}): avc:  denied  {{ {perms} }} for  pid={pid} comm=\"sleep\" name=\"passwd\" dev=\"vda1\" ino=12 scontext={source} tcontext={tcontext} tclass={tclass} permissive=1\n\
             type=SYSCALL msg=audit({at}): arch=c000003e syscall=257 success=yes exit=3 items=1 ppid=1 pid={pid} auid=4294967295 uid=0 gid=0 comm=\"sleep\" exe=\"/bin/busybox\" subj={source} key=(null)\n"
        );
    }
    std::fs::create_dir_all("/var/log/audit").unwrap();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(TEST_AUDIT_LOG)
        .unwrap();
    std::io::Write::write_all(&mut log, lines.as_bytes()).unwrap();
    drop(log);
    // The daemon's enricher prints each one, named by its pod index.
    kube.wait_for("the daemon printing the pod's AVCs", MINUTE, || {
        let logs = kube.ok(&["logs", "-n", "syscribe", "daemonset/syscribe", "--tail=-1"]);
        (logs
            .lines()
            .filter(|l| {
                l.contains("\"type\":\"selinux\"")
                    && l.contains("\"pod\":\"web\"")
                    && l.contains(&format!("\"pid\":{pid}"))
            })
            .count()
            >= 3)
            .then_some(())
    });
    kube.ok(&["delete", "pod", "-n", "selinux-shop", "web", "--wait=true"]);
    let profile = kube.wait_for("SelinuxProfile seli-web published", MINUTE, || {
        let out = kube.run(&["get", "selinuxprofile", "seli-web", "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).ok()
    });
    assert_eq!(
        profile["spec"]["allow"],
        serde_json::json!({"@self": {"tcp_socket": ["listen"]}, "etc_t": {"file": ["open", "read"]}}),
        "{profile}"
    );
    assert_eq!(
        profile["spec"]["inherit"],
        serde_json::json!([{"kind": "System", "name": "container"}])
    );
    let labels = &profile["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], "seli", "{profile}");
    assert_eq!(labels["spo.x-k8s.io/recording-namespace"], "selinux-shop");
    assert_eq!(labels["spo.x-k8s.io/container-id"], "web");
    assert_eq!(
        profile["metadata"]["annotations"]["syscribe.dev/recorded-denials"],
        "3"
    );
    kube.ok(&["delete", "namespace", "selinux-shop", "--wait=true"]);
    kube.ok(&["delete", "selinuxprofile", "seli-web", "--wait=true"]);
    // The test's lines leave the node with it.
    std::fs::remove_file(TEST_AUDIT_LOG).unwrap();
}

/// Rajesh deploys SELinux profiles as upstream documents them: an invalid RawSelinuxProfile is
/// refused at `kubectl apply` with the line of the missing parenthesis; upstream's examples
/// (a SelinuxProfile and a RawSelinuxProfile) are admitted, and this node — SELinux is off on
/// these machines — reports each as not installable here, with the reason, never Installed.
#[test]
fn s7_selinux_profiles_are_validated_and_a_node_without_selinux_says_so() {
    let kube = Kube::get();
    deployed(&kube);
    let broken = r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: RawSelinuxProfile
metadata:
  name: broken-logger
spec:
  policy: |
    (blockinherit container)
    (allow process var_log_t ( dir ( open read search ))
    (allow process var_log_t ( file ( getattr read open )))
"#;
    let out = kube.with_stdin(&["apply"], broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a broken policy was admitted: {stderr}"
    );
    for part in [
        "denied the request",
        "spec.policy",
        "policy line 2:1: this '(' is never closed; the statement at 3:1 starts inside it",
    ] {
        assert!(
            stderr.contains(part),
            "kubectl's output lacks {part:?}:\n{stderr}"
        );
    }
    // Upstream's examples, unchanged: they say v1alpha2, which the CRDs serve beside v1.
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1alpha2
kind: SelinuxProfile
metadata:
  name: errorlogger
spec:
  inherit:
    - name: container
  allow:
    var_log_t:
      dir: [open, read, getattr, lock, search, ioctl, add_name, remove_name, write]
      file: [getattr, read, write, append, ioctl, lock, map, open, create]
      sock_file: [getattr, read, write, append, open]
"#,
    );
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1alpha2
kind: RawSelinuxProfile
metadata:
  name: rawlogger
spec:
  policy: |
    (blockinherit container)
    (allow process var_log_t ( dir ( open read getattr lock search ioctl add_name remove_name write ))) 
    (allow process var_log_t ( file ( getattr read write append ioctl lock map open create  ))) 
    (allow process var_log_t ( sock_file ( getattr read write append open  ))) 
"#,
    );
    for (kind, name) in [
        ("selinuxprofile", "errorlogger"),
        ("rawselinuxprofile", "rawlogger"),
    ] {
        let profile = kube.wait_for(&format!("{kind} {name} summarized"), MINUTE, || {
            let p = kube.json(&["get", kind, name]);
            (!p["status"]["status"].is_null()).then_some(p)
        });
        assert_eq!(profile["status"]["status"], "Error", "{profile:#}");
        let ready = profile["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "False", "{profile:#}");
        assert!(
            ready["message"]
                .as_str()
                .unwrap_or_default()
                .contains("SELinux is off on this node"),
            "{profile:#}"
        );
        let kind_label = profile["kind"].as_str().unwrap().to_owned();
        let statuses = kube.json(&[
            "get",
            "securityprofilenodestatuses",
            "-l",
            &format!("spo.x-k8s.io/profile-id={kind_label}-{name}"),
        ]);
        let items = statuses["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{statuses:#}");
        assert_eq!(items[0]["nodeName"], kube.node.as_str());
        assert_eq!(items[0]["status"], "Error");
        assert!(
            items[0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("SELinux is off on this node"),
            "{statuses:#}"
        );
        kube.ok(&["delete", kind, name, "--wait=true"]);
    }
}

/// The daemon's resident memory on the node while it records nothing (a figure for
/// docs/kubernetes.md, printed; the test only checks it was found).
#[test]
fn s8_the_daemons_idle_memory_is_measured() {
    let kube = Kube::get();
    deployed(&kube);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"/syscribe"))
            && args.get(1) == Some(&&b"daemon"[..])
        {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                found.push(kib);
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "one syscribe daemon process on the node: {found:?}"
    );
    println!(
        "syscribe daemon RSS, idle on the node: {:.1} MiB",
        found[0] as f64 / 1024.0
    );
}

/// `syscribe report` on pods of known settings in two fresh namespaces: exact counts and
/// coverage in its JSON, read by a ServiceAccount holding only deploy/report-rbac.yaml's
/// roles; a denial logged by a Localhost profile counted from the daemon's /metrics; the HTML
/// page as headless Chromium renders it; the daemon's gauges through the pod proxy.
#[test]
fn s8b_the_report_counts_each_namespaces_containers_by_seccomp_mode() {
    let kube = Kube::get();
    deployed(&kube);
    // Allows everything; logs mkdir (an audit record the enricher counts as a denial).
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: report-log}
spec:
  defaultAction: SCMP_ACT_ALLOW
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32]
  syscalls:
  - action: SCMP_ACT_LOG
    names: [mkdir, mkdirat]
---
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata:
  name: report-rec-main
  labels:
    spo.x-k8s.io/recording-id: report-rec
    spo.x-k8s.io/recording-namespace: report-a
    spo.x-k8s.io/container-id: main
spec:
  defaultAction: SCMP_ACT_ALLOW
"#,
    );
    kube.wait_for("SeccompProfile report-log Installed", MINUTE, || {
        let sp = kube.json(&["get", "seccompprofile", "report-log"]);
        (sp["status"]["status"] == "Installed").then_some(())
    });
    let hostile = "<script>alert(1)</script>";
    let pod = |ns: &str, name: &str, pod_sc: &str, host: &str, container_sc: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  terminationGracePeriodSeconds: 0
{host}  securityContext: {{{pod_sc}}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "mkdir /tmp/x; exec sleep 3600"]
    securityContext: {{{container_sc}}}
"#,
            image = image("workload")
        )
    };
    let init = format!(
        "  initContainers:\n  - {{name: setup, image: {}, command: [sh, -c, \"exit 0\"]}}\n",
        image("workload")
    );
    let docs = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: report-a}\n".to_owned(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: report-b}\n".to_owned(),
        pod(
            "report-a",
            "unconfined",
            "",
            "",
            "seccompProfile: {type: Unconfined}",
        ),
        pod("report-a", "no-profile", "", "", ""),
        pod(
            "report-a",
            "runtime-default",
            "seccompProfile: {type: RuntimeDefault}",
            &init,
            "",
        ),
        pod(
            "report-a",
            "localhost",
            "",
            "",
            "seccompProfile: {type: Localhost, localhostProfile: operator/report-log.json}",
        ),
        pod(
            "report-b",
            "privileged",
            "seccompProfile: {type: RuntimeDefault}",
            "",
            "privileged: true",
        ),
        pod(
            "report-b",
            "hostnet",
            &format!(
                "seccompProfile: {{type: RuntimeDefault}}, seLinuxOptions: {{type: \"{hostile}\"}}"
            ),
            "  hostNetwork: true\n",
            "capabilities: {add: [NET_ADMIN]}",
        ),
    ];
    kube.apply(&docs.join("---\n"));
    // Only the report's roles: a ServiceAccount bound to them, its token in a kubeconfig.
    kube.apply(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: report-reader, namespace: report-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: report-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: syscribe-report}
subjects: [{kind: ServiceAccount, name: report-reader, namespace: report-a}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: report-reader, namespace: syscribe}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: syscribe-report-metrics}
subjects: [{kind: ServiceAccount, name: report-reader, namespace: report-a}]
"#,
    );
    let token = kube.ok(&["create", "token", "report-reader", "-n", "report-a"]);
    let admin = kube.json(&["config", "view", "--raw", "--minify"]);
    let cluster = &admin["clusters"][0]["cluster"];
    let dir = syscribe_tests::TempDir::new("report");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "reader", "user": {"token": token.trim()}}],
            "contexts": [{"name": "r", "context": {"cluster": "c", "user": "reader"}}],
            "current-context": "r",
        })
        .to_string(),
    )
    .unwrap();
    let report = |args: &[&str]| {
        let out = syscribe_tests::syscribe()
            .env("KUBECONFIG", &kubeconfig)
            .arg("report")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "syscribe report {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Every pod running (the privileged one may crash-loop: still not finished), and the
    // localhost pod's mkdir counted by the daemon.
    let json = kube.wait_for(
        "the report counting the localhost pod's denial",
        2 * MINUTE,
        || {
            let json: Value = serde_json::from_str(&report(&["--format", "json"])).unwrap();
            let ns = json["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "report-a")?
                .clone();
            let row = ns["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["pod"] == "localhost")?
                .clone();
            (row["denials"]["seccomp"].as_u64()? >= 1).then_some(json)
        },
    );
    let namespace = |name: &str| {
        json["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {json}"))
            .clone()
    };
    let a = namespace("report-a");
    let t = &a["totals"];
    assert_eq!(
        (
            t["containers"].as_u64(),
            t["unconfined"].as_u64(),
            t["runtimeDefault"].as_u64(),
            t["localhost"].as_u64()
        ),
        (Some(5), Some(2), Some(2), Some(1)),
        "{a}"
    );
    assert_eq!(t["coverage"], 60.0, "{a}");
    assert_eq!(t["localhostNotInstalled"], 0, "{a}");
    // report-rec-main is recorded for report-a/main: the four pods' main containers leave it unused.
    assert_eq!(t["recordedUnused"], 4, "{a}");
    let row = |ns: &Value, pod: &str, container: &str| {
        ns["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["pod"] == pod && c["container"] == container)
            .unwrap_or_else(|| panic!("no {pod}/{container} in {ns}"))
            .clone()
    };
    let local = row(&a, "localhost", "main");
    assert_eq!(local["seccomp"]["type"], "Localhost");
    assert_eq!(local["seccomp"]["profile"], "report-log");
    assert_eq!(local["seccomp"]["nodeStatus"], "Installed");
    assert_eq!(local["node"], kube.node.as_str());
    assert_eq!(row(&a, "runtime-default", "setup")["kind"], "init");
    assert_eq!(
        row(&a, "runtime-default", "main")["seccomp"]["source"],
        "pod"
    );
    assert_eq!(
        row(&a, "no-profile", "main")["seccomp"]["source"],
        "default"
    );
    assert_eq!(
        row(&a, "no-profile", "main")["recordedUnused"],
        serde_json::json!(["report-rec-main"])
    );
    let b = namespace("report-b");
    let t = &b["totals"];
    assert_eq!(
        (
            t["containers"].as_u64(),
            t["unconfined"].as_u64(),
            t["runtimeDefault"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{b}"
    );
    assert_eq!(t["coverage"], 50.0);
    assert_eq!(
        (
            t["privileged"].as_u64(),
            t["hostNamespaces"].as_u64(),
            t["addedCapabilities"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{b}"
    );
    let privileged = row(&b, "privileged", "main");
    assert_eq!(privileged["seccomp"]["source"], "privileged");
    assert_eq!(privileged["seccomp"]["requested"], "RuntimeDefault");
    let hostnet = row(&b, "hostnet", "main");
    assert_eq!(hostnet["hostNetwork"], true);
    assert_eq!(
        hostnet["addedCapabilities"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert_eq!(hostnet["selinuxType"], hostile);
    let node = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == kube.node.as_str())
        .unwrap_or_else(|| panic!("no node in {json}"));
    assert_eq!(
        node["metrics"], true,
        "the daemon's /metrics through the pod proxy: {node}"
    );
    let profile = json["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "report-log")
        .unwrap();
    assert_eq!(profile["nodes"][kube.node.as_str()], "Installed");
    println!(
        "report: cluster {} containers, coverage {}%; report-a 60.0%, report-b 50.0%",
        json["cluster"]["containers"], json["cluster"]["coverage"]
    );

    // The table, and -n: only that namespace.
    let table = report(&["-n", "report-b"]);
    assert!(
        table.contains("Namespace report-b: 2 containers, coverage 50.0%"),
        "{table}"
    );
    assert!(!table.contains("report-a"), "{table}");
    println!("$ syscribe report -n report-b\n{table}");
    println!(
        "$ syscribe report -n report-a --format json\n{}",
        report(&["-n", "report-a", "--format", "json"])
    );

    // The HTML page, as a real browser renders it.
    let page = dir.join("report.html");
    report(&["--format", "html", "-o", page.to_str().unwrap()]);
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--dump-dom"])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (Debian's package, installed by cargo xtask setup)");
    let dom = String::from_utf8_lossy(&out.stdout);
    if let Some(keep) = std::env::var_os("SYSCRIBE_REPORT_EXAMPLES") {
        // For docs/commands.md: the page, kept.
        let keep = std::path::PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&page, keep.join("report.html"));
    }
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium: {out:?}"
    );
    for shown in [
        "report-a",
        "report-b",
        "60.0%",
        "50.0%",
        "Security profile report",
        "report-log",
    ] {
        assert!(
            dom.contains(shown),
            "the page does not show {shown:?}:\n{dom}"
        );
    }
    // The SELinux type is text in the page: escaped in the DOM, no script element.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    let shot = dir.join("report.png");
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--window-size=1200,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success() && std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "chromium --screenshot: {out:?}"
    );

    // The daemon's gauges, through the API server's pod proxy.
    let daemon = kube.json(&[
        "get",
        "pods",
        "-n",
        "syscribe",
        "-l",
        "app.kubernetes.io/name=syscribe",
    ]);
    let daemon = daemon["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/namespaces/syscribe/pods/{daemon}:9890/proxy/metrics");
    let node = kube.node.clone();
    let wanted = [
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="Unconfined"}} 2"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="RuntimeDefault"}} 2"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-a",seccomp="Localhost"}} 1"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-b",seccomp="Unconfined"}} 1"#
        ),
        format!(
            r#"syscribe_node_containers{{node="{node}",namespace="report-b",seccomp="RuntimeDefault"}} 1"#
        ),
        format!(r#"syscribe_node_privileged_containers{{node="{node}",namespace="report-b"}} 1"#),
        format!(
            r#"syscribe_node_host_namespace_containers{{node="{node}",namespace="report-b"}} 1"#
        ),
        "syscribe_node_coverage_namespaces_folded 0".to_owned(),
    ];
    kube.wait_for("the daemon's gauges", MINUTE, || {
        let text = kube.ok(&["get", "--raw", &path]);
        wanted
            .iter()
            .all(|line| text.lines().any(|l| l == line))
            .then_some(())
    });

    kube.ok(&[
        "delete",
        "namespace",
        "report-a",
        "report-b",
        "--wait=true",
        "--timeout=120s",
    ]);
    kube.ok(&["delete", "clusterrolebinding", "report-reader"]);
    kube.ok(&["delete", "rolebinding", "-n", "syscribe", "report-reader"]);
    kube.ok(&[
        "delete",
        "seccompprofile",
        "report-log",
        "report-rec-main",
        "--wait=true",
        "--timeout=120s",
    ]);
}

fn namespace_yaml(name: &str, opted_in: bool) -> String {
    let labels = if opted_in {
        "\n  labels: {spo.x-k8s.io/enable-binding: \"true\"}"
    } else {
        ""
    };
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n")
}

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
    kube.apply(&namespace_yaml(on, true));
    kube.apply(&namespace_yaml(off, false));
    kube.apply(&no_mkdir_profile(profile));
    kube.wait_for(
        &format!("SeccompProfile {profile} Installed"),
        MINUTE,
        || {
            let sp = kube.json(&["get", "seccompprofile", profile]);
            (sp["status"]["status"] == "Installed").then_some(())
        },
    );
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
            kube.ok(&["delete", "pod", "-n", on, "locked-2", "--wait=true"]);
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
    kube.ok(&[
        "delete",
        "profilebinding",
        "-n",
        on,
        "by-label",
        "other",
        "--wait=true",
    ]);

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
    let logs = kube.wait_for("its check printed", MINUTE, || {
        let logs = kube.ok(&["logs", "-n", on, &pod]);
        logs.contains("mkdir-status").then_some(logs)
    });
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
    kube.ok(&["delete", "deployment", "-n", on, "web", "--wait=true"]);
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
    kube.ok(&[
        "delete",
        "profilebinding",
        "-n",
        on,
        "by-image",
        "--wait=true",
    ]);
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
    kube.apply(&namespace_yaml(on, true));
    kube.apply(&namespace_yaml(off, false));
    kube.ok(&[
        "scale",
        "-n",
        "syscribe",
        "deployment/syscribe-webhook",
        "--replicas=0",
    ]);
    kube.wait_for("no webhook pod left", MINUTE, || {
        let pods = kube.json(&[
            "get",
            "pods",
            "-n",
            "syscribe",
            "-l",
            "app.kubernetes.io/name=syscribe-webhook",
        ]);
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

/// Everything above ran under deploy/'s ServiceAccount and ClusterRole with the real
/// authorizer: not one request of the daemon or the webhook may have been refused or failed.
#[test]
fn s9_the_daemon_and_webhook_logged_no_api_error() {
    let kube = Kube::get();
    deployed(&kube);
    for (what, selector) in [
        ("daemon", "app.kubernetes.io/name=syscribe"),
        ("webhook", "app.kubernetes.io/name=syscribe-webhook"),
    ] {
        let logs = kube.ok(&[
            "logs",
            "-n",
            "syscribe",
            "-l",
            selector,
            "--tail=-1",
            "--prefix",
        ]);
        assert!(!logs.trim().is_empty(), "the {what} logged nothing at all");
        let bad: Vec<&str> = logs
            .lines()
            .filter(|l| {
                // A 403 as kube-rs and the API server write it; a bare "403" also
                // matched pod UIDs (`podb0010832-a403-…`, seen in a green run).
                l.contains("code: 403")
                    || l.contains("\"code\":403")
                    || l.contains("Forbidden")
                    || l.contains("forbidden")
                    || l.contains("\"level\":\"ERROR\"")
                    || l.contains("\"level\":\"WARN\"")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the {what} logged API errors or warnings:\n{}",
            bad.join("\n")
        );
    }
}
