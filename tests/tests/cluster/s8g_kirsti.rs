//! Kirsti, the cluster's operator: a deleted node (s8g) and the daemon's /metrics (s8h).

use std::time::Duration;

use syscribe_tests::cluster::{Kube, deployed, image, metric};

use super::common::{
    MINUTE, installed_file, no_mkdir_profile, recording_namespace, recording_yaml, seccomp_profile,
};

/// The finalizers of a SeccompProfile (empty when it is gone).
fn finalizers(kube: &Kube, name: &str) -> Vec<String> {
    seccomp_profile(kube, name)
        .and_then(|sp| sp["metadata"]["finalizers"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// Issue 15, Kirsti: a node that goes leaves no profile stuck. A second Node object is
/// registered and given what a daemon there would leave (its finalizer on two profiles — once
/// as its daemon applies it, once added by another hand — and its node statuses); a profile
/// deleted meanwhile hangs on it. Deleting the Node object, the surviving daemon removes them:
/// the deleted profile goes, the other keeps only this node's finalizer, and deleting it does
/// not hang.
#[test]
fn s8g_kirsti_deletes_a_node_and_no_profile_hangs_on_it() {
    let kube = Kube::get();
    deployed(&kube);
    let ghost = "ghost-node";
    let ghost_finalizer = format!("syscribe.dev/installed-{ghost}");
    let mine = format!("syscribe.dev/installed-{}", kube.node);
    // No kubelet runs it; the taint keeps the DaemonSet's pod and every test pod off it.
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: {ghost}, labels: {{syscribe.dev/test: ghost}}}}
spec:
  taints: [{{key: syscribe.dev/ghost, effect: NoSchedule}}]
"#
    ));
    for name in ["ghost-a", "ghost-b"] {
        kube.apply(&no_mkdir_profile(name));
    }
    for name in ["ghost-a", "ghost-b"] {
        kube.wait_for(&format!("{name} Installed here"), MINUTE, || {
            finalizers(&kube, name).contains(&mine).then_some(())
        });
    }
    // ghost-a: the finalizer as the ghost's daemon applies it (its own field manager).
    let out = kube.with_stdin(
        &["apply", "--server-side", &format!("--field-manager=syscribe-{ghost}")],
        &format!(
            "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {{name: ghost-a, finalizers: [{ghost_finalizer}]}}\n"
        ),
    );
    assert!(out.status.success(), "{out:?}");
    // ghost-b: added by another hand (a JSON patch).
    kube.ok(&[
        "patch",
        "sp",
        "ghost-b",
        "--type=json",
        "-p",
        &format!(r#"[{{"op":"add","path":"/metadata/finalizers/-","value":"{ghost_finalizer}"}}]"#),
    ]);
    // Its node statuses, as its daemon writes them (owned by the profile).
    for name in ["ghost-a", "ghost-b"] {
        let uid = kube.ok(&["get", "sp", name, "-o", "jsonpath={.metadata.uid}"]);
        kube.apply(&format!(
            r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SecurityProfileNodeStatus
metadata:
  name: {name}-{ghost}
  labels:
    spo.x-k8s.io/profile-id: SeccompProfile-{name}
    spo.x-k8s.io/node-name: {ghost}
    spo.x-k8s.io/profile-state: Installed
    spo.x-k8s.io/profile-kind: SeccompProfile
  ownerReferences:
  - {{apiVersion: security-profiles-operator.x-k8s.io/v1, kind: SeccompProfile, name: {name}, uid: {uid}}}
nodeName: {ghost}
status: Installed
"#
        ));
        let f = finalizers(&kube, name);
        assert!(
            f.contains(&mine) && f.contains(&ghost_finalizer),
            "{name}: {f:?}"
        );
    }
    // Deleted while the ghost holds it: it hangs.
    kube.ok(&["delete", "sp", "ghost-a", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(5));
    let held = seccomp_profile(&kube, "ghost-a").expect("ghost-a hangs on the ghost's finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(
        held["metadata"]["finalizers"],
        serde_json::json!([ghost_finalizer]),
        "this node let it go, the ghost holds it: {held}"
    );
    println!("before: ghost-a Terminating, held only by {ghost_finalizer}");

    // The node goes.
    let deleted = std::time::Instant::now();
    kube.delete(&["node", ghost]);
    kube.wait_for("ghost-a gone", MINUTE, || {
        seccomp_profile(&kube, "ghost-a").is_none().then_some(())
    });
    kube.wait_for("ghost-b without the ghost's finalizer", MINUTE, || {
        (finalizers(&kube, "ghost-b") == [mine.clone()]).then_some(())
    });
    kube.wait_for("the ghost's node statuses gone", MINUTE, || {
        let list = kube.json(&[
            "get",
            "spns",
            "-l",
            &format!("spo.x-k8s.io/node-name={ghost}"),
        ]);
        list["items"].as_array()?.is_empty().then_some(())
    });
    println!(
        "node {ghost} deleted: its finalizers and node statuses removed within {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    let logs = kube.ok(&["logs", "-n", "syscribe", &kube.daemon_pod(), "--tail=-1"]);
    assert!(
        logs.lines()
            .any(|l| l.contains("cleaned up after a node that is gone") && l.contains(ghost)),
        "the daemon says what it did"
    );
    let b = seccomp_profile(&kube, "ghost-b").unwrap();
    assert_eq!(b["status"]["status"], "Installed", "{b}");
    kube.wait_for("ghost-b's summary on the one node left", MINUTE, || {
        let b = seccomp_profile(&kube, "ghost-b")?;
        (b["status"]["nodes"] == "1/1").then_some(())
    });
    // Deleting a profile does not hang any more.
    let out = kube.run(&["delete", "sp", "ghost-b", "--wait=true", "--timeout=60s"]);
    assert!(out.status.success(), "{out:?}");
}

/// Issue 15, Kirsti: the daemon's /metrics scraped from inside the cluster, through the pod's
/// port: the audit counters with upstream's label names, and a counter per operation —
/// profiles installed, removed and failed, recordings started and finished, API errors by
/// verb — each moving with what was done.
#[test]
fn s8h_kirsti_scrapes_the_daemons_metrics_from_inside_the_cluster() {
    let kube = Kube::get();
    deployed(&kube);
    let ns = "kirsti";
    recording_namespace(&kube, ns);
    let before = kube.scrape_metrics_from_a_pod(ns, "scrape-before");
    let count = |text: &str, family: &str, kind: &str| {
        metric(text, &format!("{family}{{kind=\"{kind}\"}}"))
    };
    // A profile that logs mkdir (installed), one on a base that does not exist (failed).
    kube.apply(
        r#"apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: kirsti-log}
spec:
  defaultAction: SCMP_ACT_ALLOW
  syscalls:
  - action: SCMP_ACT_LOG
    names: [mkdir, mkdirat]
---
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: kirsti-orphan}
spec:
  defaultAction: SCMP_ACT_ALLOW
  baseProfileName: kirsti-no-such-base
"#,
    );
    kube.wait_status("seccompprofile", "kirsti-log", "Installed", MINUTE);
    // Refused: its base does not exist.
    kube.wait_status("seccompprofile", "kirsti-orphan", "Error", MINUTE);
    // A recorded pod (started, finished) and a logged mkdir under kirsti-log.
    kube.apply(&recording_yaml(ns, "once", "once"));
    let pod = |name: &str, labels: &str, security: &str, command: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: kirsti, labels: {{{labels}}}}}
spec:
  restartPolicy: Never
  securityContext:
    seccompProfile: {security}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "{command}"]
"#,
            image = image("workload")
        )
    };
    kube.apply(&pod(
        "once",
        "app: once",
        "{type: RuntimeDefault}",
        "uname -a",
    ));
    kube.apply(&pod(
        "logger",
        "app: logger",
        "{type: Localhost, localhostProfile: operator/kirsti-log.json}",
        "mkdir /tmp/logged; echo made",
    ));
    kube.wait_succeeded(ns, "once", MINUTE);
    kube.wait_succeeded(ns, "logger", MINUTE);
    kube.delete(&["pod", "-n", ns, "once"]);
    kube.wait_for("once-main published", MINUTE, || {
        seccomp_profile(&kube, "once-main")
    });
    // Removed: kirsti-log deleted once its pod is gone.
    kube.delete(&["pod", "-n", ns, "logger"]);
    // The logged mkdir, counted under upstream's labels, in upstream's order.
    let node = kube.node.clone();
    let audit = |text: &str| -> f64 {
        text.lines()
            .filter_map(|l| {
                l.strip_prefix("security_profiles_operator_seccomp_profile_audit_total{")
            })
            .filter_map(|l| l.rsplit_once("} "))
            .filter(|(labels, _)| {
                let pairs: Vec<(&str, &str)> = labels
                    .split("\",")
                    .filter_map(|kv| kv.split_once("=\""))
                    .map(|(k, v)| (k, v.trim_end_matches('"')))
                    .collect();
                let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
                keys == [
                    "node",
                    "namespace",
                    "pod",
                    "container",
                    "executable",
                    "syscall",
                ] && pairs[0].1 == node
                    && pairs[1..4]
                        == [
                            ("namespace", "kirsti"),
                            ("pod", "logger"),
                            ("container", "main"),
                        ]
                    && pairs[4].1.ends_with("busybox")
                    && matches!(pairs[5].1, "mkdir" | "mkdirat")
            })
            .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
            .sum()
    };
    kube.delete(&["sp", "kirsti-log"]);
    kube.wait_for("kirsti-log's file removed", MINUTE, || {
        installed_file("kirsti-log").is_none().then_some(())
    });
    let after = kube.wait_for("the daemon's counters moved", MINUTE, || {
        let text = kube.scrape_metrics_from_a_pod(ns, "scrape-after");
        (audit(&text) >= 1.0).then_some(text)
    });
    let moved =
        |family: &str, kind: &str| count(&after, family, kind) - count(&before, family, kind);
    for (family, kind) in [
        ("syscribe_profiles_installed_total", "SeccompProfile"),
        ("syscribe_profiles_removed_total", "SeccompProfile"),
        ("syscribe_profiles_failed_total", "SeccompProfile"),
        ("syscribe_recordings_started_total", "SeccompProfile"),
        ("syscribe_recordings_finished_total", "SeccompProfile"),
    ] {
        assert!(
            moved(family, kind) >= 1.0,
            "{family}{{kind={kind}}} did not move: {} → {}\n{after}",
            count(&before, family, kind),
            count(&after, family, kind)
        );
    }
    assert!(
        after.contains("# TYPE syscribe_api_errors_total counter"),
        "{after}"
    );
    for line in after
        .lines()
        .filter(|l| l.starts_with("syscribe_api_errors_total{"))
    {
        assert!(
            line.starts_with("syscribe_api_errors_total{verb=\"") && line.contains("\",code=\""),
            "{line}"
        );
    }
    println!(
        "/metrics from a pod (http://<node>:9890/metrics), the lines an SRE alerts on:\n{}",
        after
            .lines()
            .filter(|l| (l.starts_with("syscribe_")
                || l.starts_with("security_profiles_operator_"))
                && (l.contains("kirsti") || !l.contains("namespace=")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    kube.delete(&["namespace", ns, "--timeout=120s"]);
    kube.delete(&["sp", "kirsti-orphan", "once-main"]);
}
