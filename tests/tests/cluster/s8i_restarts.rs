//! Restarts: of the daemon mid-recording (s8i) and of the API server (s8j).

use std::time::Duration;

use syscribe_tests::cluster::{
    Kube, cpu_seconds, daemon_pids, deployed, image, now_seconds, stop_component, tolerate_warnings,
};

use super::common::{
    MINUTE, allowed_names, no_mkdir_profile, recording_namespace, recording_yaml, seccomp_profile,
};

/// The syscalls allowed by a SeccompProfile's rules, once it exists.
fn profile_names(kube: &Kube, name: &str) -> Option<Vec<String>> {
    seccomp_profile(kube, name).map(|sp| allowed_names(&sp["spec"]))
}

/// Issue 15, Ming: `kubectl rollout restart ds/syscribe` in the middle of a recording loses
/// nothing — a syscall made before the restart (sync), one made while no daemon process ran at
/// all (fdatasync, or another of its own if the exec was late: the pinned recorder goes on in
/// the kernel) and one after (syncfs) are all in
/// the profile — and the snapshot annotation produces it while the pod goes on running.
#[test]
fn s8i_a_restart_of_the_daemon_mid_recording_loses_nothing_and_a_snapshot_keeps_the_pod() {
    let kube = Kube::get();
    deployed(&kube);
    let ns = "live";
    recording_namespace(&kube, ns);
    kube.apply(&recording_yaml(ns, "live", "live"));
    kube.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: live, namespace: live, labels: {{app: live}}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "touch /tmp/f; exec sleep 3600"]
"#,
        image = image("workload")
    ));
    kube.wait_for("the recording naming the pod", MINUTE, || {
        let rec = kube.json(&["get", "profilerecording", "-n", ns, "live"]);
        (rec["status"]["activeWorkloads"] == serde_json::json!(["live/live"])).then_some(())
    });
    kube.wait_running(ns, "live", MINUTE);
    let uid = kube.ok(&[
        "get",
        "pod",
        "-n",
        ns,
        "live",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", "-n", ns, "live", "--"];
        all.extend(args);
        kube.ok(&all);
    };
    // Before.
    exec(&["sync"]);
    // During: the old daemon process has exited and the new one has not taken the pinned
    // recorder over yet (its "daemon started"). A `kubectl exec` takes a few tenths of a second
    // and the new pod starts about as fast: an attempt that ends after the new daemon started
    // proves nothing, so another restart is tried with another syscall of its own.
    let attempts: [(&[&str], &str); 3] = [
        (&["sync", "-d", "/tmp/f"], "fdatasync"),
        (&["fallocate", "-l", "4096", "/tmp/g"], "fallocate"),
        (&["setsid", "true"], "setsid"),
    ];
    let mut during = None;
    let mut daemon = String::new();
    for (command, syscall) in attempts {
        let old = daemon_pids();
        assert_eq!(old.len(), 1, "{old:?}");
        kube.ok(&["rollout", "restart", "-n", "syscribe", "ds/syscribe"]);
        let restarted = std::time::Instant::now();
        kube.wait_for("the old daemon process gone", MINUTE, || {
            daemon_pids().is_empty().then_some(())
        });
        let gap_seen = restarted.elapsed();
        exec(command);
        let done = now_seconds();
        kube.ok(&[
            "rollout",
            "status",
            "-n",
            "syscribe",
            "ds/syscribe",
            "--timeout=120s",
        ]);
        daemon = kube.daemon_pod();
        let logs = kube.timed_logs("syscribe", &daemon);
        let started = logs
            .iter()
            .find(|(_, l)| l.contains("daemon started"))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("the new daemon did not say it started:\n{logs:?}"));
        // Ready (what `rollout status` waited for) only once every pod to record is known.
        assert!(
            logs.iter().any(|(at, l)| *at >= started
                && l.contains("ready: pods, namespaces and recordings listed")),
            "the rollout was Ready before the new daemon had listed what to record:\n{logs:?}"
        );
        println!(
            "restart: old daemon gone {:.1} s after `rollout restart`; {syscall} exec'd then; the new daemon started {:.2} s after it returned",
            gap_seen.as_secs_f64(),
            started - done
        );
        if started > done {
            during = Some(syscall);
            break;
        }
    }
    let during = during
        .expect("no exec fell between the old daemon's exit and the new one's start in 3 restarts");
    // After.
    exec(&["sync", "-f", "/tmp/f"]);

    // A snapshot: the profile as recorded so far, the pod untouched.
    kube.ok(&[
        "annotate",
        "profilerecording",
        "-n",
        ns,
        "live",
        "syscribe.dev/snapshot=now",
    ]);
    let names = kube.wait_for("the snapshot live-main", MINUTE, || {
        profile_names(&kube, "live-main")
    });
    for (when, syscall) in [("before", "sync"), ("during", during), ("after", "syncfs")] {
        assert!(
            names.iter().any(|n| n == syscall),
            "{syscall} ({when} the restart) is not in the snapshot: {names:?}"
        );
    }
    let pod = kube.json(&["get", "pod", "-n", ns, "live"]);
    assert_eq!(
        pod["metadata"]["uid"],
        uid.as_str(),
        "the snapshot kept the pod"
    );
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    kube.wait_for("the snapshot annotation cleared", MINUTE, || {
        let rec = kube.json(&["get", "profilerecording", "-n", ns, "live"]);
        rec["metadata"]["annotations"]
            .get("syscribe.dev/snapshot")
            .is_none()
            .then_some(())
    });
    println!(
        "snapshot while running: live-main has sync, {during} and syncfs; pod {uid} still Running"
    );

    // The pod ends: the final profile has them too.
    kube.delete(&["pod", "-n", ns, "live"]);
    kube.wait_for("the new daemon ending the pod's recording", MINUTE, || {
        kube.timed_logs("syscribe", &daemon)
            .iter()
            .any(|(_, l)| l.contains("pod recording ended") && l.contains("\"pod\":\"live\""))
            .then_some(())
    });
    let names = kube.wait_for("the final live-main", MINUTE, || {
        profile_names(&kube, "live-main")
    });
    for syscall in ["sync", during, "syncfs"] {
        assert!(names.iter().any(|n| n == syscall), "{syscall}: {names:?}");
    }
    kube.delete(&["namespace", ns, "--timeout=120s"]);
    kube.delete(&["sp", "live-main"]);
}

/// Issue 15: a real API server restarts. Stopped for OUTAGE seconds, the daemon keeps calm —
/// its log stays short and its CPU low (kube's watcher backs off; each watch warns once) —
/// and when it is back its watches resume (the expired ones, 410 Gone, list again): a profile
/// created after the restart is installed, and the failed requests were counted on /metrics.
#[test]
fn s8j_the_daemon_rides_out_an_api_server_restart() {
    const OUTAGE: Duration = Duration::from_secs(20);
    let kube = Kube::get();
    deployed(&kube);
    let daemon = kube.daemon_pod();
    let pid = *daemon_pids().first().expect("the daemon's process");
    let cpu_before = cpu_seconds(pid).unwrap();
    // SIGTERM: it stops listening at once, then waits for its clients' connections to end
    // (60 s, seen here); after OUTAGE it is killed, as a kubelet ends a static pod's grace.
    let stopped_at = now_seconds();
    let apiserver = stop_component("kube-apiserver", OUTAGE);
    let remaining = OUTAGE.saturating_sub(Duration::from_secs_f64(now_seconds() - stopped_at));
    std::thread::sleep(remaining);
    apiserver.start(kube.logs_dir());
    let back = kube.wait_for("the API server ready again", 2 * MINUTE, || {
        kube.run(&["get", "--raw", "/readyz"])
            .status
            .success()
            .then(now_seconds)
    });
    let cpu_outage = cpu_seconds(pid).unwrap() - cpu_before;
    // Warnings of this window are this test's doing (s9 leaves them out).
    tolerate_warnings(stopped_at - 1.0, back + 60.0, "the API server was stopped");
    assert_eq!(
        daemon_pids(),
        [pid],
        "the daemon rode it out in the same process"
    );

    // Watches resume: a profile made now is installed.
    kube.apply(&no_mkdir_profile("after-restart"));
    kube.wait_status("seccompprofile", "after-restart", "Installed", 2 * MINUTE);
    let installed = now_seconds();
    let logs = kube.timed_logs("syscribe", &daemon);
    let outage: Vec<&String> = logs
        .iter()
        .filter(|(at, _)| *at >= stopped_at && *at <= back)
        .map(|(_, l)| l)
        .collect();
    let expired = logs
        .iter()
        .filter(|(at, l)| *at >= stopped_at && l.contains("410 Gone"))
        .count();
    println!(
        "API server down {:.1} s: the daemon wrote {} log lines and used {:.2} s of CPU ({:.1}%); {} watches expired (410) and listed again; a profile made after it was back was Installed {:.1} s after /readyz\n{}",
        back - stopped_at,
        outage.len(),
        cpu_outage,
        100.0 * cpu_outage / (back - stopped_at),
        expired,
        installed - back,
        outage
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Seven watches, each warning once (k8s/watch_log.rs), and room for a few retried writes.
    assert!(
        outage.len() <= 20,
        "a log flood while the API server was down: {} lines",
        outage.len()
    );
    assert!(
        expired >= 1,
        "no watch came back through a 410 Gone (the restarted API server's watch cache starts at a newer version)"
    );
    assert!(
        cpu_outage < 0.25 * (back - stopped_at),
        "a hot loop while the API server was down: {cpu_outage:.2} s of CPU"
    );
    // The failed requests, counted by verb.
    let metrics = kube.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/syscribe/pods/{daemon}:9890/proxy/metrics"),
    ]);
    let failed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("syscribe_api_errors_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    println!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("syscribe_api_errors_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(failed >= 1.0, "no failed request counted:\n{metrics}");
    kube.delete(&["sp", "after-restart"]);
}
