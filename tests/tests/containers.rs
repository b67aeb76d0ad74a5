//! Recording real containers (runc, crun) below a pod's cgroup (root, real kernel).

use std::{path::Path, time::Duration};

use syscribe_tests::{
    containers::{
        Bundle, PodCgroup, PodRecording, assert_no_container_leftovers, assert_pod_gone,
        profile_of, recording_profile,
    },
    *,
};

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
