//! `syscribe record` against real processes on the real kernel (root).

use std::collections::BTreeSet;

use syscribe_tests::*;

const PROBE: &str = env!("CARGO_BIN_EXE_syscall-probe");

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn unusual_syscalls_are_recorded_and_uncalled_ones_are_not() {
    let dir = TempDir::new("unusual");
    let rec = record(&dir, "unusual", &[PROBE, "unusual"]);
    assert!(rec.output.status.success(), "{}", stderr(&rec.output));
    let names = rec.names();
    for called in ["uname", "getcwd", "sched_yield", "getpriority", "execve"] {
        assert!(names.contains(called), "{called} missing from {names:?}");
    }
    for never in ["reboot", "kexec_load", "init_module", "sysinfo", "getsid"] {
        assert!(
            !names.contains(never),
            "{never} recorded but never called: {names:?}"
        );
    }
    assert_eq!(rec.profile["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(rec.profile["architectures"][0], "SCMP_ARCH_X86_64");
    assert_eq!(rec.profile["syscribe"]["dropped"]["outOfRange"], 0);
    assert_eq!(rec.profile["syscribe"]["dropped"]["unnamed"], 0);
    let sorted: Vec<&String> = names.iter().collect();
    let in_file: Vec<&str> = rec.profile["syscalls"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(
        in_file,
        sorted.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "names are sorted"
    );
    assert_no_leftovers();
}

/// A syscall number beyond the recorder's range is counted, warned about (the eBPF side's
/// aya-log message reaches syscribe's log) and reported in the profile; never silent.
#[test]
fn out_of_range_syscalls_are_counted_and_reported() {
    let dir = TempDir::new("x32");
    let rec = record(&dir, "x32", &[PROBE, "x32"]);
    assert!(rec.output.status.success(), "{}", stderr(&rec.output));
    assert_eq!(
        rec.profile["syscribe"]["dropped"]["outOfRange"], 1,
        "{}",
        rec.profile
    );
    let err = stderr(&rec.output);
    assert!(
        err.contains("is outside the recorded range"),
        "no eBPF diagnostic in:\n{err}"
    );
    assert!(err.contains("1 dropped"), "{err}");
    assert!(
        !rec.names().contains("getpid"),
        "an x32 getpid is not a native getpid"
    );
    assert_no_leftovers();
}

#[test]
fn children_threads_and_grandchildren_are_recorded() {
    let dir = TempDir::new("family");
    let rec = record(&dir, "family", &[PROBE, "family"]);
    assert!(rec.output.status.success(), "{}", stderr(&rec.output));
    let names = rec.names();
    // parent's thread, child, child's thread, grandchild
    for expected in ["sysinfo", "getsid", "times", "getpgid", "clone3", "wait4"] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_no_leftovers();
}

#[test]
fn the_commands_exit_status_is_syscribes() {
    let dir = TempDir::new("exit");
    let rec = record(&dir, "exit3", &["/bin/busybox", "sh", "-c", "exit 3"]);
    assert_eq!(rec.output.status.code(), Some(3));
    let rec = record(&dir, "killed", &["/bin/busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(rec.output.status.code(), Some(128 + 9));
    assert!(rec.names().contains("kill"), "{:?}", rec.names());
    assert_no_leftovers();
}

#[test]
fn processes_left_behind_are_recorded_then_killed() {
    let dir = TempDir::new("leftover");
    let start = std::time::Instant::now();
    // The background probe outlives the shell; it calls sysinfo, then sleeps 30 s.
    let script = format!("{PROBE} linger & /bin/busybox sleep 0.3");
    let rec = record(&dir, "leftover", &["/bin/busybox", "sh", "-c", &script]);
    assert!(rec.output.status.success(), "{}", stderr(&rec.output));
    assert!(
        start.elapsed().as_secs() < 20,
        "syscribe waited for the leftover process"
    );
    assert!(rec.names().contains("sysinfo"), "{:?}", rec.names());
    assert!(
        stderr(&rec.output).contains("left processes running"),
        "{}",
        stderr(&rec.output)
    );
    assert_no_leftovers();
}

#[test]
fn crd_format_is_an_upstream_seccomp_profile() {
    let dir = TempDir::new("crd");
    let out = dir.join("uname.yaml");
    let output = syscribe()
        .args(["record", "--format", "crd", "-o"])
        .arg(&out)
        .args(["--", "/bin/busybox", "uname", "-m"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(doc["apiVersion"], "security-profiles-operator.x-k8s.io/v1");
    assert_eq!(doc["kind"], "SeccompProfile");
    assert_eq!(doc["metadata"]["name"], "busybox");
    assert_eq!(
        doc["metadata"]["annotations"]["syscribe.dev/dropped-syscalls"],
        "0"
    );
    assert_eq!(doc["spec"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(doc["spec"]["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    let names: Vec<&str> = doc["spec"]["syscalls"][0]["names"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"uname"), "{names:?}");
    // The CRD document replays too.
    let replay = run_under(&out, &["/bin/busybox", "uname", "-m"]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert_eq!(stdout(&replay), stdout(&output));
    assert_no_leftovers();
}

/// `--format securitycontext`: the capabilities the command used, everything else dropped,
/// and its SeccompProfile by name; a silent probe (the overcommit check at every mapping
/// probes CAP_SYS_ADMIN, which root has) is not a use.
#[test]
fn securitycontext_format_adds_what_was_used_and_drops_the_rest() {
    let dir = TempDir::new("securitycontext");
    let file = dir.join("owned");
    std::fs::write(&file, "x").unwrap();
    let out = dir.join("context.yaml");
    let output = syscribe()
        .args([
            "record",
            "--format",
            "securitycontext",
            "--name",
            "web",
            "-o",
        ])
        .arg(&out)
        .args(["--", "/bin/busybox", "chown", "1:1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let context = &doc["securityContext"];
    assert_eq!(
        context["capabilities"],
        serde_yaml::from_str::<serde_yaml::Value>("{drop: [ALL], add: [CHOWN]}").unwrap()
    );
    assert_eq!(context["seccompProfile"]["type"], "Localhost");
    assert_eq!(
        context["seccompProfile"]["localhostProfile"],
        "operator/web.json"
    );
    assert_no_leftovers();
}

/// The recorded set equals what `strace -f` observes for the same deterministic command.
#[test]
fn recorded_set_equals_strace() {
    let dir = TempDir::new("strace");
    let command = [
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox ls / >/dev/null; /bin/busybox uname -a >/dev/null",
    ];
    let rec = record(&dir, "strace", &command);
    assert!(rec.output.status.success(), "{}", stderr(&rec.output));

    let log = dir.join("strace.log");
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .args(command)
        .status()
        .expect("strace is installed by `cargo xtask setup`");
    assert!(status.success());
    let traced = strace_names(&std::fs::read_to_string(&log).unwrap());
    let recorded = rec.names();
    let only_recorded: Vec<_> = recorded.difference(&traced).collect();
    let only_traced: Vec<_> = traced.difference(&recorded).collect();
    assert!(
        only_recorded.is_empty() && only_traced.is_empty(),
        "recorder and strace disagree: only recorded {only_recorded:?}, only traced {only_traced:?}"
    );
    assert_eq!(recorded, traced);
    assert!(recorded.is_superset(&set(&["execve", "getdents64", "uname", "wait4"])));
}

/// Syscall names from `strace -f -qq` lines: `1234 openat(AT_FDCWD, …) = 3`,
/// `1234 <... wait4 resumed>…`, `1234 +++ exited with 0 +++`.
fn strace_names(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|line| {
            let rest = line
                .split_once(' ')
                .map_or(line, |(_, rest)| rest)
                .trim_start();
            if rest.starts_with("+++") || rest.starts_with("---") {
                return None;
            }
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// A recorder killed with SIGKILL leaves its cgroup: an empty one goes at the next recording
/// (also when its pid now names another program), one that still holds the recorded
/// command's processes is reported (they are the user's; not killed behind their back).
#[test]
fn a_killed_recorders_cgroups_are_cleaned_or_reported() {
    require_root();
    let parent = std::path::Path::new(LOCAL_CGROUP_PARENT);
    std::fs::create_dir_all(parent).unwrap();
    // A pid that now names another program (sleep), its cgroup empty.
    let mut reused = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let empty = parent.join(format!("record-{}", reused.id()));
    std::fs::create_dir(&empty).unwrap();
    // A gone recorder's cgroup with its command still running in it.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let populated = parent.join(format!("record-{}", gone.id()));
    std::fs::create_dir(&populated).unwrap();
    let mut orphan = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(populated.join("cgroup.procs"), orphan.id().to_string()).unwrap();

    let dir = TempDir::new("stale");
    let out = syscribe()
        .arg("record")
        .arg("-o")
        .arg(dir.join("p.json"))
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    let err = stderr(&out);
    let populated_reported = err.contains(&populated.display().to_string())
        && err.contains(&orphan.id().to_string())
        && err.contains("still holds processes");
    let empty_removed = !empty.exists();
    // Clean up before asserting.
    let _ = std::fs::write(populated.join("cgroup.kill"), "1");
    let _ = orphan.wait();
    let _ = reused.kill();
    let _ = reused.wait();
    let _ = std::fs::remove_dir(&populated);
    let _ = std::fs::remove_dir(&empty);
    let _ = std::fs::remove_dir(parent);
    assert!(out.status.success(), "{err}");
    assert!(populated_reported, "not reported: {err}");
    assert!(
        empty_removed,
        "the empty cgroup of a reused pid stayed: {err}"
    );
}
