//! SELinux: profiles validated and reported on a node without SELinux (s7), and a pod's AVCs
//! recorded into a SelinuxProfile (s7b).

use syscribe_tests::cluster::{Kube, TEST_AUDIT_LOG, deployed, image};

use super::common::{MINUTE, label_for_recording};

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
        kube.delete(&[kind, name]);
    }
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
    label_for_recording(&kube, "selinux-shop");
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
    kube.wait_running("selinux-shop", "web", MINUTE);
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
    kube.delete(&["pod", "-n", "selinux-shop", "web"]);
    let profile = kube.wait_for("SelinuxProfile seli-web published", MINUTE, || {
        kube.object("selinuxprofile", "seli-web")
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
    kube.delete(&["namespace", "selinux-shop"]);
    kube.delete(&["selinuxprofile", "seli-web"]);
    // The test's lines leave the node with it.
    std::fs::remove_file(TEST_AUDIT_LOG).unwrap();
}
