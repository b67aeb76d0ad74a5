//! A parsed denial + what the node knows about its process → one output line, with the field
//! names of the upstream log enricher (`node`, `pid`, `syscallID`, `syscallName`, `executable`,
//! `timestamp`, `type`, …). Fields that cannot be known are absent, never empty strings.

use libseccomp::{ScmpArch, ScmpSyscall};
use std::sync::Arc;

use serde::Serialize;

use super::parse::{AuditRecord, Denial, EventId, SeccompAction};
use crate::resolve::container::ContainerRef;

/// One enriched denial, as printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enriched {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `SECONDS.MILLIS:SERIAL` of the audit event.
    #[serde(serialize_with = "event_timestamp")]
    pub timestamp: EventId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Kubernetes names, from the runtime's annotations or the daemon's pod index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    // seccomp
    #[serde(rename = "syscallID", skip_serializing_if = "Option::is_none")]
    pub syscall_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall_name: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    // SELinux
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scontext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcontext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tclass: Option<String>,
    // AppArmor
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apparmor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Enriched {
    /// Writes the line as JSON, exactly as serde would (same fields, order and escapes), without
    /// serde's byte-at-a-time escaping for the common clean strings: the enricher's hot path.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":");
        json_str(out, self.kind);
        out.extend_from_slice(b",\"timestamp\":\"");
        let t = &self.timestamp;
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(t.seconds).as_bytes());
        out.push(b'.');
        if t.millis < 100 {
            out.push(b'0');
        }
        if t.millis < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(digits.format(t.millis).as_bytes());
        out.push(b':');
        out.extend_from_slice(digits.format(t.serial).as_bytes());
        out.push(b'"');
        let field = |out: &mut Vec<u8>, key: &str, value: Option<&str>| {
            if let Some(value) = value {
                out.push(b',');
                json_str(out, key);
                out.push(b':');
                json_str(out, value);
            }
        };
        field(out, "node", self.node.as_deref());
        field(out, "namespace", self.namespace.as_deref());
        field(out, "pod", self.pod.as_deref());
        field(out, "container", self.container.as_deref());
        field(out, "containerID", self.container_id.as_deref());
        field(out, "podUID", self.pod_uid.as_deref());
        field(out, "executable", self.executable.as_deref());
        field(out, "comm", self.comm.as_deref());
        if let Some(pid) = self.pid {
            out.extend_from_slice(b",\"pid\":");
            out.extend_from_slice(digits.format(pid).as_bytes());
        }
        if let Some(id) = self.syscall_id {
            out.extend_from_slice(b",\"syscallID\":");
            out.extend_from_slice(digits.format(id).as_bytes());
        }
        field(out, "syscallName", self.syscall_name.as_deref());
        field(out, "action", self.action);
        field(out, "perm", self.perm.as_deref());
        field(out, "scontext", self.scontext.as_deref());
        field(out, "tcontext", self.tcontext.as_deref());
        field(out, "tclass", self.tclass.as_deref());
        field(out, "apparmor", self.apparmor.as_deref());
        field(out, "operation", self.operation.as_deref());
        field(out, "profile", self.profile.as_deref());
        field(out, "name", self.name.as_deref());
        out.push(b'}');
    }
}

/// A JSON string: copied whole when nothing needs escaping, else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, value: &str) {
    // No early exit: the loop vectorizes.
    let needs_escape = value.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// `SECONDS.MILLIS:SERIAL`, formatted on the stack.
fn event_timestamp<S: serde::Serializer>(event: &EventId, out: S) -> Result<S::Ok, S::Error> {
    use std::io::Write as _;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 20 + 1 + 3 + 1 + 20 digits at most: always fits.
    let _ = write!(
        cursor,
        "{}.{:03}:{}",
        event.seconds, event.millis, event.serial
    );
    let len = cursor.position() as usize;
    out.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

/// The libseccomp architecture of an `AUDIT_ARCH_*` value (and x32's syscall bit on x86_64).
pub fn scmp_arch(audit_arch: u32, syscall: i64) -> Option<ScmpArch> {
    const X32_SYSCALL_BIT: i64 = 0x4000_0000;
    Some(match audit_arch {
        0xc000_003e if syscall & X32_SYSCALL_BIT != 0 => ScmpArch::X32,
        0xc000_003e => ScmpArch::X8664,
        0x4000_0003 => ScmpArch::X86,
        0xc000_00b7 => ScmpArch::Aarch64,
        0x4000_0028 => ScmpArch::Arm,
        0xc000_00f3 => ScmpArch::Riscv64,
        0xc000_0015 => ScmpArch::Ppc64Le,
        0x8000_0016 => ScmpArch::S390X,
        _ => return None,
    })
}

/// The syscall's name for the record's architecture, from libseccomp.
pub fn syscall_name(audit_arch: u32, syscall: i64) -> Option<String> {
    let arch = scmp_arch(audit_arch, syscall)?;
    let nr = i32::try_from(syscall).ok()?;
    ScmpSyscall::from(nr).get_name_by_arch(arch).ok()
}

/// Syscall names by (arch, number), from libseccomp once each. Bounded: when full it starts
/// over (and counts it), so a flood of bogus numbers cannot grow it.
#[derive(Debug, Default)]
pub struct SyscallNames {
    names: std::collections::HashMap<(u32, i64), Option<Arc<str>>>,
    /// How many times the cache was full and started over.
    pub resets: u64,
}

impl SyscallNames {
    const MAX: usize = 8192;

    pub fn get(&mut self, audit_arch: u32, syscall: i64) -> Option<Arc<str>> {
        if self.names.len() >= Self::MAX && !self.names.contains_key(&(audit_arch, syscall)) {
            self.names.clear();
            self.resets += 1;
        }
        self.names
            .entry((audit_arch, syscall))
            .or_insert_with(|| syscall_name(audit_arch, syscall).map(Arc::from))
            .clone()
    }
}

/// Builds the output line; `container` is what the resolver found for the record's pid.
pub fn enrich(
    record: AuditRecord,
    node: Option<&Arc<str>>,
    container: Option<&ContainerRef>,
    names: &mut SyscallNames,
) -> Enriched {
    let mut out = Enriched {
        timestamp: record.event,
        node: node.cloned(),
        container_id: container.map(|c| c.container_id.clone()),
        pod_uid: container.and_then(|c| c.pod_uid.clone()),
        ..Enriched::default()
    };
    match record.denial {
        Denial::Seccomp(s) => {
            out.kind = "seccomp";
            out.pid = Some(s.pid);
            out.executable = s.exe;
            out.comm = s.comm;
            out.syscall_id = Some(s.syscall);
            out.syscall_name = names.get(s.arch, s.syscall);
            out.action = Some(SeccompAction::from_code(s.code).as_str());
        }
        Denial::Selinux(avc) => {
            out.kind = "selinux";
            out.pid = avc.pid;
            out.comm = avc.comm;
            out.perm = Some(avc.perms.join(" "));
            out.scontext = Some(avc.scontext);
            out.tcontext = Some(avc.tcontext);
            out.tclass = Some(avc.tclass);
            out.name = avc.name;
        }
        Denial::AppArmor(aa) => {
            out.kind = "apparmor";
            out.pid = aa.pid;
            out.comm = aa.comm;
            out.apparmor = Some(aa.apparmor);
            out.operation = aa.operation;
            out.profile = aa.profile;
            out.name = aa.name;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        audit::parse::{Parsed, parse_line},
        resolve::container::Runtime,
    };

    fn parsed(line: &str) -> AuditRecord {
        match parse_line(line).unwrap() {
            Parsed::Record(r) => *r,
            other => panic!("not a denial: {other:?}"),
        }
    }

    #[test]
    fn the_fast_json_writer_matches_serde() {
        let mut names = SyscallNames::default();
        let lines = [
            r#"audit: type=1326 audit(1795703105.004:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=7607 comm="sc" exe="/tmp/sc" sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f5c6cd5a4f7 code=0x7ffc0000"#,
            r#"type=AVC msg=audit(1795703105.044:31): avc:  denied  { read write } for  pid=4242 comm="cat" name="secret" scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"#,
            // Hex-encoded names with a quote, a backslash, a tab, DEL and non-ASCII.
            r#"type=AVC msg=audit(1.000:3): apparmor="DENIED" operation="open" profile="p" name=2F61225C0962C3A97F pid=1 comm=6120620A"#,
        ];
        for line in lines {
            let mut out = enrich(parsed(line), Some(&Arc::from("n\"1")), None, &mut names);
            out.namespace = Some("ns".into());
            out.pod_uid = Some("uid".into());
            let mut fast = Vec::new();
            out.write_json(&mut fast);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                serde_json::to_string(&out).unwrap(),
                "{line}"
            );
        }
    }

    #[test]
    fn seccomp_lines_get_names_actions_and_the_container() {
        let rec = parsed(
            r#"audit: type=1326 audit(1795703105.844:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=7607 comm="sc" exe="/tmp/sc" sig=0 arch=c000003e syscall=110 compat=0 ip=0x7f5c6cd5a4f7 code=0x7ffc0000"#,
        );
        let container = ContainerRef {
            container_id: "ab".repeat(32),
            pod_uid: Some("0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60".into()),
            runtime: Runtime::Unknown,
        };
        let out = enrich(
            rec,
            Some(&Arc::from("node-1")),
            Some(&container),
            &mut SyscallNames::default(),
        );
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["type"], "seccomp");
        assert_eq!(json["syscallName"], "getppid");
        assert_eq!(json["syscallID"], 110);
        assert_eq!(json["action"], "log");
        assert_eq!(json["executable"], "/tmp/sc");
        assert_eq!(json["timestamp"], "1795703105.844:2");
        assert_eq!(json["node"], "node-1");
        assert_eq!(json["containerID"], "ab".repeat(32));
        assert_eq!(json["podUID"], "0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60");
        assert!(
            json.get("perm").is_none(),
            "unknown fields are absent: {json}"
        );
    }

    #[test]
    fn the_name_cache_is_bounded() {
        let mut names = SyscallNames::default();
        for nr in 0..(SyscallNames::MAX as i64 + 10) {
            names.get(0xc000_003e, nr);
        }
        assert_eq!(names.resets, 1);
        assert!(names.names.len() <= SyscallNames::MAX);
        assert_eq!(names.get(0xc000_003e, 110).as_deref(), Some("getppid"));
    }

    #[test]
    fn syscall_names_follow_the_records_architecture() {
        assert_eq!(syscall_name(0xc000_003e, 110).as_deref(), Some("getppid"));
        assert_eq!(
            syscall_name(0x4000_0003, 64).as_deref(),
            Some("getppid"),
            "i386 numbering"
        );
        assert_eq!(
            syscall_name(0xc000_00b7, 173).as_deref(),
            Some("getppid"),
            "aarch64 numbering"
        );
        assert_eq!(
            syscall_name(0xc000_003e, 0x4000_0000 | 110).as_deref(),
            Some("getppid"),
            "x32"
        );
        assert_eq!(syscall_name(0x1234, 1), None);
    }

    #[test]
    fn selinux_and_apparmor_fields() {
        let avc = parsed(
            r#"type=AVC msg=audit(1795703200.123:77): avc:  denied  { read write } for  pid=4242 comm="cat" name="secret" scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"#,
        );
        let json =
            serde_json::to_value(enrich(avc, None, None, &mut SyscallNames::default())).unwrap();
        assert_eq!(json["type"], "selinux");
        assert_eq!(json["perm"], "read write");
        assert_eq!(json["tclass"], "file");
        assert!(json.get("node").is_none() && json.get("containerID").is_none());
        let aa = parsed(
            r#"audit: type=1400 audit(1795703300.001:9): apparmor="DENIED" operation="open" profile="p" name="/etc/shadow" pid=5151 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
        );
        let json =
            serde_json::to_value(enrich(aa, None, None, &mut SyscallNames::default())).unwrap();
        assert_eq!(json["type"], "apparmor");
        assert_eq!(json["apparmor"], "DENIED");
        assert_eq!(json["operation"], "open");
        assert_eq!(json["name"], "/etc/shadow");
    }
}
