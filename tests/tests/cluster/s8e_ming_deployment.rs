//! Ming records a Deployment, merges its replicas and serves under the profile (s8e).

use std::time::Duration;

use serde_json::Value;
use syscribe_tests::cluster::{Kube, deployed, image, now_seconds};

use super::common::{MINUTE, allowed_names, recording_namespace, seccomp_profile};

/// The names and pod IPs of a namespace's Running pods with `selector`, once there are `n`.
fn running_pods(kube: &Kube, namespace: &str, selector: &str, n: usize) -> Vec<(String, String)> {
    kube.wait_for(
        &format!("{n} Ready pods {selector} in {namespace}"),
        2 * MINUTE,
        || {
            let pods = kube.json(&["get", "pods", "-n", namespace, "-l", selector]);
            let ready: Vec<(String, String)> = pods["items"]
                .as_array()?
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .map(|p| {
                    (
                        p["metadata"]["name"].as_str().unwrap().to_owned(),
                        p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            (ready.len() == n).then_some(ready)
        },
    )
}

/// Runs a client pod that asks each `ip:port` `rounds` times for `/`; returns what it printed
/// (one `ok <body>` or `FAIL <address>` line per request). HTTP/1.0 by hand through `nc`: the
/// image's busybox `wget` (Debian's static build) crashes on any answer.
fn drive(kube: &Kube, namespace: &str, name: &str, addresses: &[String], rounds: u32) -> String {
    let targets = addresses.join(" ");
    let script = format!(
        "for i in $(seq 1 {rounds}); do for a in {targets}; do r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${{a%:*}} ${{a##*:}}); case \"$r\" in *' 200 OK'*) echo \"ok $(echo \"$r\" | tail -n 1)\";; *) echo \"FAIL $a\";; esac; done; done"
    );
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: client}}}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {image}
    command: [sh, -c, {script:?}]
"#,
        image = image("workload")
    ));
    kube.wait_succeeded(namespace, name, 2 * MINUTE);
    kube.ok(&["logs", "-n", namespace, name])
}

/// The Deployment of Ming's shop: busybox httpd serving a page that names its pod. Run by crun:
/// to see a denial the profile must ask the kernel to log it (`SECCOMP_FILTER_FLAG_LOG`; an
/// ERRNO is not logged otherwise), and Debian's runc 1.1.5 refuses any profile with flags
/// ("seccomp flags are not yet supported by runc", seen here); crun applies them.
fn web_deployment(namespace: &str, replicas: u32, seccomp: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      runtimeClassName: crun
      terminationGracePeriodSeconds: 2
      securityContext:
        seccompProfile: {seccomp}
      containers:
      - name: httpd
        image: {image}
        command: [sh, -c, "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#,
        image = image("workload")
    )
}

/// Issue 15, Ming: a Deployment of two replicas of a real server, recorded with `mergeStrategy:
/// Containers` while a client drives it; scaled to 0, each replica leaves a partial profile;
/// deleting the recording merges them into one `<recording>-<container>`; `syscribe pull`
/// writes it as OCI JSON; the same Deployment runs under it and serves the client; a syscall
/// the recording never saw is denied, and the daemon's log has one enriched line for it within
/// two seconds.
#[test]
fn s8e_ming_records_a_deployment_merges_its_replicas_and_serves_under_the_profile() {
    let kube = Kube::get();
    deployed(&kube);
    let ns = "ming";
    recording_namespace(&kube, ns);
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: ProfileRecording
metadata: {name: web, namespace: ming}
spec:
  kind: SeccompProfile
  recorder: Bpf
  mergeStrategy: Containers
  podSelector: {matchLabels: {app: web}}
"#,
    );
    kube.apply(&web_deployment(ns, 2, "{type: RuntimeDefault}"));
    let replicas = running_pods(&kube, ns, "app=web", 2);
    kube.wait_for("the recording naming both replicas", MINUTE, || {
        let rec = kube.json(&["get", "profilerecording", "-n", ns, "web"]);
        (rec["status"]["activeWorkloads"].as_array().map(Vec::len) == Some(2)).then_some(())
    });
    let addresses: Vec<String> = replicas
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    let out = drive(&kube, ns, "client", &addresses, 10);
    for (pod, _) in &replicas {
        assert_eq!(
            out.lines()
                .filter(|l| *l == format!("ok hello-from-{pod}"))
                .count(),
            10,
            "each replica answers while recorded:\n{out}"
        );
    }
    println!(
        "recorded: {} requests served by {:?}",
        out.lines().count(),
        replicas
    );

    // Scaled to 0: one partial profile per replica, not installed.
    let scaled = std::time::Instant::now();
    kube.ok(&["scale", "deployment", "-n", ns, "web", "--replicas=0"]);
    let partial_selector = "spo.x-k8s.io/recording-id=web,spo.x-k8s.io/partial=true";
    let partials = kube.wait_for("two partial profiles", 2 * MINUTE, || {
        let list = kube.json(&["get", "seccompprofile", "-l", partial_selector]);
        let items = list["items"].as_array()?.clone();
        (items.len() == 2 && items.iter().all(|p| p["status"]["status"] == "Partial"))
            .then_some(items)
    });
    println!(
        "scaled to 0: partial profiles {:?} after {:.1} s",
        partials
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        scaled.elapsed().as_secs_f64()
    );
    for partial in &partials {
        let name = partial["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-httpd-"), "{name}");
        assert!(
            !std::path::Path::new(&format!("/var/lib/kubelet/seccomp/operator/{name}.json"))
                .exists(),
            "a partial profile is never installed"
        );
    }
    assert!(
        seccomp_profile(&kube, "web-httpd").is_none(),
        "merged before the recording ended"
    );

    // Deleting the recording merges them.
    let deleted = std::time::Instant::now();
    kube.delete(&["profilerecording", "-n", ns, "web", "--timeout=120s"]);
    let merged = kube.wait_status("seccompprofile", "web-httpd", "Installed", 2 * MINUTE);
    println!(
        "recording deleted: web-httpd merged and Installed after {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    let left = kube.json(&["get", "seccompprofile", "-l", partial_selector]);
    assert_eq!(
        left["items"].as_array().unwrap().len(),
        0,
        "partials left: {left}"
    );
    let labels = &merged["metadata"]["labels"];
    assert_eq!(labels["spo.x-k8s.io/recording-id"], "web", "{merged}");
    assert_eq!(labels["spo.x-k8s.io/recording-namespace"], ns, "{merged}");
    assert!(labels.get("spo.x-k8s.io/partial").is_none(), "{merged}");
    let coverage: Value = serde_json::from_str(
        merged["metadata"]["annotations"]["spo.x-k8s.io/syscall-coverage"]
            .as_str()
            .unwrap_or_else(|| panic!("no coverage annotation: {merged}")),
    )
    .unwrap();
    assert_eq!(coverage["version"], "v1", "{coverage}");
    assert_eq!(coverage["total"], 2, "two replicas merged: {coverage}");
    let names = allowed_names(&merged["spec"]);
    for needed in ["bind", "listen", "execve"] {
        assert!(
            names.iter().any(|n| n == needed),
            "{needed} not in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n == "accept" || n == "accept4"),
        "httpd accepted connections: {names:?}"
    );
    for name in &names {
        let count = coverage["syscalls"][name.as_str()].as_u64();
        assert!(
            matches!(count, Some(1 | 2)),
            "{name}: coverage {count:?} in {coverage}"
        );
    }
    assert!(!names.iter().any(|n| n == "sync"), "{names:?}");

    // `syscribe pull`: the OCI JSON, the very file the node installed.
    let dir = syscribe_tests::TempDir::new("pull");
    let pulled = dir.join("web-httpd.json");
    let out = syscribe_tests::syscribe()
        .args(["pull", "web-httpd", "-o"])
        .arg(&pulled)
        .output()
        .unwrap();
    assert!(out.status.success(), "syscribe pull: {out:?}");
    let oci: Value = serde_json::from_slice(&std::fs::read(&pulled).unwrap()).unwrap();
    let installed: Value = serde_json::from_slice(
        &std::fs::read("/var/lib/kubelet/seccomp/operator/web-httpd.json").unwrap(),
    )
    .unwrap();
    assert_eq!(oci, installed, "the pulled profile is the installed one");
    assert_eq!(oci["defaultAction"], "SCMP_ACT_ERRNO");
    println!(
        "syscribe pull web-httpd: {} syscalls allowed, {} bytes of OCI JSON",
        names.len(),
        std::fs::metadata(&pulled).unwrap().len()
    );

    // Denials are logged by the kernel only when the filter asks for it: Rajesh turns that on.
    kube.ok(&[
        "patch",
        "seccompprofile",
        "web-httpd",
        "--type=merge",
        "-p",
        r#"{"spec":{"flags":["SECCOMP_FILTER_FLAG_LOG"]}}"#,
    ]);
    kube.wait_for(
        "web-httpd installed again with the LOG flag",
        MINUTE,
        || {
            let text =
                std::fs::read_to_string("/var/lib/kubelet/seccomp/operator/web-httpd.json").ok()?;
            text.contains("SECCOMP_FILTER_FLAG_LOG").then_some(())
        },
    );

    // The same Deployment under the profile serves the client.
    kube.ok(&[
        "patch",
        "deployment",
        "-n",
        ns,
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/securityContext/seccompProfile","value":{"type":"Localhost","localhostProfile":"operator/web-httpd.json"}}]"#,
    ]);
    kube.ok(&["scale", "deployment", "-n", ns, "web", "--replicas=2"]);
    let replicas = running_pods(&kube, ns, "app=web", 2);
    let service = kube.ok(&[
        "get",
        "service",
        "-n",
        ns,
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let mut addresses: Vec<String> = replicas
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    addresses.push(format!("{service}:80"));
    let out = drive(&kube, ns, "client-2", &addresses, 10);
    assert!(!out.contains("FAIL"), "under the recorded profile:\n{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("ok hello-from-web-"))
            .count(),
        30,
        "{out}"
    );
    println!(
        "under operator/web-httpd.json: 30 of 30 requests served (both replicas and the Service)"
    );

    // One syscall the recording never saw: the same container, its command with a `sync`
    // the workload never ran. (Not `kubectl exec`: crun's exec does its own work after it
    // applies the filter — `stat` of /proc/self/setgroups, refused here — which a recording of
    // the container's start never sees.)
    let daemon = kube.daemon_pod();
    let created = now_seconds();
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: stranger, namespace: {ns}}}
spec:
  runtimeClassName: crun
  terminationGracePeriodSeconds: 2
  securityContext:
    seccompProfile: {{type: Localhost, localhostProfile: operator/web-httpd.json}}
  containers:
  - name: httpd
    image: {image}
    command: [sh, -c, "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && sync && exec httpd -f -p 8080 -h /www"]
"#,
        image = image("workload")
    ));
    let wanted = |line: &str| {
        line.contains("\"syscallName\":\"sync\"") && line.contains("\"pod\":\"stranger\"")
    };
    let (logged_at, line) = kube.wait_for("the daemon logging the sync denial", MINUTE, || {
        kube.timed_logs("syscribe", &daemon)
            .into_iter()
            .find(|(at, line)| *at >= created - 1.0 && wanted(line))
    });
    let denial: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(denial["type"], "seccomp", "{denial}");
    assert_eq!(denial["namespace"], ns, "{denial}");
    assert_eq!(denial["container"], "httpd", "{denial}");
    assert!(
        denial["executable"]
            .as_str()
            .is_some_and(|e| e.ends_with("busybox")),
        "{denial}"
    );
    let audit_time: f64 = denial["timestamp"]
        .as_str()
        .and_then(|t| t.split(':').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{denial}"));
    let delay = logged_at - audit_time;
    println!(
        "denial: {line}\n  the audit record at {audit_time:.3}, written to the daemon's log {delay:.3} s later"
    );
    assert!(
        audit_time >= created - 1.0,
        "the audit record's time {audit_time} is before the pod was made ({created})"
    );
    assert!(
        delay <= 2.0,
        "the enriched line came {delay:.3} s after the denial"
    );
    // It runs on (the ERRNO is ignored by sync), and one denial is one line.
    kube.wait_running(ns, "stranger", MINUTE);
    std::thread::sleep(Duration::from_secs(3));
    let lines: Vec<String> = kube
        .timed_logs("syscribe", &daemon)
        .into_iter()
        .filter(|(at, line)| *at >= created - 1.0 && line.contains("\"pod\":\"stranger\""))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(
        lines.iter().filter(|l| wanted(l)).count(),
        1,
        "one enriched line for the denial:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        lines.len(),
        1,
        "nothing else the stranger did was denied:\n{}",
        lines.join("\n")
    );

    kube.delete(&["namespace", ns, "--timeout=120s"]);
    kube.delete(&["seccompprofile", "web-httpd"]);
}
