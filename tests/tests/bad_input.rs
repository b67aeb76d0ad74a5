//! Bad input gets one clear error line naming the cause, and leaves nothing behind.

use std::process::Command;

use syscribe_tests::*;

/// Runs syscribe with `args`; asserts it failed with exactly one stderr line containing `needle`.
fn fails_with(cmd: &mut Command, needle: &str) -> std::process::Output {
    let output = cmd.output().expect("spawn syscribe");
    let err = stderr(&output);
    assert!(!output.status.success(), "succeeded: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    assert!(lines[0].starts_with("syscribe: error: "), "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in: {err}");
    assert_no_leftovers();
    output
}

#[test]
fn unknown_command() {
    let out = fails_with(
        syscribe().args(["record", "-o", "/dev/null", "--", "no-such-command-xyz"]),
        "command not found: no-such-command-xyz",
    );
    assert_eq!(out.status.code(), Some(127));
    let dir = TempDir::new("unknown-run");
    let profile = dir.join("allow.json");
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let out = fails_with(
        syscribe()
            .arg("run")
            .arg("--profile")
            .arg(&profile)
            .args(["--", "/no/such/path"]),
        "command not found: /no/such/path",
    );
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn not_root() {
    let bin = syscribe_bin();
    require_root();
    fails_with(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(["record", "-o", "/dev/null", "--", "/bin/true"]),
        "syscribe record needs root",
    );
}

#[test]
fn missing_btf() {
    fails_with(
        syscribe().args([
            "record",
            "--btf",
            "/nonexistent/vmlinux",
            "-o",
            "/dev/null",
            "--",
            "/bin/true",
        ]),
        "cannot read the kernel's BTF at /nonexistent/vmlinux",
    );
}

#[test]
fn no_cgroup2_mounted() {
    let dir = TempDir::new("mountinfo");
    let mountinfo = dir.join("mountinfo");
    std::fs::write(
        &mountinfo,
        "37 35 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
    )
    .unwrap();
    fails_with(
        syscribe().env("SYSCRIBE_MOUNTINFO", &mountinfo).args([
            "record",
            "-o",
            "/dev/null",
            "--",
            "/bin/true",
        ]),
        "no cgroup2 filesystem is mounted",
    );
}

#[test]
fn unreadable_and_malformed_profiles() {
    let dir = TempDir::new("profiles");
    fails_with(
        syscribe().args(["run", "--profile", "/nonexistent/p.json", "--", "/bin/true"]),
        "cannot read profile /nonexistent/p.json",
    );

    let cases = [
        (
            "bad.json",
            "{\"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [{\"names\": [\"read\"] \"action\": \"SCMP_ACT_ALLOW\"}]}",
            "bad.json:2:",
        ),
        (
            "action.json",
            r#"{"defaultAction": "SCMP_ACT_ALLOWED"}"#,
            "SCMP_ACT_ALLOWED",
        ),
        (
            "name.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["execve", "raed"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0].names[1]: unknown syscall \"raed\"",
        ),
        (
            "noexec.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "does not allow execve",
        ),
    ];
    for (file, text, needle) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        fails_with(
            syscribe()
                .arg("run")
                .arg("--profile")
                .arg(&path)
                .args(["--", "/bin/true"]),
            needle,
        );
    }
}

/// As shells do: 127 when nothing is there, 126 when something is there that cannot run
/// (no x permission, a directory, a script whose interpreter does not exist).
#[test]
fn commands_that_cannot_run_exit_126() {
    let dir = TempDir::new("noexec");
    let plain = dir.join("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\ntrue\n").unwrap();
    let orphan = dir.join("orphan.sh");
    std::fs::write(&orphan, "#!/no/such/interpreter -x\ntrue\n").unwrap();
    std::fs::set_permissions(&orphan, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let allow = dir.join("allow.json");
    std::fs::write(&allow, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let cases = [
        (plain.clone(), "is not executable (no x permission)"),
        (dir.path().to_owned(), "is a directory"),
        (orphan.clone(), "bad interpreter \"/no/such/interpreter\""),
    ];
    for (command, needle) in cases {
        let out = fails_with(
            syscribe().args(["record", "-o", "-", "--"]).arg(&command),
            needle,
        );
        assert_eq!(out.status.code(), Some(126), "record {}", command.display());
        let out = fails_with(
            syscribe()
                .arg("run")
                .arg("--profile")
                .arg(&allow)
                .arg("--")
                .arg(&command),
            needle,
        );
        assert_eq!(out.status.code(), Some(126), "run {}", command.display());
    }
}

/// Runs `argv` as nobody (the attacker needs no root).
fn as_nobody(argv: &[&std::ffi::OsStr]) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .output()
        .unwrap();
    assert!(out.status.success(), "as nobody {argv:?}: {}", stderr(&out));
}

/// An unprivileged user who can write where root writes its output plants links there; root's
/// syscribe refuses to write through them, before running anything, and the target is intact.
#[test]
fn links_planted_by_another_user_are_never_written_through() {
    require_root();
    let dir = TempDir::new("planted");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = shared.join("out.json");
    as_nobody(&[
        "ln".as_ref(),
        "-s".as_ref(),
        victim.as_os_str(),
        out.as_os_str(),
    ]);
    let marker = dir.join("ran");
    fails_with(
        syscribe()
            .arg("record")
            .arg("-o")
            .arg(&out)
            .args(["--", "/usr/bin/touch"])
            .arg(&marker),
        "is a symbolic link, not a regular file; refusing to replace it",
    );
    assert!(
        !marker.exists(),
        "the command ran although its output was refused"
    );
    // pull -o too (no root needed for pull, but root runs it here).
    let profile = dir.join("p.yaml");
    std::fs::write(
        &profile,
        "apiVersion: security-profiles-operator.x-k8s.io/v1beta1\nkind: SeccompProfile\nmetadata: {name: p}\nspec: {defaultAction: SCMP_ACT_ALLOW}\n",
    )
    .unwrap();
    fails_with(
        syscribe()
            .args(["pull", "p", "-f"])
            .arg(&profile)
            .arg("-o")
            .arg(&out),
        "is a symbolic link",
    );
    // A link to a block device, and a device named directly.
    let device = shared.join("disk.json");
    as_nobody(&[
        "ln".as_ref(),
        "-s".as_ref(),
        "/dev/loop0".as_ref(),
        device.as_os_str(),
    ]);
    fails_with(
        syscribe()
            .args(["pull", "p", "-f"])
            .arg(&profile)
            .arg("-o")
            .arg(&device),
        "is a symbolic link",
    );
    fails_with(
        syscribe()
            .args(["pull", "p", "-f"])
            .arg(&profile)
            .args(["-o", "/dev/full"]),
        "/dev/full is a character device, not a regular file",
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // What is not a link is written, and only the one file appears.
    let fine = shared.join("fine.json");
    let ok = syscribe()
        .args(["pull", "p", "-f"])
        .arg(&profile)
        .arg("-o")
        .arg(&fine)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let names: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// An output that cannot be written is said before the command runs, not after.
#[test]
fn an_unwritable_output_is_found_before_the_command_runs() {
    require_root();
    let dir = TempDir::new("unwritable");
    let marker = dir.join("ran");
    fails_with(
        syscribe()
            .args([
                "record",
                "-o",
                "/proc/syscribe-out.json",
                "--",
                "/usr/bin/touch",
            ])
            .arg(&marker),
        "cannot write /proc/syscribe-out.json",
    );
    assert!(
        !marker.exists(),
        "the command ran although its output cannot be written"
    );
    fails_with(
        syscribe()
            .args([
                "record",
                "--name",
                "Not_A_Name",
                "-o",
                "-",
                "--",
                "/usr/bin/touch",
            ])
            .arg(&marker),
        "--name \"Not_A_Name\" cannot be a resource name",
    );
    assert!(!marker.exists());
}

/// A few kilobytes that stand for gigabytes (aliases of aliases), nesting 600 KB deep, and
/// files that never end: each refused at once with what was wrong, by every command that reads
/// profiles.
#[test]
fn small_inputs_that_would_exhaust_memory_or_time_are_refused() {
    let dir = TempDir::new("bombs");
    let mut bomb = String::from(
        "apiVersion: security-profiles-operator.x-k8s.io/v1beta1\nkind: SeccompProfile\nmetadata: {name: p}\nspec:\n  defaultAction: SCMP_ACT_ALLOW\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..12 {
        let items = vec![format!("*l{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("  l{i}: &l{i} [{items}]\n"));
    }
    assert!(bomb.len() < 7000, "{}", bomb.len());
    let bomb_path = dir.join("bomb.yaml");
    std::fs::write(&bomb_path, &bomb).unwrap();
    let deep_path = dir.join("deep.json");
    std::fs::write(&deep_path, "[".repeat(600_000)).unwrap();
    let huge_path = dir.join("huge.json");
    std::fs::write(&huge_path, vec![b' '; 5 << 20]).unwrap();
    let started = std::time::Instant::now();
    for (path, needle) in [
        (&bomb_path, "excessive aliasing"),
        (&deep_path, "nested more than 64 levels deep"),
        (&huge_path, "larger than 4194304 bytes"),
        (
            &"/dev/zero".into(),
            "/dev/zero is a character device, not a regular file",
        ),
    ] {
        let validate = syscribe().arg("validate").arg(path).output().unwrap();
        let said = format!("{}{}", stdout(&validate), stderr(&validate));
        assert!(
            !validate.status.success() && said.contains(needle),
            "validate {}: {said}",
            path.display()
        );
        fails_with(syscribe().args(["pull", "p", "-f"]).arg(path), needle);
        fails_with(
            syscribe()
                .arg("run")
                .arg("--profile")
                .arg(path)
                .args(["--", "/bin/true"]),
            needle,
        );
    }
    // Not a timed assertion: the old code took minutes and gigabytes here; this is a bound
    // no machine misses by a factor of ten.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
