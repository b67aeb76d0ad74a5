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
    let crate::audit::parse::Parsed::Record(audit) = crate::audit::parse::parse_line(line).unwrap()
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
