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
#[path = "avc_trace_tests.rs"]
mod tests;
