//! Recording real containers (runc, crun) below a pod's cgroup (root, real kernel).

use std::{
    collections::BTreeSet,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

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

/// Asserts each (when, syscall) is in the profile's names.
fn assert_recorded(names: &BTreeSet<String>, expected: &[(&str, &str)]) {
    for (when, syscall) in expected {
        assert!(
            names.contains(*syscall),
            "{syscall} ({when}) missing from {names:?}"
        );
    }
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
        assert_eq!(meta["boundary"]["kind"], "filter");
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
        assert_recorded(
            &names,
            &[
                ("before the kill", "sync"),
                ("while no syscribe ran", "sysinfo"),
                ("after the restart", "sched_getaffinity"),
            ],
        );
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

/// Maps pinned with another layout (a syscribe from before a pinned map changed: here the
/// layout mark of a killed one's pins, rewritten) are not adopted: said in a warning, their
/// pins replaced, and the pod is recorded as usual.
#[test]
fn pins_of_another_layout_are_not_adopted() {
    require_root();
    let bpffs = BpfFs::ensure();
    let pin = format!("{}/syscribe-test-layout-{}", BpfFs::DIR, std::process::id());
    let pod = PodCgroup::new();
    let out = TempDir::new("layout");
    let first = PodRecording::start_with(&pod, out.path(), &["--pin", &pin]);
    let mut child = first.child;
    child.kill().unwrap();
    child.wait().unwrap();
    {
        let data = aya::maps::MapData::from_pin(Path::new(&pin).join("LAYOUT")).unwrap();
        let mut layout: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(aya::maps::Map::Array(data)).unwrap();
        layout.set(0, 1, 0).unwrap();
    }
    let second = PodRecording::start_with(&pod, out.path(), &["--pin", &pin]);
    assert!(
        !second
            .log
            .iter()
            .any(|l| l.contains("adopted the recorder state")),
        "{:?}",
        second.log
    );
    records_as_usual_with_one_warning(pod, &out, second, &pin, bpffs, "has another layout");
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
    // The orphan is pruned, said once.
    records_as_usual_with_one_warning(pod, &out, second, &pin, bpffs, "were not wanted again");
}

/// The end of a pinned-state test: a container of `pod` is recorded as usual by `second`,
/// whose log has exactly one warning, the one containing `warning`; a clean end removes the
/// pins at `pin` and leaves nothing behind.
fn records_as_usual_with_one_warning(
    pod: PodCgroup,
    out: &TempDir,
    second: PodRecording,
    pin: &str,
    bpffs: BpfFs,
    warning: &str,
) {
    let container = bundle(&pod, &["/bin/sh", "-c", "sync"]);
    let ran = container.run("runc");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let names = allowed_names(&profile_of(out.path(), &container));
    assert!(names.contains("sync"), "{names:?}");
    let log = second.stop();
    let (expected, others): (Vec<&String>, Vec<&String>) = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .partition(|l| l.contains(warning));
    assert_eq!(expected.len(), 1, "`{warning}` said once: {log:#?}");
    assert!(others.is_empty(), "{others:#?}");
    assert!(!Path::new(pin).exists(), "a clean end removes the pins");
    drop(container);
    assert_no_container_leftovers(pod);
    drop(bpffs);
    assert_no_leftovers();
}

// The runtime boundary without a filter (recorder-ebpf's crate docs, "Where a container's
// profile starts").

/// A runtime's root and namespace setup steps: in no profile, whatever the boundary.
const SETUP_STEPS: [&str; 8] = [
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "sethostname",
    "setdomainname",
    "unshare",
    "setns",
];

/// The workload of the boundary tests: file I/O, a child process, an applet of its own.
const WORKLOAD: &str = "echo hello > /tmp/f; cat /tmp/f; nproc >/dev/null; echo done";

/// How a container is started: under the allow-all filter or Unconfined, with the runtime's
/// `noNewPrivileges` (Kubernetes sets false unless `allowPrivilegeEscalation: false`; `runc
/// spec` writes true), each of which puts the runtime's filter elsewhere; with a UTS namespace
/// of its own (the runtime sets its hostname) or, as a Kubernetes app container, its sandbox's
/// (here: the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Start {
    filter: bool,
    no_new_privileges: bool,
    own_uts: bool,
}

const STARTS: [Start; 5] = [
    Start {
        filter: false,
        no_new_privileges: false,
        own_uts: true,
    },
    Start {
        filter: false,
        no_new_privileges: true,
        own_uts: true,
    },
    Start {
        filter: true,
        no_new_privileges: false,
        own_uts: true,
    },
    Start {
        filter: true,
        no_new_privileges: true,
        own_uts: true,
    },
    Start {
        filter: false,
        no_new_privileges: false,
        own_uts: false,
    },
];

fn started(pod: &PodCgroup, args: &[&str], start: Start) -> Bundle {
    let bundle = Bundle::new(pod, args);
    bundle.set_seccomp(start.filter.then(recording_profile).as_ref());
    bundle.edit(|config| {
        config["process"]["noNewPrivileges"] = start.no_new_privileges.into();
        if !start.own_uts {
            config.as_object_mut().unwrap().remove("hostname");
            config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|ns| ns["type"] != "uts");
        }
    });
    bundle
}

/// Records [`WORKLOAD`] under `runtime` in each of [`STARTS`]: each profile has the expected
/// boundary and no setup step, and (Unconfined ones) replays to the same output. Returns the
/// profiles' names.
fn record_each_start(runtime: &str) -> Vec<(Start, BTreeSet<String>)> {
    let pod = PodCgroup::new();
    let out = TempDir::new(&format!("boundary-{runtime}"));
    let recording = PodRecording::start(&pod, out.path());
    let mut recorded = Vec::new();
    for start in STARTS {
        let container = started(&pod, &["/bin/sh", "-c", WORKLOAD], start);
        let ran = container.run(runtime);
        assert!(
            ran.status.success(),
            "{runtime} {start:?}: {}",
            stderr(&ran)
        );
        assert_eq!(stdout(&ran), "hello\ndone\n");
        let profile = profile_of(out.path(), &container);
        let kind = if start.filter { "filter" } else { "exec" };
        assert_eq!(
            profile["syscribe"]["container"]["boundary"],
            serde_json::json!({ "kind": kind }),
            "{runtime} {start:?}"
        );
        let names = allowed_names(&profile);
        for setup in SETUP_STEPS {
            assert!(
                !names.contains(setup),
                "{runtime} {start:?}: setup step {setup} in {names:?}"
            );
        }
        if !start.filter {
            // The runtime installs the recorded profile where it would have installed any:
            // everything from there on was recorded.
            container.set_seccomp(Some(&profile));
            let replayed = container.run(runtime);
            assert!(
                replayed.status.success(),
                "{runtime} {start:?} under its recorded profile: {}",
                stderr(&replayed)
            );
            assert_eq!(stdout(&replayed), stdout(&ran), "{runtime} {start:?}");
        }
        recorded.push((start, names));
    }
    assert_no_warnings(&recording.stop());
    drop(out);
    assert_no_container_leftovers(pod);
    recorded
}

/// What the runtimes do, as their profiles show it (runc 1.1.5, crun 1.8.1): (runc, crun).
///
/// Between where each installs its filter with `noNewPrivileges` false and where with true
/// (user, groups and capabilities; runc's Go runtime also checks the entrypoint and reads its
/// sync pipe): in the first profile only.
const BETWEEN_FILTERS: (&[&str], &[&str]) = (
    &[
        "capget",
        "capset",
        "chdir",
        "faccessat2",
        "fstat",
        "read",
        "setgid",
        "setgroups",
        "setuid",
    ],
    &["capset", "setresgid", "setresuid"],
);
/// Unconfined, own UTS namespace: after the last setup step (runc: a masked path's mount;
/// crun: sethostname) and before where the filter goes with `noNewPrivileges` false.
const BEFORE_FILTER: (&[&str], &[&str]) = (&[], &["umask"]);
/// Unconfined, the sandbox's UTS namespace (no sethostname): crun's last setup step is the
/// mount after pivot_root, so its console, cwd and session set-up are in the profile too.
const BEFORE_FILTER_SHARED_UTS: (&[&str], &[&str]) = (
    &[],
    &[
        "access", "chdir", "fchown", "getegid", "geteuid", "getgid", "lseek", "read", "setsid",
        "statx", "umask",
    ],
);
/// After its filter, what only runc makes: its Go runtime closing the inherited fds.
const RUNC_ONLY: [&str; 3] = ["epoll_ctl", "fstatfs", "getdents64"];

fn with(names: &BTreeSet<String>, more: &[&str]) -> BTreeSet<String> {
    let mut all = names.clone();
    all.extend(more.iter().map(|s| (*s).to_owned()));
    all
}

fn assert_same(what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) {
    assert!(
        got == want,
        "{what}: +{:?} -{:?}",
        got.difference(want).collect::<Vec<_>>(),
        want.difference(got).collect::<Vec<_>>()
    );
}

/// runc and crun, each Unconfined and under a filter, with `noNewPrivileges` false and true,
/// with a UTS namespace of their own or not, run the same workload: each profile starts where
/// it must (the filter, or the runtime's last setup step), holds no setup step, the Unconfined
/// ones replay with the same output, and the profiles differ only by what the runtimes do
/// differently (listed above).
#[test]
fn unconfined_containers_are_recorded_from_where_the_filter_would_be() {
    require_root();
    let runc = record_each_start("runc");
    let crun = {
        let _hugetlb = HugetlbV1::mount();
        record_each_start("crun")
    };
    let of = |recorded: &[(Start, BTreeSet<String>)],
              [filter, no_new_privileges, own_uts]: [bool; 3]| {
        recorded
            .iter()
            .find(|(start, _)| {
                *start
                    == Start {
                        filter,
                        no_new_privileges,
                        own_uts,
                    }
            })
            .map(|(_, names)| names.clone())
            .unwrap()
    };
    let mut filtered = Vec::new();
    for (runtime, recorded) in [("runc", &runc), ("crun", &crun)] {
        let pick = |(runc, crun): (&'static [&'static str], &'static [&'static str])| {
            if runtime == "runc" { runc } else { crun }
        };
        let late_filter = of(recorded, [true, true, true]);
        let early_filter = of(recorded, [true, false, true]);
        assert_same(
            &format!("{runtime}: filter with noNewPrivileges false, against true"),
            &early_filter,
            &with(&late_filter, pick(BETWEEN_FILTERS)),
        );
        for no_new_privileges in [false, true] {
            assert_same(
                &format!(
                    "{runtime}: Unconfined (noNewPrivileges {no_new_privileges}), against its early filter"
                ),
                &of(recorded, [false, no_new_privileges, true]),
                &with(&early_filter, pick(BEFORE_FILTER)),
            );
        }
        assert_same(
            &format!("{runtime}: Unconfined in a shared UTS namespace, against its early filter"),
            &of(recorded, [false, false, false]),
            &with(&early_filter, pick(BEFORE_FILTER_SHARED_UTS)),
        );
        filtered.push(late_filter);
    }
    assert_same(
        "runc against crun, filter with noNewPrivileges true",
        &filtered[0],
        &with(&filtered[1], &RUNC_ONLY),
    );
}

/// An Unconfined container whose workload installs a seccomp filter of its own (`syscribe run`
/// with an allow-all profile, then `nproc`): that filter is no boundary, so what the workload
/// did before it (`uptime`: sysinfo) stays in the profile beside what came after.
#[test]
fn a_workloads_own_filter_is_no_boundary() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("own-filter");
    let recording = PodRecording::start(&pod, out.path());
    let container = Bundle::new(
        &pod,
        &[
            "/bin/sh",
            "-c",
            "uptime >/dev/null; /syscribe run --profile /allow.json -- /bin/nproc >/dev/null; echo done",
        ],
    );
    std::fs::write(
        container.rootfs().join("allow.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#,
    )
    .unwrap();
    // syscribe (dynamically linked) and the host's libraries, read-only.
    let bin = syscribe_bin();
    container.edit(|config| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        for (source, destination) in [
            (bin.to_str().unwrap(), "/syscribe"),
            ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"),
            ("/usr/lib64", "/lib64"),
        ] {
            mounts.push(serde_json::json!({
                "destination": destination, "type": "bind", "source": source,
                "options": ["rbind", "ro"],
            }));
        }
    });
    let ran = container.run("runc");
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(stdout(&ran), "done\n");
    let profile = profile_of(out.path(), &container);
    assert_eq!(profile["syscribe"]["container"]["boundary"]["kind"], "exec");
    let names = allowed_names(&profile);
    assert_recorded(
        &names,
        &[
            ("before the workload's filter", "sysinfo"),
            ("the workload's filter", "seccomp"),
            ("after it", "sched_getaffinity"),
        ],
    );
    for setup in SETUP_STEPS {
        assert!(!names.contains(setup), "setup step {setup} in {names:?}");
    }
    assert_no_warnings(&recording.stop());
    drop(container);
    assert_no_container_leftovers(pod);
}

/// The warnings of a `syscribe record --cgroup` log that say a container's boundary was not
/// found, with their reason.
fn boundary_warnings(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("was not found"))
        })
        .map(|l| {
            l["fields"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Containers whose boundary cannot be found still get their whole recording as a profile,
/// with a warning naming why: one created by runc (and one by crun) and deleted without ever
/// being started (root switched, nothing exec'd), and a process moved into a container cgroup
/// by hand (no root switch at all).
#[test]
fn containers_without_a_boundary_get_everything_and_a_warning() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("no-boundary");
    let recording = PodRecording::start(&pod, out.path());
    let _hugetlb = HugetlbV1::mount();
    for runtime in ["runc", "crun"] {
        let container = Bundle::new(&pod, &["/bin/sync"]);
        // Created: the runtime's init sets the container up and waits to exec the entrypoint.
        let created = std::process::Command::new(runtime)
            .args(["create", "--bundle"])
            .arg(container.path())
            .arg(&container.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "{runtime} create");
        let deleted = std::process::Command::new(runtime)
            .args(["delete", "--force", &container.id])
            .output()
            .unwrap();
        assert!(
            deleted.status.success(),
            "{runtime} delete: {}",
            stderr(&deleted)
        );
        let profile = profile_of(out.path(), &container);
        assert_eq!(
            profile["syscribe"]["container"]["boundary"],
            serde_json::json!({ "kind": "none", "reason": "notExeced" }),
            "{runtime}"
        );
        let names = allowed_names(&profile);
        for setup in ["pivot_root", "mount"] {
            assert!(
                names.contains(setup),
                "{runtime}: the whole recording, {setup} too: {names:?}"
            );
        }
        assert!(
            !names.contains("sync"),
            "{runtime}: never started: {names:?}"
        );
        assert!(
            profile["syscribe"].get("capabilities").is_none(),
            "{runtime}: without a boundary the capabilities are unknown, not none: {}",
            profile["syscribe"]
        );
    }

    // A process moved into a container's cgroup: no runtime, no root switch.
    let id = format!(
        "{:064x}",
        0x5eed_u128 << 64 | u128::from(std::process::id())
    );
    let cgroup = pod.unified_dir().join(&id);
    std::fs::create_dir(&cgroup).unwrap();
    let moved = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c", "echo $$ > \"$1\"; exec /bin/busybox sync", "sh"])
        .arg(cgroup.join("cgroup.procs"))
        .status()
        .unwrap();
    assert!(moved.success());
    std::fs::remove_dir(&cgroup).unwrap();
    let path = out.join(&format!("{id}.json"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no profile for the moved process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        profile["syscribe"]["container"]["boundary"],
        serde_json::json!({ "kind": "none", "reason": "rootNotSwitched" })
    );
    let names = allowed_names(&profile);
    assert!(
        names.contains("sync") && names.contains("execve"),
        "{names:?}"
    );
    assert!(
        profile["syscribe"].get("capabilities").is_none(),
        "{}",
        profile["syscribe"]
    );

    let log = recording.stop();
    let mut reasons = boundary_warnings(&log);
    reasons.sort();
    assert_eq!(
        reasons,
        ["notExeced", "notExeced", "rootNotSwitched"],
        "one warning per container, naming why:\n{}",
        log.join("\n")
    );
    assert_no_container_leftovers(pod);
}

/// A process `runc exec` starts in a running Unconfined container joins its namespaces (setns)
/// long after the boundary: it only adds to the profile.
#[test]
fn a_process_execd_into_a_running_container_adds_to_its_profile() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("runc-exec");
    let recording = PodRecording::start(&pod, out.path());
    let container = Bundle::new(&pod, &["/bin/sh", "-c", "uptime >/dev/null; sleep 1.5"]);
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| container.run("runc"));
        std::thread::sleep(Duration::from_millis(700));
        let joined = std::process::Command::new("runc")
            .args(["exec", &container.id, "/bin/nproc"])
            .output()
            .unwrap();
        assert!(joined.status.success(), "runc exec: {}", stderr(&joined));
        let ran = runner.join().unwrap();
        assert!(ran.status.success(), "{}", stderr(&ran));
    });
    let profile = profile_of(out.path(), &container);
    assert_eq!(profile["syscribe"]["container"]["boundary"]["kind"], "exec");
    let names = allowed_names(&profile);
    assert_recorded(
        &names,
        &[
            ("the container", "sysinfo"),
            ("runc exec's process", "sched_getaffinity"),
        ],
    );
    assert_no_warnings(&recording.stop());
    drop(container);
    assert_no_container_leftovers(pod);
}

/// A container running as root with containerd's default capabilities, that chowns a file and
/// listens on a privileged port: its recording names exactly CAP_CHOWN and
/// CAP_NET_BIND_SERVICE (runc's own steps after the filter — the exec fifo, the final
/// `execve` — need none); run with only those two it does the same; without either it fails.
#[test]
fn a_root_containers_capabilities_are_exactly_what_it_used() {
    capabilities_are_exactly_what_it_used(false);
}

/// The same as a pod runs, where more checks are made in the container's tasks that are not
/// the container's needs: its root is an overlay, as containerd's snapshotter makes them, and
/// overlayfs checks its *mounter's* capabilities on the layers beneath (CAP_SYS_ADMIN for its
/// trusted xattrs at lookups, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH at the copy-up of
/// /tmp); and with `noNewPrivileges` false and the image's supplementary groups (containerd
/// sets `additionalGids` from its /etc/group), runc installs the filter and then drops
/// privileges — counted from the filter on, that added CAP_SETGID, CAP_SETPCAP and CAP_SETUID
/// (as on the cluster); they count from the container's exec.
#[test]
fn a_pods_overlay_root_and_runcs_privilege_drop_are_not_the_containers() {
    capabilities_are_exactly_what_it_used(true);
}

/// `as_a_pod`: an overlay root and `noNewPrivileges: false` (see above).
fn capabilities_are_exactly_what_it_used(as_a_pod: bool) {
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
    let args = ["/bin/sh", "-c", &script];
    let lower = as_a_pod.then(|| Bundle::new(&pod, &args));
    let container = match &lower {
        Some(lower) => {
            let container = Bundle::over(&lower.rootfs(), &pod, &args);
            container.set_seccomp(Some(&recording_profile()));
            container.edit(|config| {
                config["process"]["noNewPrivileges"] = false.into();
                config["process"]["user"]["additionalGids"] = serde_json::json!([0, 10]);
            });
            container
        }
        None => bundle(&pod, &args),
    };
    // What containerd gives a container by default: the set it is recorded with.
    container.set_capabilities(&syscribe_tests::samples::DEFAULT_CAPABILITIES);
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
    drop(lower);
    assert_no_container_leftovers(pod);
}
