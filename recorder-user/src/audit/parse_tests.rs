use super::*;

const SECCOMP_KMSG: &str = r#"audit: type=1326 audit(1795703105.844:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=7607 comm="sc" exe="/tmp/sc" sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f5c6cd5a4f7 code=0x7ffc0000"#;

fn record(line: &str) -> AuditRecord {
    match parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")) {
        Parsed::Record(record) => *record,
        other => panic!("not a denial: {line}: {other:?}"),
    }
}

fn seccomp(line: &str) -> SeccompRecord {
    match record(line).denial {
        Denial::Seccomp(s) => s,
        other => panic!("not seccomp: {other:?}"),
    }
}

#[test]
fn seccomp_in_every_framing() {
    let body = SECCOMP_KMSG.strip_prefix("audit: type=1326 ").unwrap();
    for line in [
        SECCOMP_KMSG.to_owned(),
        format!("6,1234,5678901,-;{SECCOMP_KMSG}"),
        format!("[  123.456789] {SECCOMP_KMSG}"),
        format!("Nov 26 14:44:56 vm kernel: {SECCOMP_KMSG}"),
        format!("type=SECCOMP msg={body}"),
        format!(
            "type=SECCOMP msg={body}\u{1d}AUID=\"unset\" UID=\"root\" ARCH=x86_64 SYSCALL=getppid"
        ),
    ] {
        let rec = record(&line);
        assert_eq!(
            rec.event,
            EventId {
                seconds: 1_795_703_105,
                millis: 844,
                serial: 2
            },
            "{line}"
        );
        let Denial::Seccomp(s) = rec.denial else {
            panic!("{line}")
        };
        assert_eq!(s.pid, 7607);
        assert_eq!(s.uid, Some(0));
        assert_eq!(s.comm.as_deref(), Some("sc"));
        assert_eq!(s.exe.as_deref(), Some("/tmp/sc"));
        assert_eq!(s.arch, 0xc000_003e);
        assert_eq!(s.syscall, 110);
        assert_eq!(SeccompAction::from_code(s.code), SeccompAction::Log);
    }
}

#[test]
fn seccomp_actions_and_hex_encoded_strings() {
    let kill = SECCOMP_KMSG
        .replace("code=0x7ffc0000", "code=0x80000000")
        .replace(
            "comm=\"sc\" exe=\"/tmp/sc\"",
            "comm=6D7920636D64 exe=\"/usr/bin/my cmd\"",
        );
    let s = seccomp(&kill);
    assert_eq!(SeccompAction::from_code(s.code), SeccompAction::KillProcess);
    assert_eq!(s.comm.as_deref(), Some("my cmd"));
    for (code, action) in [
        (0x0000_0000, SeccompAction::KillThread),
        (0x0003_0001, SeccompAction::Trap),
        (0x0005_0001, SeccompAction::Errno),
        (0x7fc0_0000, SeccompAction::UserNotif),
        (0x7ff0_0000, SeccompAction::Trace),
        (0x7fff_0000, SeccompAction::Allow),
        (0x1234_0000, SeccompAction::Unknown),
    ] {
        assert_eq!(SeccompAction::from_code(code), action, "{code:#x}");
    }
}

#[test]
fn avcs_with_several_permissions() {
    let line = r#"type=AVC msg=audit(1795703200.123:77): avc:  denied  { read write } for  pid=4242 comm="cat" name="secret" dev="vda" ino=1234 scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"#;
    let Denial::Selinux(avc) = record(line).denial else {
        panic!()
    };
    assert_eq!(avc.decision, "denied");
    assert_eq!(avc.perms, ["read", "write"]);
    assert_eq!(avc.pid, Some(4242));
    assert_eq!(avc.comm.as_deref(), Some("cat"));
    assert_eq!(avc.name.as_deref(), Some("secret"));
    assert_eq!(avc.scontext, "system_u:system_r:container_t:s0:c1,c2");
    assert_eq!(avc.tcontext, "system_u:object_r:etc_t:s0");
    assert_eq!(avc.tclass, "file");
    assert_eq!(avc.permissive, Some(false));
    let kmsg = "audit: type=1400 audit(1795703200.123:78): avc:  denied  { execute } for  pid=1 comm=\"x\" scontext=a:b:c:s0 tcontext=a:b:d:s0 tclass=file permissive=1";
    let Denial::Selinux(avc) = record(kmsg).denial else {
        panic!()
    };
    assert_eq!(avc.perms, ["execute"]);
    assert_eq!(avc.permissive, Some(true));
}

#[test]
fn apparmor_with_and_without_extras() {
    let line = r#"audit: type=1400 audit(1795703300.001:9): apparmor="DENIED" operation="open" profile="cri-containerd.apparmor.d" name="/etc/shadow" pid=5151 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    let Denial::AppArmor(aa) = record(line).denial else {
        panic!()
    };
    assert_eq!(aa.apparmor, "DENIED");
    assert_eq!(aa.operation.as_deref(), Some("open"));
    assert_eq!(aa.profile.as_deref(), Some("cri-containerd.apparmor.d"));
    assert_eq!(aa.name.as_deref(), Some("/etc/shadow"));
    assert_eq!(aa.pid, Some(5151));
    assert_eq!(aa.requested_mask.as_deref(), Some("r"));
    let minimal = r#"type=AVC msg=audit(1795703300.002:10): apparmor="DENIED" operation="capable" profile="p" pid=1 comm="x" capability=21 capname="sys_admin""#;
    let Denial::AppArmor(aa) = record(minimal).denial else {
        panic!()
    };
    assert_eq!(aa.operation.as_deref(), Some("capable"));
    assert_eq!(aa.name, None);
    assert_eq!(aa.denied_mask, None);
}

#[test]
fn syscall_and_eoe_records_are_event_context() {
    let line = r#"type=SYSCALL msg=audit(1795703105.844:7): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c items=0 ppid=1 pid=4242 auid=4294967295 uid=0 comm="cat" exe="/usr/bin/cat" subj=system_u:system_r:container_t:s0 key=(null)"#;
    let event = EventId {
        seconds: 1795703105,
        millis: 844,
        serial: 7,
    };
    assert_eq!(
        parse_line(line),
        Ok(Parsed::Syscall(Box::new(SyscallContext {
            event,
            pid: Some(4242),
            exe: Some("/usr/bin/cat".into()),
            arch: Some(0xc000_003e),
            syscall: Some(257),
        })))
    );
    assert_eq!(
        parse_line("audit: type=1320 audit(1795703105.844:7): "),
        Ok(Parsed::EndOfEvent(event))
    );
    assert!(matches!(
        parse_line("audit: type=1300 audit(1795703105.844:7): pid=x"),
        Err(AuditParseError::BadField { field: "pid", .. })
    ));
}

#[test]
fn other_types_and_other_lines_are_ignored() {
    for line in [
        "type=PROCTITLE msg=audit(1795703105.844:2): proctitle=2F62696E2F7368",
        "[    0.000000] Linux version 6.18.44",
        "",
        "type=AVC msg=audit(1795703105.844:3): something else entirely",
    ] {
        assert_eq!(parse_line(line), Ok(Parsed::Ignored), "{line}");
    }
}

#[test]
fn truncated_and_garbage_records_are_named_errors() {
    let cases = [
        (
            "audit: type=1326 ",
            "no audit(SECONDS.MILLIS:SERIAL) header",
        ),
        ("audit: type=1326 audit(1795703105.844:2", "no closing"),
        (
            "audit: type=1326 audit(abc.844:2): pid=1",
            "seconds are not a number",
        ),
        (
            "audit: type=1326 audit(1795703105.844:2): pid=1 arch=c000003e",
            "missing field syscall",
        ),
        (
            "audit: type=1326 audit(1795703105.844:2): pid=x syscall=1",
            "field pid=\"x\": not a number",
        ),
        (
            "audit: type=1326 audit(1795703105.844:2): pid=1 syscall=1 arch=zz code=0x0",
            "field arch=\"zz\"",
        ),
        (
            "type=AVC msg=audit(1.2:3): avc:  denied  { } for pid=1",
            "no permissions",
        ),
        ("type=AVC msg=audit(1.2:3): avc:  denied  { read ", "no '}'"),
        (
            "type=AVC msg=audit(1.2:3): avc:  denied  { read } for pid=1 tclass=file",
            "missing field scontext",
        ),
    ];
    for (line, needle) in cases {
        let err = parse_line(line).expect_err(line).to_string();
        assert!(err.contains(needle), "{line}: {err}");
    }
}

#[test]
fn fields_match_whole_keys_only() {
    let body = Fields::parse("auid=1 uid=2 suid=3 euid=4");
    assert_eq!(body.get("uid"), Some("2"));
    assert_eq!(body.get("id"), None);
    assert_eq!(Fields::parse("a=\"x y\" b=1").get("a"), Some("\"x y\""));
    assert_eq!(Fields::parse("a=\"x y\" b=1").get("b"), Some("1"));
    assert_eq!(
        Fields::parse("a=\"unterminated").get("a"),
        Some("\"unterminated")
    );
    assert_eq!(
        Fields::parse("avc:  denied  { read } for  pid=3").get("pid"),
        Some("3")
    );
    assert_eq!(Fields::parse("x= y=1").get("x"), Some(""));
}
