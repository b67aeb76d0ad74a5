//! `syscribe enrich` on real kernel audit records (root, no auditd: the kernel log).

use std::time::Duration;

use syscribe_tests::{
    containers::{Bundle, PodCgroup},
    *,
};

#[path = "enrich/hostile.rs"]
mod hostile;

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

/// A process killed by its container's profile is gone before its record is read: it is still
/// attributed to its container (the kernel's memory of exits), with the pod and container
/// names from the runtime's annotations.
#[test]
fn killed_container_processes_are_still_attributed() {
    require_root();
    let pod = PodCgroup::new();
    // The inner shell runs sync (a busybox applet, in-process) and is killed; the outer one
    // keeps the container (and its cgroup) alive meanwhile.
    let bundle = Bundle::new(&pod, &["/bin/sh", "-c", "sh -c sync; sleep 3"]);
    bundle.set_seccomp(Some(&serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS" }]
    })));
    bundle.annotate("shop", "web-7d9f", "app");
    let enricher = Following::start(&["--source", "kmsg"], "remembering process exits");
    // Frozen until the killed process is long gone from /proc.
    signal(enricher.pid(), libc::SIGSTOP);
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| bundle.run("runc"));
        std::thread::sleep(Duration::from_millis(1500));
        signal(enricher.pid(), libc::SIGCONT);
        let mine = enricher.wait_for(1, Duration::from_secs(10), |l| {
            l["containerID"] == bundle.id.as_str()
        });
        assert_eq!(mine.len(), 1, "one line for the killed process: {mine:?}");
        let line = &mine[0];
        assert_eq!(line["syscallName"], "sync", "{line}");
        assert_eq!(line["action"], "kill_process", "{line}");
        assert_eq!(line["podUID"], pod.uid.as_str(), "{line}");
        assert_eq!(line["namespace"], "shop", "{line}");
        assert_eq!(line["pod"], "web-7d9f", "{line}");
        assert_eq!(line["container"], "app", "{line}");
        let pid = line["pid"].as_u64().unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the killed process is gone"
        );
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
    });
    let (status, err) = enricher.stop();
    assert!(status.success(), "{err}");
    assert!(summary_count(&err, "exited") >= 1, "{err}");
}

/// The audit netlink multicast group carries the records too (no kernel-log rate limit), and
/// the metrics endpoint counts them with the upstream names.
#[test]
fn netlink_source_and_metrics() {
    let dir = TempDir::new("enrich-netlink");
    let enricher = Following::start(
        &[
            "--source",
            "netlink",
            "--node",
            "n1",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        "reading the audit netlink multicast group",
    );
    let addr = enricher
        .stderr()
        .lines()
        .find_map(|l| {
            l.strip_prefix("syscribe: metrics on http://")?
                .strip_suffix("/metrics")
                .map(str::to_owned)
        })
        .expect("metrics address on stderr");
    // More than the kernel log's burst of 10.
    let pids: Vec<u32> = (0..15)
        .map(|_| {
            let (pid, status) = sync_under(&dir, "SCMP_ACT_LOG");
            assert!(status.success());
            pid
        })
        .collect();
    let seen = enricher.wait_for(pids.len(), Duration::from_secs(10), |l| {
        pids.contains(&(l["pid"].as_u64().unwrap_or(0) as u32))
    });
    assert_eq!(seen.len(), pids.len(), "every record once: {seen:?}");
    assert!(
        seen.iter()
            .all(|l| l["syscallName"] == "sync" && l["node"] == "n1")
    );

    let metrics = http_get(&addr, "/metrics");
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("security_profiles_operator_seccomp_profile_audit_total{node=\"n1\"")
                && l.contains("syscall=\"sync\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 15, "{line}");
    assert!(http_get(&addr, "/healthz").ends_with("ok\n"));
    let (status, err) = enricher.stop();
    assert!(status.success(), "{err}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Debian's auditd, started for one test (`auditd -n`) and stopped on drop, restoring the
/// kernel's audit `enabled` flag (auditd sets it): later tests read the kernel log again.
struct Auditd {
    child: std::process::Child,
    enabled_before: String,
}

impl Auditd {
    const LOG: &str = "/var/log/audit/audit.log";

    fn start() -> Self {
        let status = std::process::Command::new("auditctl")
            .arg("-s")
            .output()
            .expect("auditctl (Debian's auditd package) is installed");
        let status = String::from_utf8_lossy(&status.stdout).into_owned();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name} in auditctl -s: {status}"))
        };
        assert_eq!(field("pid"), "0", "an audit daemon is already running");
        let enabled_before = field("enabled");
        let child = std::process::Command::new("auditd")
            .arg("-n")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start auditd");
        let auditd = Self {
            child,
            enabled_before,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(Self::LOG).is_ok_and(|log| log.contains("DAEMON_START")) {
            assert!(std::time::Instant::now() < deadline, "auditd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        auditd
    }

    /// `kill -USR1`: auditd renames audit.log to audit.log.1 and starts a new one.
    fn rotate(&self) {
        let before = std::fs::metadata(Self::LOG).unwrap();
        signal(self.child.id(), libc::SIGUSR1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = std::fs::metadata(Self::LOG);
            if now.is_ok_and(|m| {
                std::os::unix::fs::MetadataExt::ino(&m)
                    != std::os::unix::fs::MetadataExt::ino(&before)
            }) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "auditd did not rotate"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        let _ = signal_quietly(self.child.id(), libc::SIGTERM);
        let _ = self.child.wait();
        let _ = std::process::Command::new("auditctl")
            .args(["-e", &self.enabled_before])
            .output();
    }
}

fn signal_quietly(pid: u32, sig: libc::c_int) -> i32 {
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(pid as libc::pid_t, sig) }
}

/// With auditd running, the audit-log source sees the same records as the netlink group
/// (read beside auditd), each exactly once, across a rotation in the middle of the stream.
#[test]
fn audit_log_source_beside_running_auditd_across_rotation() {
    require_root();
    let dir = TempDir::new("enrich-auditd");
    let auditd = Auditd::start();
    let from_log = Following::start(&["--source", "audit-log"], "remembering process exits");
    let from_netlink = Following::start(
        &["--source", "netlink"],
        "reading the audit netlink multicast group",
    );
    let mut pids = Vec::new();
    for round in 0..2 {
        for _ in 0..6 {
            let (pid, status) = sync_under(&dir, "SCMP_ACT_LOG");
            assert!(status.success());
            pids.push(pid);
        }
        if round == 0 {
            // Rotate while the follower still has records of this round to read.
            auditd.rotate();
        }
    }
    let ours = |l: &serde_json::Value| pids.contains(&(l["pid"].as_u64().unwrap_or(0) as u32));
    for (name, source) in [("audit-log", &from_log), ("netlink", &from_netlink)] {
        let seen = source.wait_for(pids.len() + 1, Duration::from_secs(5), ours);
        let mut seen_pids: Vec<u64> = seen.iter().map(|l| l["pid"].as_u64().unwrap()).collect();
        seen_pids.sort_unstable();
        let mut expected: Vec<u64> = pids.iter().map(|p| u64::from(*p)).collect();
        expected.sort_unstable();
        assert_eq!(seen_pids, expected, "{name}: every record exactly once");
        assert!(
            seen.iter()
                .all(|l| l["syscallName"] == "sync" && l["action"] == "log"),
            "{name}: {seen:?}"
        );
    }
    for source in [from_log, from_netlink] {
        let (status, err) = source.stop();
        assert!(status.success(), "{err}");
        assert_eq!(summary_count(&err, "unparsable"), 0, "{err}");
    }
    drop(auditd);
}
