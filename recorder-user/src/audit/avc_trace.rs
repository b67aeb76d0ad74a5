//! SELinux denials from the kernel's `avc:selinux_audited` tracepoint (the eBPF program
//! `syscribe_avc` copies each denied decision into a ring buffer): the records decoded, their
//! permission bits named from selinuxfs, and turned into the same [`AvcRecord`] the audit path
//! parses — so they are enriched and printed with the same fields.
//!
//! Pure: bytes, texts and a directory path in; no aya. Where both this and the audit path see a
//! denial, [`Pairing`] keeps one of the two copies.

use std::{
    collections::HashMap,
    hash::{Hash as _, Hasher as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use recorder_ebpf::{
    AVC_CLASS_BYTES, AVC_CONTEXT_BYTES, AVC_TRUNCATED_SCONTEXT, AVC_TRUNCATED_TCLASS,
    AVC_TRUNCATED_TCONTEXT, AvcEvent,
};
use thiserror::Error;

use super::parse::{AuditRecord, AvcRecord, Denial, EventId};

/// Offsets of [`AvcEvent`]'s fields in a ring-buffer record (asserted against the struct).
mod at {
    pub const BOOT_NS: usize = 0;
    pub const TGID: usize = 8;
    pub const TID: usize = 12;
    pub const REQUESTED: usize = 16;
    pub const DENIED: usize = 20;
    pub const AUDITED: usize = 24;
    pub const RESULT: usize = 28;
    pub const TRUNCATED: usize = 32;
    #[cfg(test)]
    pub const SCONTEXT_LEN: usize = 36;
    #[cfg(test)]
    pub const TCONTEXT_LEN: usize = 40;
    #[cfg(test)]
    pub const TCLASS_LEN: usize = 44;
    pub const COMM: usize = 48;
    pub const SCONTEXT: usize = 64;
    pub const TCONTEXT: usize = 320;
    pub const TCLASS: usize = 576;
}

/// One denial as the tracepoint reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedAvc {
    pub boot_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub requested: u32,
    pub denied: u32,
    pub audited: u32,
    /// The kernel's `result`: 0 when the denial was not enforced (`permissive=1`).
    pub result: i32,
    pub comm: String,
    pub scontext: String,
    pub tcontext: String,
    pub tclass: String,
    /// Whether any of the three strings was cut to its bound.
    pub truncated: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("an AVC trace record has {len} bytes, not {expected}")]
    Size { len: usize, expected: usize },
    #[error("an AVC trace record's {field} is not NUL-terminated")]
    Unterminated { field: &'static str },
    #[error("an AVC trace record has no denied permission")]
    NotDenied,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The text before the first NUL of `bytes[at..at + len]`, control characters escaped as the
/// audit path's parser leaves them to the output (the writer escapes them).
fn c_str(bytes: &[u8], at: usize, len: usize, field: &'static str) -> Result<String, DecodeError> {
    let window = &bytes[at..at + len];
    let end = memchr::memchr(0, window).ok_or(DecodeError::Unterminated { field })?;
    Ok(String::from_utf8_lossy(&window[..end]).into_owned())
}

/// Decodes one ring-buffer record (an [`AvcEvent`], native byte order).
pub fn decode(bytes: &[u8]) -> Result<TracedAvc, DecodeError> {
    let expected = std::mem::size_of::<AvcEvent>();
    if bytes.len() != expected {
        return Err(DecodeError::Size {
            len: bytes.len(),
            expected,
        });
    }
    let denied = u32_at(bytes, at::DENIED);
    if denied == 0 {
        return Err(DecodeError::NotDenied);
    }
    let truncated = u32_at(bytes, at::TRUNCATED)
        & (AVC_TRUNCATED_SCONTEXT | AVC_TRUNCATED_TCONTEXT | AVC_TRUNCATED_TCLASS)
        != 0;
    Ok(TracedAvc {
        boot_ns: u64::from_ne_bytes(bytes[at::BOOT_NS..at::BOOT_NS + 8].try_into().unwrap()),
        pid: u32_at(bytes, at::TGID),
        tid: u32_at(bytes, at::TID),
        requested: u32_at(bytes, at::REQUESTED),
        denied,
        audited: u32_at(bytes, at::AUDITED),
        result: u32_at(bytes, at::RESULT) as i32,
        comm: c_str(bytes, at::COMM, 16, "comm").unwrap_or_default(),
        scontext: c_str(bytes, at::SCONTEXT, AVC_CONTEXT_BYTES, "scontext")?,
        tcontext: c_str(bytes, at::TCONTEXT, AVC_CONTEXT_BYTES, "tcontext")?,
        tclass: c_str(bytes, at::TCLASS, AVC_CLASS_BYTES, "tclass")?,
        truncated,
    })
}

/// Permission names of each class, from selinuxfs (`class/<tclass>/perms/<name>` holds the
/// permission's bit index + 1). Cached per class; bounded.
#[derive(Debug)]
pub struct PermNames {
    selinuxfs: PathBuf,
    classes: HashMap<String, Vec<(u32, String)>>,
}

impl PermNames {
    const MAX_CLASSES: usize = 512;

    pub fn new(selinuxfs: &Path) -> Self {
        Self {
            selinuxfs: selinuxfs.to_owned(),
            classes: HashMap::new(),
        }
    }

    /// The names of the bits set in `mask`, ordered by bit; a bit the class does not name
    /// (or a class selinuxfs does not know) is written `0x<bit>`.
    pub fn names(&mut self, tclass: &str, mask: u32) -> Vec<String> {
        if !self.classes.contains_key(tclass) {
            if self.classes.len() >= Self::MAX_CLASSES {
                self.classes.clear();
            }
            let perms = read_class(&self.selinuxfs, tclass);
            self.classes.insert(tclass.to_owned(), perms);
        }
        let perms = &self.classes[tclass];
        (0..32)
            .map(|bit| 1u32 << bit)
            .filter(|b| mask & b != 0)
            .map(|b| {
                perms
                    .iter()
                    .find(|(m, _)| *m == b)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| format!("{b:#x}"))
            })
            .collect()
    }
}

fn read_class(selinuxfs: &Path, tclass: &str) -> Vec<(u32, String)> {
    // A class name from the kernel; still, never leave the class directory.
    if tclass.is_empty() || tclass.contains('/') || tclass.starts_with('.') {
        return Vec::new();
    }
    let dir = selinuxfs.join("class").join(tclass).join("perms");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(64)
        .filter_map(|e| {
            let index: u32 = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let bit = index.checked_sub(1).filter(|b| *b < 32)?;
            Some((1u32 << bit, e.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

/// The audit path's record for a traced denial. The tracepoint has no audit serial: the
/// event id is the wall-clock time it was read at, serial 0.
pub fn to_record(avc: TracedAvc, perms: Vec<String>, wall: Duration) -> AuditRecord {
    AuditRecord {
        event: EventId {
            seconds: wall.as_secs(),
            millis: wall.subsec_millis(),
            serial: 0,
        },
        denial: Denial::Selinux(AvcRecord {
            decision: "denied".into(),
            perms,
            pid: Some(avc.pid),
            comm: Some(avc.comm).filter(|c| !c.is_empty()),
            name: None,
            scontext: avc.scontext,
            tcontext: avc.tcontext,
            tclass: avc.tclass,
            permissive: Some(avc.result == 0),
        }),
    }
}

/// Which copy of a denial seen by both the tracepoint and the audit path is printed: the first
/// to arrive; the other, arriving within [`Pairing::WINDOW`], is dropped and counted. Denials
/// are paired by (pid, scontext, tcontext, tclass, permissions): each copy from one side
/// cancels one pending copy from the other, so repeated identical denials from one side are
/// never taken for duplicates of each other.
#[derive(Debug, Default)]
pub struct Pairing {
    /// Key → (traced copies minus audit copies not paired yet, last change).
    pending: HashMap<u64, (i32, Instant)>,
    pub duplicates: u64,
    /// Times the table was full of recent entries and started over.
    pub resets: u64,
}

/// Where a copy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Trace,
    Audit,
}

impl Pairing {
    pub const WINDOW: Duration = Duration::from_secs(2);
    const MAX_PENDING: usize = 8192;

    /// The pairing key of an AVC record.
    pub fn key(avc: &AvcRecord) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        avc.pid.hash(&mut h);
        avc.scontext.hash(&mut h);
        avc.tcontext.hash(&mut h);
        avc.tclass.hash(&mut h);
        avc.perms.hash(&mut h);
        h.finish()
    }

    /// Whether this copy is the second of a pair (drop it).
    pub fn is_duplicate(&mut self, key: u64, side: Side, now: Instant) -> bool {
        if self.pending.len() >= Self::MAX_PENDING {
            self.pending
                .retain(|_, (_, at)| now.duration_since(*at) < Self::WINDOW);
            if self.pending.len() >= Self::MAX_PENDING {
                self.pending.clear();
                self.resets += 1;
            }
        }
        let step = match side {
            Side::Trace => 1,
            Side::Audit => -1,
        };
        let entry = self.pending.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= Self::WINDOW {
            entry.0 = 0;
        }
        entry.1 = now;
        // A pending copy of the other side: pair with it.
        let duplicate = entry.0 * step < 0;
        entry.0 += step;
        if entry.0 == 0 {
            self.pending.remove(&key);
        }
        if duplicate {
            self.duplicates += 1;
        }
        duplicate
    }
}

#[cfg(test)]
mod tests {
    use recorder_ebpf::avc_format;

    use super::*;

    #[test]
    fn record_offsets_are_the_structs() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(AvcEvent, boot_ns), at::BOOT_NS);
        assert_eq!(offset_of!(AvcEvent, tgid), at::TGID);
        assert_eq!(offset_of!(AvcEvent, tid), at::TID);
        assert_eq!(offset_of!(AvcEvent, requested), at::REQUESTED);
        assert_eq!(offset_of!(AvcEvent, denied), at::DENIED);
        assert_eq!(offset_of!(AvcEvent, audited), at::AUDITED);
        assert_eq!(offset_of!(AvcEvent, result), at::RESULT);
        assert_eq!(offset_of!(AvcEvent, truncated), at::TRUNCATED);
        assert_eq!(offset_of!(AvcEvent, scontext_len), at::SCONTEXT_LEN);
        assert_eq!(offset_of!(AvcEvent, tcontext_len), at::TCONTEXT_LEN);
        assert_eq!(offset_of!(AvcEvent, tclass_len), at::TCLASS_LEN);
        assert_eq!(offset_of!(AvcEvent, comm), at::COMM);
        assert_eq!(offset_of!(AvcEvent, scontext), at::SCONTEXT);
        assert_eq!(offset_of!(AvcEvent, tcontext), at::TCONTEXT);
        assert_eq!(offset_of!(AvcEvent, tclass), at::TCLASS);
    }

    /// The kernel's trace entry for a decision, laid out as the tracepoint's format says
    /// (strings after the fixed fields, `__data_loc` = len << 16 | offset).
    fn trace_entry(denied: u32, result: i32, strings: [&str; 3]) -> Vec<u8> {
        let mut entry = vec![0u8; 36];
        entry[avc_format::REQUESTED..][..4].copy_from_slice(&denied.to_ne_bytes());
        entry[avc_format::DENIED..][..4].copy_from_slice(&denied.to_ne_bytes());
        entry[avc_format::AUDITED..][..4].copy_from_slice(&denied.to_ne_bytes());
        entry[avc_format::RESULT..][..4].copy_from_slice(&result.to_ne_bytes());
        for (field, s) in [
            avc_format::SCONTEXT,
            avc_format::TCONTEXT,
            avc_format::TCLASS,
        ]
        .into_iter()
        .zip(strings)
        {
            let loc = ((s.len() as u32 + 1) << 16) | entry.len() as u32;
            entry[field..][..4].copy_from_slice(&loc.to_ne_bytes());
            entry.extend_from_slice(s.as_bytes());
            entry.push(0);
        }
        entry
    }

    /// What the eBPF program writes for `entry` (the same steps, in Rust): the ring-buffer
    /// record's bytes.
    fn ring_record(entry: &[u8], pid: u32, comm: &str) -> Vec<u8> {
        let mut out = vec![0u8; std::mem::size_of::<AvcEvent>()];
        out[at::BOOT_NS..][..8].copy_from_slice(&123_456_789u64.to_ne_bytes());
        out[at::TGID..][..4].copy_from_slice(&pid.to_ne_bytes());
        out[at::TID..][..4].copy_from_slice(&(pid + 1).to_ne_bytes());
        for (from, to) in [
            (avc_format::REQUESTED, at::REQUESTED),
            (avc_format::DENIED, at::DENIED),
            (avc_format::AUDITED, at::AUDITED),
            (avc_format::RESULT, at::RESULT),
        ] {
            out[to..to + 4].copy_from_slice(&entry[from..from + 4]);
        }
        out[at::COMM..][..comm.len()].copy_from_slice(comm.as_bytes());
        let mut truncated = 0;
        for (field, to, len_at, size, bit) in [
            (
                avc_format::SCONTEXT,
                at::SCONTEXT,
                at::SCONTEXT_LEN,
                AVC_CONTEXT_BYTES,
                AVC_TRUNCATED_SCONTEXT,
            ),
            (
                avc_format::TCONTEXT,
                at::TCONTEXT,
                at::TCONTEXT_LEN,
                AVC_CONTEXT_BYTES,
                AVC_TRUNCATED_TCONTEXT,
            ),
            (
                avc_format::TCLASS,
                at::TCLASS,
                at::TCLASS_LEN,
                AVC_CLASS_BYTES,
                AVC_TRUNCATED_TCLASS,
            ),
        ] {
            let loc = u32_at(entry, field);
            let (offset, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
            // bpf_probe_read_kernel_str: up to size - 1 bytes, then NUL.
            let copied = (len - 1).min(size - 1);
            out[to..to + copied].copy_from_slice(&entry[offset..offset + copied]);
            out[len_at..][..4].copy_from_slice(&(len as u32).to_ne_bytes());
            if len > size {
                truncated |= bit;
            }
        }
        out[at::TRUNCATED..][..4].copy_from_slice(&truncated.to_ne_bytes());
        out
    }

    fn selinuxfs() -> (PathBuf, PermNames) {
        let dir = std::env::temp_dir().join(format!("syscribe-selinuxfs-{}", std::process::id()));
        let perms = dir.join("class/file/perms");
        std::fs::create_dir_all(&perms).unwrap();
        // refpolicy's file class: ioctl read write create getattr … (bit = index - 1).
        for (name, index) in [("ioctl", 1), ("read", 2), ("write", 3), ("open", 16)] {
            std::fs::write(perms.join(name), format!("{index}\n")).unwrap();
        }
        let names = PermNames::new(&dir);
        (dir, names)
    }

    #[test]
    fn a_traced_denial_becomes_the_audit_paths_record() {
        let (dir, mut names) = selinuxfs();
        let denied = (1 << 1) | (1 << 15);
        let entry = trace_entry(
            denied,
            -13,
            [
                "system_u:system_r:container_t:s0:c1,c2",
                "system_u:object_r:etc_t:s0",
                "file",
            ],
        );
        let avc = decode(&ring_record(&entry, 4242, "cat")).unwrap();
        assert_eq!(avc.pid, 4242);
        assert_eq!(avc.tid, 4243);
        assert_eq!(avc.denied, denied);
        assert!(!avc.truncated);
        let perms = names.names(&avc.tclass, avc.denied);
        assert_eq!(perms, ["read", "open"]);
        let traced = to_record(avc, perms, Duration::from_millis(1_795_703_200_123));

        // The same denial as the kernel's audit writes it.
        let line = r#"type=AVC msg=audit(1795703200.123:77): avc:  denied  { read open } for  pid=4242 comm="cat" scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"#;
        let crate::audit::parse::Parsed::Record(audit) =
            crate::audit::parse::parse_line(line).unwrap()
        else {
            panic!("not a record")
        };
        assert_eq!(traced.denial, audit.denial);
        assert_eq!(traced.event.seconds, audit.event.seconds);
        assert_eq!(traced.event.millis, audit.event.millis);
        let (Denial::Selinux(t), Denial::Selinux(a)) = (&traced.denial, &audit.denial) else {
            panic!()
        };
        assert_eq!(Pairing::key(t), Pairing::key(a));

        // Not enforced (permissive domain): result 0.
        let entry = trace_entry(1 << 2, 0, ["a:b:c:s0", "a:b:d:s0", "file"]);
        let avc = decode(&ring_record(&entry, 1, "x")).unwrap();
        let perms = names.names(&avc.tclass, avc.denied);
        let Denial::Selinux(rec) = to_record(avc, perms, Duration::ZERO).denial else {
            panic!()
        };
        assert_eq!(rec.permissive, Some(true));
        assert_eq!(rec.perms, ["write"]);
        // An unknown class names its bits.
        assert_eq!(names.names("no_such_class", 0b101), ["0x1", "0x4"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn long_contexts_are_cut_and_marked() {
        let long = format!("system_u:system_r:container_t:s0:{}", "c1,".repeat(200));
        let entry = trace_entry(2, -13, [&long, "a:b:c:s0", "file"]);
        let record = ring_record(&entry, 7, "");
        let avc = decode(&record).unwrap();
        assert!(avc.truncated);
        assert_eq!(avc.scontext.len(), AVC_CONTEXT_BYTES - 1);
        assert!(long.starts_with(&avc.scontext));
        assert_eq!(avc.tcontext, "a:b:c:s0");
        assert_eq!(
            u32_at(&record, at::SCONTEXT_LEN) as usize,
            long.len() + 1,
            "the kernel's length is kept"
        );
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(
            decode(&[0; 10]),
            Err(DecodeError::Size {
                len: 10,
                expected: 640
            })
        );
        let entry = trace_entry(0, 0, ["a", "b", "c"]);
        assert_eq!(
            decode(&ring_record(&entry, 1, "x")),
            Err(DecodeError::NotDenied)
        );
        let mut record = ring_record(&trace_entry(2, 0, ["a", "b", "c"]), 1, "x");
        record[at::TCLASS..at::TCLASS + AVC_CLASS_BYTES].fill(b'x');
        assert_eq!(
            decode(&record),
            Err(DecodeError::Unterminated { field: "tclass" })
        );
        // Hostile class names never leave selinuxfs' class directory.
        let mut names = PermNames::new(Path::new("/nonexistent"));
        assert_eq!(names.names("../../etc", 1), ["0x1"]);
    }

    #[test]
    fn each_copy_pairs_with_one_of_the_other_side() {
        let mut pairing = Pairing::default();
        let now = Instant::now();
        // Traced first, then its audit copy: the audit copy is the duplicate.
        assert!(!pairing.is_duplicate(1, Side::Trace, now));
        assert!(pairing.is_duplicate(1, Side::Audit, now));
        // Two identical denials from one side are two denials.
        assert!(!pairing.is_duplicate(2, Side::Audit, now));
        assert!(!pairing.is_duplicate(2, Side::Audit, now));
        assert!(pairing.is_duplicate(2, Side::Trace, now));
        assert!(pairing.is_duplicate(2, Side::Trace, now));
        assert!(!pairing.is_duplicate(2, Side::Trace, now));
        assert_eq!(pairing.duplicates, 3);
        // Beyond the window, nothing pairs.
        let later = now + Pairing::WINDOW;
        assert!(!pairing.is_duplicate(2, Side::Audit, later));
    }
}
