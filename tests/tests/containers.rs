//! Recording real containers (runc, crun) below a pod's cgroup (root, real kernel).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use syscribe_tests::{
    containers::{Bundle, PodCgroup},
    *,
};

/// A running `syscribe record --cgroup`.
struct PodRecording {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl PodRecording {
    fn start(pod: &PodCgroup, out: &Path) -> Self {
        Self::start_with(pod, out, &[])
    }

    fn start_with(pod: &PodCgroup, out: &Path, extra: &[&str]) -> Self {
        let mut child = syscribe()
            .args([
                "--log-format",
                "json",
                "record",
                "--cgroup",
                &pod.path(),
                "-o",
            ])
            .arg(out)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn syscribe record --cgroup");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut recording = Self {
            child,
            lines,
            log: Vec::new(),
        };
        recording.wait_for_line("recording the containers");
        recording
    }

    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return;
                }
            }
        }
        panic!(
            "syscribe never said {needle:?}; it said:\n{}",
            self.log.join("\n")
        );
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (up to 10 s) for syscribe to end by itself; returns the whole log.
    fn finished(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "syscribe did not end: {}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.log.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "syscribe record --cgroup failed: {}",
            self.log.join("\n")
        );
        self.log
    }

    /// SIGTERM, then the whole log.
    /// It took over a killed syscribe's pinned state.
    fn assert_adopted(&self) {
        assert!(
            self.log
                .iter()
                .any(|l| l.contains("adopted the recorder state")),
            "{:?}",
            self.log
        );
    }

    fn stop(self) -> Vec<String> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.finished()
    }
}

/// Waits for the profile syscribe writes when the container's cgroup goes away.
fn profile_of(out: &Path, bundle: &Bundle) -> serde_json::Value {
    let path: PathBuf = out.join(format!("{}.json", bundle.id));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no profile at {} (there: {:?})",
            path.display(),
            std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The seccomp profile containers are recorded under: allows everything, but makes the runtime
/// install a filter, which is where the runtime's own setup ends.
fn recording_profile() -> serde_json::Value {
    serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"] })
}

fn bundle(pod: &PodCgroup, args: &[&str]) -> Bundle {
    let bundle = Bundle::new(pod, args);
    bundle.set_seccomp(Some(&recording_profile()));
    bundle
}

/// Syscalls runtimes make while setting a container up, before its filter; a workload of
/// busybox applets never makes them.
const RUNTIME_SETUP_ONLY: [&str; 6] = [
    "pivot_root",
    "mount",
    "sethostname",
    "unshare",
    "umount2",
    "setgroups",
];

/// busybox applets, each making one syscall no other one here (nor the runtime after the
/// filter) makes, as its first own act.
const DISTINCTIVE: [(&[&str], &str); 10] = [
    (&["/bin/sync"], "sync"),
    (&["/bin/nproc"], "sched_getaffinity"),
    (&["/bin/uptime"], "sysinfo"),
    (&["/bin/mkfifo", "/tmp/fifo"], "mknodat"),
    (&["/bin/touch", "/tmp/touched"], "utimensat"),
    (&["/bin/ln", "-s", "target", "/tmp/link"], "symlink"),
    (&["/bin/mkdir", "/tmp/dir"], "mkdir"),
    (&["/bin/chmod", "600", "/etc/group"], "chmod"),
    (&["/bin/ionice"], "ioprio_get"),
    (&["/bin/uname", "-a"], "uname"),
];

/// Runs `count` distinctive containers at once under one recording; each profile holds its own
/// distinctive syscall and nobody else's.
fn no_crosstalk(count: usize) {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new(&format!("crosstalk-{count}"));
    let recording = PodRecording::start(&pod, out.path());
    let bundles: Vec<(Bundle, &str)> = DISTINCTIVE[..count]
        .iter()
        .map(|(args, syscall)| (bundle(&pod, args), *syscall))
        .collect();
    std::thread::scope(|scope| {
        for (bundle, _) in &bundles {
            scope.spawn(move || {
                let ran = bundle.run("runc");
                assert!(ran.status.success(), "{}", stderr(&ran));
            });
        }
    });
    for (bundle, own) in &bundles {
        let names = allowed_names(&profile_of(out.path(), bundle));
        assert!(names.contains(*own), "{own} missing from {names:?}");
        for (_, other) in &DISTINCTIVE[..count] {
            if other != own {
                assert!(
                    !names.contains(*other),
                    "{other} (another container's) is in {own}'s profile: {names:?}"
                );
            }
        }
        for setup in RUNTIME_SETUP_ONLY {
            assert!(
                !names.contains(setup),
                "runtime setup syscall {setup} in the profile: {names:?}"
            );
        }
    }
    let log = recording.stop();
    assert!(
        !log.iter().any(|l| l.contains("WARN")),
        "warnings:\n{}",
        log.join("\n")
    );
}

#[test]
fn two_containers_at_once_do_not_mix() {
    no_crosstalk(2);
}

#[test]
fn ten_containers_at_once_do_not_mix() {
    no_crosstalk(10);
}

/// A short-lived container whose entrypoint makes its distinctive syscall at once: recorded,
/// named after its container id, without the runtime's setup.
#[test]
fn a_containers_first_syscall_is_recorded() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("first-syscall");
    let recording = PodRecording::start(&pod, out.path());
    let container = bundle(&pod, &["/bin/sync"]);
    let ran = container.run("runc");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let names = allowed_names(&profile_of(out.path(), &container));
    assert!(names.contains("sync"), "{names:?}");
    assert!(
        names.contains("execve"),
        "the runtime's final execve is under the filter: {names:?}"
    );
    for setup in RUNTIME_SETUP_ONLY {
        assert!(!names.contains(setup), "{setup} in {names:?}");
    }
    recording.stop();
    drop(container);
    assert_no_container_leftovers(pod);
}

/// After a test: no container left in any runtime, no pod cgroup in any hierarchy, no bundle,
/// nothing of syscribe's (see `assert_no_leftovers`).
fn assert_no_container_leftovers(pod: PodCgroup) {
    let relative = pod.path();
    drop(pod);
    assert_pod_gone(&relative);
}

fn assert_pod_gone(relative: &str) {
    for runtime in ["runc", "crun"] {
        let list = std::process::Command::new(runtime)
            .args(["list", "-q"])
            .output()
            .unwrap();
        assert!(
            stdout(&list).trim().is_empty(),
            "{runtime} still has containers: {}",
            stdout(&list)
        );
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join(relative.trim_start_matches('/'));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    let bundles: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("syscribe-test-bundle-")
        })
        .collect();
    assert!(
        bundles.is_empty(),
        "bundles left: {:?}",
        bundles.iter().map(|b| b.path()).collect::<Vec<_>>()
    );
    assert_no_leftovers();
}

fn assert_no_warnings(log: &[String]) {
    assert!(
        !log.iter()
            .any(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")),
        "warnings:\n{}",
        log.join("\n")
    );
}

/// crun refuses hybrid cgroups unless `hugetlb` is a v1 hierarchy (../shared/RIG.md): mounted
/// for the test, undone after.
struct HugetlbV1;

impl HugetlbV1 {
    const DIR: &'static str = "/sys/fs/cgroup/hugetlb";

    fn mount() -> Self {
        std::fs::create_dir_all(Self::DIR).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup", Self::DIR])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount the hugetlb cgroup v1 hierarchy crun needs here"
        );
        Self
    }
}

impl Drop for HugetlbV1 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(Self::DIR).status();
        let _ = std::fs::remove_dir(Self::DIR);
    }
}

/// Records a busybox container doing file I/O, a loopback TCP exchange and spawning children,
/// under `runtime`; the same bundle under the recorded profile runs to the same output; without
/// one workload syscall it fails.
fn replay(runtime: &str, port: u16) {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new(&format!("replay-{runtime}"));
    // Deterministic on a loaded machine, and never hanging: the listener is restarted until
    // it has received something, the client retries until it has, both boundedly; the shell
    // polls instead of `wait` (which suspends, rt_sigsuspend, only if the listener is still
    // running: one run would need it and the other not).
    let script = format!(
        "set -e; : > /tmp/got; echo hello > /tmp/f; cat /tmp/f; \
         (for i in $(seq 1 50); do [ -s /tmp/got ] && break; nc -l -p {port} > /tmp/got || true; done) & \
         for i in $(seq 1 50); do [ -s /tmp/got ] && break; \
         echo ping | nc -w 1 127.0.0.1 {port} 2>/dev/null || true; sleep 0.1; done; \
         cat /tmp/got"
    );
    let container = bundle(&pod, &["/bin/sh", "-c", &script]);
    let recording = PodRecording::start(&pod, out.path());
    let recorded_run = container.run(runtime);
    assert!(
        recorded_run.status.success(),
        "{runtime}: {}",
        stderr(&recorded_run)
    );
    assert_eq!(stdout(&recorded_run), "hello\nping\n");
    let profile = profile_of(out.path(), &container);
    assert_no_warnings(&recording.stop());
    let names = allowed_names(&profile);
    for setup in RUNTIME_SETUP_ONLY {
        assert!(
            !names.contains(setup),
            "{runtime}: runtime setup syscall {setup} in {names:?}"
        );
    }
    for needed in ["socket", "bind", "listen", "connect", "execve"] {
        assert!(
            names.contains(needed),
            "{runtime}: {needed} missing from {names:?}"
        );
    }

    container.set_seccomp(Some(&profile));
    let replayed = container.run(runtime);
    assert!(
        replayed.status.success(),
        "{runtime} under the recorded profile: {}",
        stderr(&replayed)
    );
    assert_eq!(stdout(&replayed), stdout(&recorded_run));

    let dir = TempDir::new(&format!("replay-{runtime}-without"));
    let crippled: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(without_syscall(&dir, &profile, "listen")).unwrap(),
    )
    .unwrap();
    container.set_seccomp(Some(&crippled));
    let denied = container.run(runtime);
    assert!(
        !denied.status.success() || stdout(&denied) != stdout(&recorded_run),
        "{runtime}: still the same without listen: enforcement is not real"
    );
    drop(container);
    assert_no_container_leftovers(pod);
}

#[test]
fn runc_replays_the_recorded_container() {
    replay("runc", 20000 + (std::process::id() % 10000) as u16);
}

#[test]
fn crun_replays_the_recorded_container() {
    let _hugetlb = HugetlbV1::mount();
    replay("crun", 30000 + (std::process::id() % 10000) as u16);
}

/// 300 short containers in a row under one recording: every one recorded, every set returned
/// to the kernel side when its container is gone, nothing dropped.
#[test]
fn churn_of_300_containers() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("churn");
    let recording = PodRecording::start(&pod, out.path());
    let mut ids = Vec::new();
    for _ in 0..300 {
        // A new container id each time, the same bundle.
        let bundle = bundle(&pod, &["/bin/true"]);
        let ran = bundle.run("runc");
        assert!(ran.status.success(), "{}", stderr(&ran));
        ids.push(bundle.id.clone());
        let _ = profile_of(out.path(), &bundle);
    }
    let log = recording.stop();
    assert_no_warnings(&log);
    let summary = log
        .iter()
        .find(|l| l.contains("containers recorded"))
        .unwrap_or_else(|| panic!("no summary in:\n{}", log.join("\n")));
    assert!(summary.contains("\"containers\":300"), "{summary}");
    assert!(summary.contains("\"still_running\":0"), "{summary}");
    for id in &ids {
        let profile: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(&format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(profile["syscribe"]["dropped"]["outOfRange"], 0);
        assert_eq!(profile["syscribe"]["dropped"]["unnamed"], 0);
    }
    eprintln!("churn: {summary}");
    assert_no_container_leftovers(pod);
}

/// SIGUSR1 writes the profile of a running container as it is so far (with its container id
/// and pod UID); the final one follows when it ends; removing the pod's cgroup ends the
/// recording.
#[test]
fn snapshots_while_running_and_the_end_when_the_pod_cgroup_goes() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("snapshot");
    let mut recording = PodRecording::start(&pod, out.path());
    let container = bundle(&pod, &["/bin/sh", "-c", "sync; sleep 1.5; nproc"]);
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| container.run("runc"));
        std::thread::sleep(Duration::from_millis(700));
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(recording.pid(), libc::SIGUSR1) };
        recording.wait_for_line("running, snapshot");
        let snapshot = profile_of(out.path(), &container);
        let names = allowed_names(&snapshot);
        assert!(names.contains("sync"), "{names:?}");
        assert!(
            !names.contains("sched_getaffinity"),
            "nproc has not run yet: {names:?}"
        );
        let meta = &snapshot["syscribe"]["container"];
        assert_eq!(meta["id"], container.id.as_str());
        assert_eq!(meta["podUid"], pod.uid.as_str());
        assert_eq!(meta["filterSeen"], true);
        // The runtime's hand-off is allowed whether or not this run happened to make it, and
        // the metadata says which of it was added without being seen.
        for added in meta["runtimeHandoff"].as_array().expect("runtimeHandoff") {
            assert!(
                names.contains(added.as_str().unwrap()),
                "{added} in {names:?}"
            );
        }
        assert!(
            names.contains("futex") && names.contains("tgkill"),
            "{names:?}"
        );
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
    });
    recording.wait_for_line("(finished)");
    let names = allowed_names(&profile_of(out.path(), &container));
    assert!(
        names.contains("sched_getaffinity"),
        "the final profile has what came later: {names:?}"
    );

    let relative = pod.path();
    drop(container);
    drop(pod);
    let log = recording.finished();
    assert!(
        log.iter().any(|l| l.contains("SubtreeRemoved")),
        "{}",
        log.join("\n")
    );
    assert_pod_gone(&relative);
}

/// syscribe killed (SIGKILL) in the middle of a recording, started again with the same pin
/// directory: the profile holds what the container did before the kill, while no syscribe
/// ran, and after the restart.
#[test]
fn a_killed_recorder_is_taken_over_without_losing_syscalls() {
    require_root();
    let bpffs = BpfFs::ensure();
    let pin = format!("{}/syscribe-test-{}", BpfFs::DIR, std::process::id());
    let pod = PodCgroup::new();
    let out = TempDir::new("restart");
    let first = PodRecording::start_with(&pod, out.path(), &["--pin", &pin]);
    let container = bundle(
        &pod,
        &[
            "/bin/sh",
            "-c",
            "sync; sleep 1.5; uptime; sleep 2; nproc; sleep 0.3",
        ],
    );
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| container.run("runc"));
        std::thread::sleep(Duration::from_millis(800));
        // Killed: nothing runs its cleanup; the pinned programs go on recording.
        let mut child = first.child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(Path::new(&pin).exists(), "the state stays pinned");
        std::thread::sleep(Duration::from_millis(1400)); // uptime runs meanwhile
        let second = PodRecording::start_with(&pod, out.path(), &["--pin", &pin]);
        second.assert_adopted();
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
        let profile = profile_of(out.path(), &container);
        let names = allowed_names(&profile);
        for (when, syscall) in [
            ("before the kill", "sync"),
            ("while no syscribe ran", "sysinfo"),
            ("after the restart", "sched_getaffinity"),
        ] {
            assert!(
                names.contains(syscall),
                "{syscall} ({when}) missing from {names:?}"
            );
        }
        for setup in RUNTIME_SETUP_ONLY {
            assert!(!names.contains(setup), "runtime setup {setup} in {names:?}");
        }
        assert_no_warnings(&second.stop());
    });
    assert!(!Path::new(&pin).exists(), "a clean end removes the pins");
    drop(container);
    assert_no_container_leftovers(pod);
    drop(bpffs);
    assert_no_leftovers();
}

/// A killed syscribe's subtree whose pod ended while nothing ran is not wanted by the next
/// one: pruned (said once), not left in the kernel's table; the next one's own pod is
/// recorded as usual and a clean end removes the pins.
#[test]
fn an_orphaned_subtree_is_pruned_by_the_next_recorder() {
    require_root();
    let bpffs = BpfFs::ensure();
    let pin = format!("{}/syscribe-test-orphan-{}", BpfFs::DIR, std::process::id());
    let out = TempDir::new("orphan");
    let gone = PodCgroup::new();
    let first = PodRecording::start_with(&gone, out.path(), &["--pin", &pin]);
    let mut child = first.child;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(gone); // the pod ends while no syscribe runs

    let pod = PodCgroup::new();
    let second = PodRecording::start_with(&pod, out.path(), &["--pin", &pin]);
    second.assert_adopted();
    let container = bundle(&pod, &["/bin/sh", "-c", "sync"]);
    let ran = container.run("runc");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let names = allowed_names(&profile_of(out.path(), &container));
    assert!(names.contains("sync"), "{names:?}");
    let log = second.stop();
    let (pruned, others): (Vec<&String>, Vec<&String>) = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .partition(|l| l.contains("were not wanted again"));
    assert_eq!(pruned.len(), 1, "the orphan is pruned, said once: {log:#?}");
    assert!(others.is_empty(), "{others:#?}");
    assert!(!Path::new(&pin).exists(), "a clean end removes the pins");
    drop(container);
    assert_no_container_leftovers(pod);
    drop(bpffs);
    assert_no_leftovers();
}

/// What containerd gives a container by default: the set it is recorded with.
const CONTAINERD_DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A container running as root with containerd's default capabilities, that chowns a file and
/// listens on a privileged port: its recording names exactly CAP_CHOWN and
/// CAP_NET_BIND_SERVICE (runc's own steps after the filter — the exec fifo, the final
/// `execve` — need none); run with only those two it does the same; without either it fails.
#[test]
fn a_root_containers_capabilities_are_exactly_what_it_used() {
    require_root();
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    let port = 600 + std::process::id() % 300;
    assert!(
        port < start.trim().parse::<u32>().unwrap(),
        "port {port} must need CAP_NET_BIND_SERVICE here (ip_unprivileged_port_start is {start})"
    );
    let pod = PodCgroup::new();
    let out = TempDir::new("capabilities");
    // The listener is ended by `timeout` (status 143) when it could bind; nc says 1 when not.
    // Each run starts from a new file (the rootfs stays: the last run's file is uid 1's).
    let script = format!(
        "set -e; rm -f /tmp/f; echo x > /tmp/f; chown 1:1 /tmp/f; stat -c %u:%g /tmp/f; \
         timeout 0.5 nc -l -p {port} || echo \"nc: $?\""
    );
    let container = bundle(&pod, &["/bin/sh", "-c", &script]);
    container.set_capabilities(&CONTAINERD_DEFAULT_CAPABILITIES);
    let recording = PodRecording::start(&pod, out.path());
    let recorded_run = container.run("runc");
    assert!(recorded_run.status.success(), "{}", stderr(&recorded_run));
    assert_eq!(stdout(&recorded_run), "1:1\nnc: 143\n");
    let profile = profile_of(out.path(), &container);
    assert_no_warnings(&recording.stop());
    let recorded: Vec<String> =
        serde_json::from_value(profile["syscribe"]["capabilities"].clone()).unwrap();
    assert_eq!(recorded, ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"], "{profile}");

    let used: Vec<&str> = recorded.iter().map(String::as_str).collect();
    container.set_capabilities(&used);
    let replayed = container.run("runc");
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(stdout(&replayed), stdout(&recorded_run));

    for missing in &used {
        let fewer: Vec<&str> = used.iter().copied().filter(|c| c != missing).collect();
        container.set_capabilities(&fewer);
        let crippled = container.run("runc");
        assert!(
            !crippled.status.success() || stdout(&crippled) != stdout(&recorded_run),
            "still the same without {missing}: {}",
            stdout(&crippled)
        );
    }
    drop(container);
    assert_no_container_leftovers(pod);
}
