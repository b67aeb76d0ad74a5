//! `syscribe enrich` on real kernel audit records (root, no auditd: the kernel log).

use std::time::Duration;

use syscribe_tests::{
    containers::{Bundle, PodCgroup},
    *,
};

/// Runs `busybox sync` under a profile whose only rule gives sync `action`; returns its pid.
fn sync_under(dir: &TempDir, action: &str) -> (u32, std::process::ExitStatus) {
    let profile = dir.join(&format!("{action}.json"));
    let text = format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["sync"], "action": "{action}"}}]}}"#
    );
    std::fs::write(&profile, text).unwrap();
    let mut child = syscribe()
        .arg("run")
        .arg("--profile")
        .arg(&profile)
        .args(["--", "/bin/busybox", "sync"])
        .spawn()
        .unwrap();
    // `syscribe run` execs the command: the pid is busybox's.
    let pid = child.id();
    (pid, child.wait().unwrap())
}

/// The enriched kernel-log lines about `pid`.
fn enriched_lines_of(pid: u32) -> Vec<serde_json::Value> {
    let output = syscribe()
        .args(["enrich", "--source", "kmsg", "--node", "test-node"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains(" 0 unparsable"), "{err}");
    stdout(&output)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{line}: {e}"))
        })
        .filter(|line| line["pid"] == pid)
        .collect()
}

#[test]
fn log_and_kill_denials_are_enriched_once_each() {
    let dir = TempDir::new("enrich");
    let (logged, status) = sync_under(&dir, "SCMP_ACT_LOG");
    assert!(status.success());
    let (killed, status) = sync_under(&dir, "SCMP_ACT_KILL_PROCESS");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGSYS)
    );

    for (pid, action) in [(logged, "log"), (killed, "kill_process")] {
        let lines = enriched_lines_of(pid);
        assert_eq!(
            lines.len(),
            1,
            "one line per record for pid {pid}: {lines:?}"
        );
        let line = &lines[0];
        assert_eq!(line["type"], "seccomp");
        assert_eq!(line["syscallName"], "sync");
        assert_eq!(line["syscallID"], 162);
        assert_eq!(line["action"], action);
        assert_eq!(line["node"], "test-node");
        assert!(
            line["executable"].as_str().unwrap().ends_with("busybox"),
            "{line}"
        );
        assert!(
            line.get("containerID").is_none(),
            "not in a container: {line}"
        );
    }
}

/// A denial inside a runc container at a kubelet cgroup path carries the container id and the
/// pod UID from that path.
#[test]
fn container_denials_carry_container_and_pod() {
    require_root();
    let pod = PodCgroup::new();
    // The logged syscall is sleep's own, so the process is alive (resolvable) meanwhile; one
    // record only (the kernel log is rate limited to bursts of 10 without auditd).
    let bundle = Bundle::new(&pod, &["/bin/sleep", "2"]);
    bundle.set_seccomp(Some(&serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["clock_nanosleep"], "action": "SCMP_ACT_LOG" }]
    })));
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| bundle.run("runc"));
        std::thread::sleep(Duration::from_millis(800));
        // While the container runs, its process can be resolved.
        let output = syscribe()
            .args(["enrich", "--source", "kmsg"])
            .output()
            .unwrap();
        let mine: Vec<serde_json::Value> = stdout(&output)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["containerID"] == bundle.id.as_str())
            .collect();
        assert!(
            !mine.is_empty(),
            "no denial of this container in: {}",
            stdout(&output)
        );
        for line in &mine {
            assert_eq!(line["podUID"], pod.uid.as_str(), "{line}");
            let name = line["syscallName"].as_str().unwrap();
            assert_eq!(name, "clock_nanosleep", "{line}");
            assert_eq!(line["action"], "log");
        }
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
    });
}
