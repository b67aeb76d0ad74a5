//! Parsing kernel audit records of denials, in every framing they arrive in:
//! - auditd's audit.log: `type=SECCOMP msg=audit(1795703105.844:2): auid=… syscall=110 …`
//! - the kernel log (/dev/kmsg, syslog, dmesg): `audit: type=1326 audit(1795703105.844:2): …`,
//!   possibly behind a kmsg prefix (`6,1234,5678,-;`) or a dmesg timestamp (`[  12.3] `).
//!
//! Seccomp (1326), SELinux AVCs (1400 with `avc:`) and AppArmor (1400 with `apparmor=`) are
//! parsed; other record types are `Ignored`. Bad input is an error naming the field and why,
//! never a panic. Pure: no I/O, no libseccomp (names are resolved by the caller).

use std::borrow::Cow;

use thiserror::Error;

/// `audit(SECONDS.MILLIS:SERIAL)`: records of one event share it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub seconds: u64,
    pub millis: u32,
    pub serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub event: EventId,
    pub denial: Denial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Seccomp(SeccompRecord),
    Selinux(AvcRecord),
    AppArmor(AppArmorRecord),
}

/// A seccomp record (type 1326). `code` is the filter's return value (action | data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompRecord {
    pub pid: u32,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// `AUDIT_ARCH_*` of the syscall (`c000003e` = x86_64).
    pub arch: u32,
    pub syscall: i64,
    pub code: u32,
}

/// The seccomp action in a record's `code=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompAction {
    KillProcess,
    KillThread,
    Trap,
    Errno,
    UserNotif,
    Trace,
    Log,
    Allow,
    Unknown,
}

impl SeccompAction {
    pub fn from_code(code: u32) -> Self {
        match code & 0xffff_0000 {
            0x8000_0000 => Self::KillProcess,
            0x0000_0000 => Self::KillThread,
            0x0003_0000 => Self::Trap,
            0x0005_0000 => Self::Errno,
            0x7fc0_0000 => Self::UserNotif,
            0x7ff0_0000 => Self::Trace,
            0x7ffc_0000 => Self::Log,
            0x7fff_0000 => Self::Allow,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KillProcess => "kill_process",
            Self::KillThread => "kill_thread",
            Self::Trap => "trap",
            Self::Errno => "errno",
            Self::UserNotif => "user_notif",
            Self::Trace => "trace",
            Self::Log => "log",
            Self::Allow => "allow",
            Self::Unknown => "unknown",
        }
    }
}

/// An SELinux AVC (type 1400, `avc:  denied  { perms } for …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcRecord {
    /// `denied` or `granted`.
    pub decision: String,
    pub perms: Vec<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub name: Option<String>,
    pub scontext: String,
    pub tcontext: String,
    pub tclass: String,
    pub permissive: Option<bool>,
}

/// An AppArmor record (type 1400, `apparmor="DENIED" operation=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppArmorRecord {
    /// `DENIED`, `ALLOWED`, `AUDIT`…
    pub apparmor: String,
    pub operation: Option<String>,
    pub profile: Option<String>,
    pub name: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub requested_mask: Option<String>,
    pub denied_mask: Option<String>,
}

/// A SYSCALL record (type 1300): the syscall during which an event's other records were
/// written. Completes an AVC (which has no `exe=`) of the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallContext {
    pub event: EventId,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub arch: Option<u32>,
    pub syscall: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Record(Box<AuditRecord>),
    /// A SYSCALL record (context for the denials of its event).
    Syscall(Box<SyscallContext>),
    /// EOE (type 1320): the event's last record.
    EndOfEvent(EventId),
    /// An audit record of another type, or a line that is not an audit record at all.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditParseError {
    #[error("no audit(SECONDS.MILLIS:SERIAL) header after type={record_type}")]
    NoHeader { record_type: String },
    #[error("bad audit header {header:?}: {reason}")]
    BadHeader {
        header: String,
        reason: &'static str,
    },
    #[error("type={record_type}: missing field {field}")]
    MissingField {
        record_type: &'static str,
        field: &'static str,
    },
    #[error("type={record_type}: field {field}={value:?}: {reason}")]
    BadField {
        record_type: &'static str,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("AVC: {reason}")]
    BadAvc { reason: &'static str },
}

const SECCOMP: &str = "SECCOMP";
const AVC: &str = "AVC";
const SYSCALL: &str = "SYSCALL";
const EOE: &str = "EOE";

/// Parses one line in any of the framings above.
pub fn parse_line(line: &str) -> Result<Parsed, AuditParseError> {
    // auditd's interpreted (`ausearch -i`-style) suffix starts at GS (0x1d).
    let line = match memchr::memchr(0x1d, line.as_bytes()) {
        Some(at) => &line[..at],
        None => line,
    }
    .trim_end();
    let Some(type_at) = find_type(line) else {
        return Ok(Parsed::Ignored);
    };
    let rest = &line[type_at + "type=".len()..];
    let (record_type, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let kind = match record_type {
        "1326" | "SECCOMP" => SECCOMP,
        "1400" | "AVC" => AVC,
        "1300" | "SYSCALL" => SYSCALL,
        "1320" | "EOE" => EOE,
        _ => return Ok(Parsed::Ignored),
    };
    let header_at = find(rest, b"audit(").ok_or_else(|| AuditParseError::NoHeader {
        record_type: record_type.to_owned(),
    })?;
    let rest = &rest[header_at + "audit(".len()..];
    let (header, body) = find(rest, b"):")
        .map(|at| (&rest[..at], &rest[at + 2..]))
        .ok_or_else(|| AuditParseError::BadHeader {
            header: rest.chars().take(40).collect(),
            reason: "no closing \"):\"",
        })?;
    let event = parse_event_id(header)?;
    let body = body.trim_start();
    if kind == SYSCALL {
        let fields = Fields::parse(body);
        return Ok(Parsed::Syscall(Box::new(SyscallContext {
            event,
            pid: number(&fields, SYSCALL, "pid")?,
            exe: fields.get("exe").and_then(untrusted),
            arch: fields
                .get("arch")
                .map(|_| hex_u32(&fields, SYSCALL, "arch"))
                .transpose()?,
            syscall: number(&fields, SYSCALL, "syscall")?,
        })));
    }
    if kind == EOE {
        return Ok(Parsed::EndOfEvent(event));
    }
    let denial = if kind == SECCOMP {
        Denial::Seccomp(parse_seccomp(&Fields::parse(body))?)
    } else if let Some(avc) = body.strip_prefix("avc:") {
        Denial::Selinux(parse_avc(avc)?)
    } else if body.contains("apparmor=") {
        Denial::AppArmor(parse_apparmor(&Fields::parse(body)))
    } else {
        return Ok(Parsed::Ignored);
    };
    Ok(Parsed::Record(Box::new(AuditRecord { event, denial })))
}

/// Where `needle` starts in `haystack`: memchr for its first byte, then a compare (cheaper
/// than building a substring searcher for every line).
fn find(haystack: &str, needle: &[u8]) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let mut from = 0;
    while let Some(at) = memchr::memchr(needle[0], &bytes[from..]) {
        let at = from + at;
        if bytes[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The `type=` that starts the record: at the beginning, or after `audit: ` (kernel log).
fn find_type(line: &str) -> Option<usize> {
    if line.starts_with("type=") {
        return Some(0);
    }
    line.find("audit: type=").map(|i| i + "audit: ".len())
}

fn parse_event_id(header: &str) -> Result<EventId, AuditParseError> {
    let bad = |reason| AuditParseError::BadHeader {
        header: header.to_owned(),
        reason,
    };
    let (time, serial) = header
        .split_once(':')
        .ok_or_else(|| bad("no ':' before the serial"))?;
    let (seconds, millis) = time
        .split_once('.')
        .ok_or_else(|| bad("no '.' in the timestamp"))?;
    Ok(EventId {
        seconds: seconds
            .parse()
            .map_err(|_| bad("seconds are not a number"))?,
        millis: millis
            .parse()
            .map_err(|_| bad("milliseconds are not a number"))?,
        serial: serial
            .parse()
            .map_err(|_| bad("the serial is not a number"))?,
    })
}

/// The `key=value` pairs of a record body, split in one pass (values keep their quotes).
/// Words without `=` (`avc:`, `denied`, `{`…) are skipped.
struct Fields<'a> {
    pairs: [(&'a str, &'a str); Fields::MAX],
    len: usize,
}

impl<'a> Fields<'a> {
    /// Records carry about 20 fields; further ones are not looked at.
    const MAX: usize = 48;

    fn parse(body: &'a str) -> Self {
        let mut fields = Self {
            pairs: [("", ""); Self::MAX],
            len: 0,
        };
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() && fields.len < Self::MAX {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            // Keys and most values are a few bytes: plain loops beat memchr's setup there.
            let key_start = i;
            while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b' ' {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b' ' {
                continue; // a word, not a pair
            }
            let key = &body[key_start..i];
            i += 1; // '='
            let value_start = i;
            if i < bytes.len() && bytes[i] == b'"' {
                i = memchr::memchr(b'"', &bytes[i + 1..]).map_or(bytes.len(), |at| i + 1 + at + 1);
            } else {
                while i < bytes.len() && bytes[i] != b' ' {
                    i += 1;
                }
            }
            fields.pairs[fields.len] = (key, &body[value_start..i]);
            fields.len += 1;
        }
        fields
    }

    /// The raw value of `key`, if present.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs[..self.len]
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// An untrusted string: `"quoted"`, or hex-encoded when it holds spaces or quotes; `(null)`
/// and `?` mean absent.
fn untrusted(value: &str) -> Option<String> {
    if let Some(quoted) = value.strip_prefix('"') {
        return Some(quoted.strip_suffix('"').unwrap_or(quoted).to_owned());
    }
    if value == "(null)" || value == "?" || value.is_empty() {
        return None;
    }
    match decode_hex(value) {
        Some(decoded) => Some(decoded),
        None => Some(value.to_owned()),
    }
}

fn decode_hex(value: &str) -> Option<String> {
    if !value.len().is_multiple_of(2) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

fn number<T: std::str::FromStr>(
    body: &Fields<'_>,
    record_type: &'static str,
    key: &'static str,
) -> Result<Option<T>, AuditParseError> {
    match body.get(key) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| AuditParseError::BadField {
                record_type,
                field: key,
                value: value.to_owned(),
                reason: "not a number",
            }),
    }
}

fn hex_u32(
    body: &Fields<'_>,
    record_type: &'static str,
    key: &'static str,
) -> Result<u32, AuditParseError> {
    let value = body.get(key).ok_or(AuditParseError::MissingField {
        record_type,
        field: key,
    })?;
    let digits = value.strip_prefix("0x").unwrap_or(value);
    u32::from_str_radix(digits, 16).map_err(|_| AuditParseError::BadField {
        record_type,
        field: key,
        value: value.to_owned(),
        reason: "not a hexadecimal number",
    })
}

fn parse_seccomp(body: &Fields<'_>) -> Result<SeccompRecord, AuditParseError> {
    let required = |key| AuditParseError::MissingField {
        record_type: SECCOMP,
        field: key,
    };
    Ok(SeccompRecord {
        pid: number(body, SECCOMP, "pid")?.ok_or(required("pid"))?,
        uid: number(body, SECCOMP, "uid")?,
        comm: body.get("comm").and_then(untrusted),
        exe: body.get("exe").and_then(untrusted),
        arch: hex_u32(body, SECCOMP, "arch")?,
        syscall: number(body, SECCOMP, "syscall")?.ok_or(required("syscall"))?,
        code: hex_u32(body, SECCOMP, "code")?,
    })
}

fn parse_avc(body: &str) -> Result<AvcRecord, AuditParseError> {
    let body = body.trim_start();
    let (decision, rest) = body.split_once(' ').ok_or(AuditParseError::BadAvc {
        reason: "no decision",
    })?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('{').ok_or(AuditParseError::BadAvc {
        reason: "no '{' before the permissions",
    })?;
    let (perms, fields) = rest.split_once('}').ok_or(AuditParseError::BadAvc {
        reason: "no '}' after the permissions",
    })?;
    let perms: Vec<String> = perms.split_whitespace().map(str::to_owned).collect();
    if perms.is_empty() {
        return Err(AuditParseError::BadAvc {
            reason: "no permissions between the braces",
        });
    }
    let fields = fields
        .trim_start()
        .strip_prefix("for")
        .unwrap_or(fields)
        .trim_start();
    let required = |key| AuditParseError::MissingField {
        record_type: AVC,
        field: key,
    };
    let fields = Fields::parse(fields);
    let fields = &fields;
    let text = |key| fields.get(key).map(|v| Cow::Borrowed(v.trim_matches('"')));
    Ok(AvcRecord {
        decision: decision.to_owned(),
        perms,
        pid: number(fields, AVC, "pid")?,
        comm: fields.get("comm").and_then(untrusted),
        name: fields.get("name").and_then(untrusted),
        scontext: text("scontext").ok_or(required("scontext"))?.into_owned(),
        tcontext: text("tcontext").ok_or(required("tcontext"))?.into_owned(),
        tclass: text("tclass").ok_or(required("tclass"))?.into_owned(),
        permissive: number::<u8>(fields, AVC, "permissive")?.map(|p| p != 0),
    })
}

fn parse_apparmor(body: &Fields<'_>) -> AppArmorRecord {
    let text = |key| body.get(key).and_then(untrusted);
    AppArmorRecord {
        apparmor: text("apparmor").unwrap_or_default(),
        operation: text("operation"),
        profile: text("profile"),
        name: text("name"),
        pid: body.get("pid").and_then(|v| v.parse().ok()),
        comm: text("comm"),
        requested_mask: text("requested_mask"),
        denied_mask: text("denied_mask"),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
