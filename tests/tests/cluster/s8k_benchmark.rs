//! The daemon's figures while it records twenty pods (s8k).

use std::time::Duration;

use syscribe_tests::cluster::{Kube, cpu_seconds, daemon_pids, deployed, image, rss_kib};

use super::common::{MINUTE, recording_namespace, recording_yaml};

/// The daemon's resident memory and CPU use over `window`, sampled every 250 ms: (peak RSS in
/// MiB, mean CPU in % of one core).
fn daemon_usage(window: Duration) -> (f64, f64) {
    let pid = *daemon_pids().first().expect("the daemon's process");
    let cpu0 = cpu_seconds(pid).unwrap();
    let started = std::time::Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu = cpu_seconds(pid).unwrap() - cpu0;
    (
        peak as f64 / 1024.0,
        100.0 * cpu / started.elapsed().as_secs_f64(),
    )
}

/// Where the daemon's resident memory is (smaps_rollup: anonymous, file-backed, shared).
fn daemon_memory_breakdown() -> String {
    let pid = *daemon_pids().first().expect("the daemon's process");
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            [
                "Rss:",
                "Anonymous:",
                "Shared_Clean:",
                "Private_Clean:",
                "Private_Dirty:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Issue 15's figures (printed, not asserted beyond their being measured): the daemon's RSS
/// and CPU idle and while 20 pods are recorded at once; the time from a pod's deletion to its
/// SeccompProfile in `kubectl get sp`.
#[test]
fn s8k_benchmark_the_daemon_recording_twenty_pods() {
    const PODS: usize = 20;
    let kube = Kube::get();
    deployed(&kube);
    let (idle_rss, idle_cpu) = daemon_usage(Duration::from_secs(10));
    let idle_breakdown = daemon_memory_breakdown();
    let ns = "bench";
    recording_namespace(&kube, ns);
    kube.apply(&recording_yaml(ns, "bench", "bench"));
    // generateName, as a Deployment's pods have: each pod's profile is `bench-main-<suffix>`.
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{generateName: bench-, namespace: bench, labels: {{app: bench}}}}
spec:
  terminationGracePeriodSeconds: 5
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "trap 'exit 0' TERM; while true; do ls / >/dev/null; cat /etc/passwd >/dev/null; sleep 0.5; done"]
"#,
        image = image("workload")
    );
    let mut names = Vec::new();
    for _ in 0..PODS {
        let out = kube.with_stdin(&["create", "-o", "name"], &pod);
        assert!(out.status.success(), "{out:?}");
        names.push(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .trim_start_matches("pod/")
                .to_owned(),
        );
    }
    kube.wait_for("20 pods recorded", 3 * MINUTE, || {
        let rec = kube.json(&["get", "profilerecording", "-n", ns, "bench"]);
        (rec["status"]["activeWorkloads"].as_array().map(Vec::len) == Some(PODS)).then_some(())
    });
    let (busy_rss, busy_cpu) = daemon_usage(Duration::from_secs(20));
    let busy_breakdown = daemon_memory_breakdown();
    let profile_of = |pod: &str| format!("bench-main-{}", pod.trim_start_matches("bench-"));
    let visible = |profile: &str| {
        kube.run(&["get", "sp", profile, "-o", "name"])
            .status
            .success()
    };

    // One pod deleted at a time: how long until its profile is in `kubectl get sp`.
    let mut single = Vec::new();
    for name in &names[..3] {
        let t0 = std::time::Instant::now();
        kube.ok(&["delete", "pod", "-n", ns, name, "--wait=false"]);
        let profile = profile_of(name);
        kube.wait_for(&format!("{profile} in kubectl get sp"), MINUTE, || {
            visible(&profile).then_some(())
        });
        single.push(t0.elapsed().as_secs_f64());
    }
    // The rest at once: when each profile shows up.
    let rest = &names[3..];
    let t0 = std::time::Instant::now();
    kube.ok(&[
        "delete",
        "pods",
        "-n",
        ns,
        "-l",
        "app=bench",
        "--wait=false",
    ]);
    let mut seen: Vec<f64> = Vec::new();
    let mut waiting: Vec<String> = rest.iter().map(|n| profile_of(n)).collect();
    kube.wait_for(
        "the profiles of the pods deleted at once",
        3 * MINUTE,
        || {
            let listed = kube.ok(&[
                "get",
                "sp",
                "-l",
                "spo.x-k8s.io/recording-id=bench",
                "-o",
                "name",
            ]);
            let at = t0.elapsed().as_secs_f64();
            waiting.retain(|p| {
                let there = listed.lines().any(|l| {
                    l.trim_start_matches("seccompprofile.security-profiles-operator.x-k8s.io/") == p
                });
                if there {
                    seen.push(at);
                }
                !there
            });
            waiting.is_empty().then_some(())
        },
    );
    println!(
        "BENCH daemon idle: RSS {idle_rss:.1} MiB, CPU {idle_cpu:.1}% of a core [{idle_breakdown}]\n\
         BENCH daemon recording {PODS} pods: peak RSS {busy_rss:.1} MiB, CPU {busy_cpu:.1}% of a core [{busy_breakdown}]\n\
         BENCH pod deleted → its SeccompProfile in `kubectl get sp`: {} s (one pod at a time, 3 runs); {} pods deleted at once → first profile after {:.2} s, last after {:.2} s",
        single
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        rest.len(),
        seen.first().copied().unwrap_or_default(),
        seen.last().copied().unwrap_or_default(),
    );
    if busy_rss > 32.0 {
        println!("BENCH RSS is over the 32 MiB goal");
    }
    assert!(idle_rss > 0.0 && busy_rss > 0.0);
    kube.delete(&["namespace", ns, "--timeout=180s"]);
    kube.delete(&["sp", "-l", "spo.x-k8s.io/recording-id=bench"]);
}
