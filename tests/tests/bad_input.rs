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
