//! Where audit lines come from: the kernel log (`/dev/kmsg`), the audit netlink multicast group
//! (`super::netlink`), auditd's log or any text (a file, stdin); which of them is best here.

use std::{
    fs::File,
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Where an enricher's audit records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The best available ([`Source::pick`]).
    Auto,
    Kmsg,
    Netlink,
    /// auditd's log (`audit-log` alone: [`AUDIT_LOG`]), or any file.
    File(PathBuf),
    Stdin,
}

/// auditd's log.
pub const AUDIT_LOG: &str = "/var/log/audit/audit.log";

impl Source {
    /// `auto`, `audit-log[=PATH]`, `kmsg`, `netlink`, `file=PATH` or `-` (stdin).
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "auto" => Ok(Self::Auto),
            "kmsg" => Ok(Self::Kmsg),
            "netlink" => Ok(Self::Netlink),
            "audit-log" => Ok(Self::File(AUDIT_LOG.into())),
            "-" => Ok(Self::Stdin),
            _ => match value
                .strip_prefix("file=")
                .or_else(|| value.strip_prefix("audit-log="))
            {
                Some(path) if !path.is_empty() => Ok(Self::File(path.into())),
                _ => Err(format!(
                    "unknown source {value:?}: expected auto, audit-log[=PATH], kmsg, netlink, file=PATH or -"
                )),
            },
        }
    }

    /// The best source there is. Following: the audit netlink multicast group (every record,
    /// beside auditd or without it, no rate limit); else auditd's log when auditd runs (it then
    /// takes the records away from the kernel log); else the kernel log. Said on stderr.
    pub fn pick(follow: bool, proc: &Path) -> Self {
        // The kernel sends the audit multicast group to sockets of the host's (initial) network
        // namespace only: a pod without hostNetwork would open it and never read a record.
        let host_network = match (
            std::fs::metadata(proc.join("self/ns/net")),
            std::fs::metadata(proc.join("1/ns/net")),
        ) {
            (Ok(own), Ok(init)) => {
                use std::os::unix::fs::MetadataExt as _;
                (own.dev(), own.ino()) == (init.dev(), init.ino())
            }
            // pid 1's namespaces need ptrace access, which a process with fewer capabilities
            // than init (the daemon's pod) lacks; its network devices are readable by anyone.
            _ => match (
                interfaces(&proc.join("self/net/dev")),
                interfaces(&proc.join("1/net/dev")),
            ) {
                (Some(own), Some(init)) => own == init,
                // Not knowable: try it.
                _ => true,
            },
        };
        if follow && !host_network {
            eprintln!(
                "syscribe: not in the host's network namespace, where alone the kernel sends the audit multicast group: not reading it"
            );
        } else if follow {
            match super::netlink::AuditNetlink::open(4096) {
                Ok(_) => {
                    eprintln!("syscribe: source: netlink (audit multicast group)");
                    return Self::Netlink;
                }
                Err(err) => eprintln!("syscribe: netlink audit group unavailable ({err})"),
            }
        }
        let auditd_runs = auditd_runs(proc);
        if auditd_runs && Path::new(AUDIT_LOG).exists() {
            eprintln!("syscribe: source: {AUDIT_LOG} (auditd is running)");
            Self::File(AUDIT_LOG.into())
        } else {
            eprintln!("syscribe: source: kmsg (no auditd running)");
            Self::Kmsg
        }
    }
}

/// The network devices a `/proc/<pid>/net/dev` lists (its network namespace's).
fn interfaces(path: &Path) -> Option<std::collections::BTreeSet<String>> {
    use procfs_core::FromBufRead as _;
    let file = std::fs::File::open(path).ok()?;
    let devices =
        procfs_core::net::InterfaceDeviceStatus::from_buf_read(std::io::BufReader::new(file))
            .ok()?;
    Some(devices.0.into_keys().collect())
}

/// Whether auditd runs: its pid file names a live process, or (seeing the host's processes,
/// as the daemon does) a process is named auditd.
fn auditd_runs(proc: &Path) -> bool {
    let by_pid_file = std::fs::read_to_string("/var/run/auditd.pid")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| proc.join(pid.to_string()).exists());
    by_pid_file
        || std::fs::read_dir(proc).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    && std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|comm| comm.trim_end() == "auditd")
            })
        })
}

/// A `/dev/kmsg` reader: one record per read, `PRIO,SEQ,USEC,FLAGS;message`.
pub struct Kmsg {
    file: File,
    last_seq: Option<u64>,
    /// Records the ring overwrote before they were read (from sequence-number gaps).
    pub lost: u64,
}

impl Kmsg {
    /// Opens the kernel log; with `follow` false, reading stops at the end of what is there.
    pub fn open(path: &Path, follow: bool) -> io::Result<Self> {
        let flags = if follow { 0 } else { libc::O_NONBLOCK };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)?;
        Ok(Self {
            file,
            last_seq: None,
            lost: 0,
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// The next message (its first line), `None` at the end (non-follow mode) or when a read
    /// interrupted by a signal finds `stop` requested.
    pub fn next_message(&mut self, stop: &Stop) -> io::Result<Option<String>> {
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    let Some((prefix, message)) = record.split_once(';') else {
                        continue;
                    };
                    if let Some(seq) = prefix.split(',').nth(1).and_then(|s| s.parse::<u64>().ok())
                    {
                        if let Some(last) = self.last_seq {
                            self.lost += seq.saturating_sub(last + 1);
                        }
                        self.last_seq = Some(seq);
                    }
                    return Ok(Some(message.lines().next().unwrap_or_default().to_owned()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                // The ring overwrote records we had not read: the next read starts at the
                // oldest one left; the sequence-number gap says how many were lost.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    if stop.requested() {
                        return Ok(None);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// A request to stop reading, made by whoever runs the reader (`syscribe enrich` on SIGINT or
/// SIGTERM, the daemon when it stops): sources notice it at their next wake-up. Clones share
/// it. Requesting it only stores to an atomic, so a signal handler may do it.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits until `fd` is readable or `timeout` passes (or a signal arrives); true if readable.
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let mut pollfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pollfd, 1, ms) > 0 }
}

/// Why [`Lines::read_from`] stopped.
#[derive(Debug)]
pub enum LinesError {
    Read(io::Error),
    Handle(io::Error),
}

/// Lines out of a byte stream, read in big blocks and handed out in place (no copy per line).
/// Invalid UTF-8 is replaced, not fatal. A line longer than [`Lines::MAX_LINE`] is dropped
/// whole and counted (a file with no newline must not grow a buffer without bound): reading
/// resumes after its newline.
pub struct Lines {
    buf: Vec<u8>,
    filled: usize,
    /// Inside a line already counted as too long: drop up to its newline.
    skipping: bool,
    /// Lines dropped for being longer than [`Lines::MAX_LINE`].
    pub too_long: u64,
}

impl Default for Lines {
    fn default() -> Self {
        Self {
            buf: vec![0; Self::BLOCK],
            filled: 0,
            skipping: false,
            too_long: 0,
        }
    }
}

impl Lines {
    const BLOCK: usize = 1 << 20;
    /// The longest line handed out. The kernel's biggest audit message is under 9 KiB.
    pub const MAX_LINE: usize = 64 << 10;

    /// One read from `reader`; the complete lines go to `handle`. False at the end of the
    /// input (an unterminated last line is handed out then). An interrupted read returns true
    /// with nothing read: the caller checks for a stop request and calls again.
    pub fn read_from(
        &mut self,
        reader: &mut impl io::Read,
        mut handle: impl FnMut(&str) -> io::Result<()>,
    ) -> Result<bool, LinesError> {
        let n = match reader.read(&mut self.buf[self.filled..]) {
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return Ok(true);
            }
            Err(err) => return Err(LinesError::Read(err)),
        };
        let end = self.filled + n;
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &self.buf[start..end]) {
            let line = &self.buf[start..start + at];
            start += at + 1;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if line.len() > Self::MAX_LINE {
                self.too_long += 1;
                continue;
            }
            handle_bytes(line, &mut handle)?;
        }
        let rest = end - start;
        if n == 0 {
            if rest > 0 && !self.skipping {
                if rest > Self::MAX_LINE {
                    self.too_long += 1;
                } else {
                    handle_bytes(&self.buf[start..end], &mut handle)?;
                }
            }
            self.filled = 0;
            self.skipping = false;
            return Ok(false);
        }
        if self.skipping || rest > Self::MAX_LINE {
            // Too long already: counted once, dropped up to its newline.
            if !self.skipping {
                self.too_long += 1;
                self.skipping = true;
            }
            self.filled = 0;
        } else {
            self.buf.copy_within(start..end, 0);
            self.filled = rest;
        }
        Ok(true)
    }
}

/// Calls `handle` with each line of `reader` (without its newline) to its end; returns how
/// many lines were dropped for being too long.
pub fn for_each_line(
    mut reader: impl io::Read,
    mut handle: impl FnMut(&str) -> io::Result<()>,
) -> Result<u64, LinesError> {
    let mut lines = Lines::default();
    while lines.read_from(&mut reader, &mut handle)? {}
    Ok(lines.too_long)
}

fn handle_bytes(
    line: &[u8],
    handle: &mut impl FnMut(&str) -> io::Result<()>,
) -> Result<(), LinesError> {
    match std::str::from_utf8(line) {
        Ok(line) => handle(line),
        Err(_) => handle(&String::from_utf8_lossy(line)),
    }
    .map_err(LinesError::Handle)
}

/// Opens a file of audit lines, refusing anything but a regular file: a device such as
/// /dev/zero never ends (and has no lines), a directory has no lines, a FIFO blocks opening.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::FileTypeExt as _;
    // O_NONBLOCK: opening a FIFO with no writer must not hang before it can be refused.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        // (O_NONBLOCK means nothing to a regular file's reads.)
        return Ok(file);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{what}, not a regular file of audit lines (for a pipe or a device, use --source - and redirect it)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> (Vec<String>, u64) {
        let mut lines = Vec::new();
        let too_long = for_each_line(input, |line| {
            lines.push(line.to_owned());
            Ok(())
        })
        .unwrap();
        (lines, too_long)
    }

    #[test]
    fn sources_parse_with_named_errors() {
        assert_eq!(Source::parse("kmsg"), Ok(Source::Kmsg));
        assert_eq!(Source::parse("-"), Ok(Source::Stdin));
        assert_eq!(
            Source::parse("file=/var/log/audit/audit.log"),
            Ok(Source::File("/var/log/audit/audit.log".into()))
        );
        assert!(
            Source::parse("file=")
                .unwrap_err()
                .contains("unknown source")
        );
        assert_eq!(Source::parse("netlink"), Ok(Source::Netlink));
        assert_eq!(
            Source::parse("audit-log"),
            Ok(Source::File(AUDIT_LOG.into()))
        );
        assert_eq!(
            Source::parse("audit-log=/tmp/a.log"),
            Ok(Source::File("/tmp/a.log".into()))
        );
        assert!(
            Source::parse("journal")
                .unwrap_err()
                .contains("expected auto, audit-log[=PATH], kmsg, netlink, file=PATH or -")
        );
    }

    #[test]
    fn lines_are_handed_out_whole_across_blocks() {
        // Lines that straddle the 1 MiB block boundary come out whole.
        let near = "y".repeat(Lines::MAX_LINE);
        let mut input = Vec::new();
        for _ in 0..40 {
            input.extend_from_slice(near.as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(b"a\n\nbc\nlast\n\xff tail");
        let (lines, too_long) = collect(&input);
        assert_eq!(too_long, 0);
        assert_eq!(lines.len(), 45);
        assert!(lines[..40].iter().all(|l| *l == near));
        assert_eq!(lines[40..43], ["a", "", "bc"]);
        assert_eq!(lines[43], "last");
        assert_eq!(lines[44], "\u{fffd} tail");
    }

    #[test]
    fn a_line_longer_than_the_bound_is_dropped_and_counted() {
        let long = "x".repeat(3 << 20);
        let just_over = "z".repeat(Lines::MAX_LINE + 1);
        let input = format!("a\n{long}\nb\n{just_over}\nc\n{long}");
        let (lines, too_long) = collect(input.as_bytes());
        assert_eq!(
            lines,
            ["a", "b", "c"],
            "the rest of each long line is skipped too"
        );
        assert_eq!(too_long, 3, "two long lines and an unterminated long tail");
    }

    #[test]
    fn an_endless_line_is_read_in_bounded_memory() {
        // /dev/zero through a pipe: never a newline, never an end, until we stop reading.
        let mut zero = std::fs::File::open("/dev/zero").unwrap().take(64 << 20);
        let mut lines = Lines::default();
        while lines.read_from(&mut zero, |_| panic!("no line")).unwrap() {}
        assert_eq!(lines.too_long, 1);
        assert_eq!(lines.buf.len(), Lines::BLOCK, "the buffer never grew");
    }

    #[test]
    fn only_regular_files_are_opened() {
        for (path, what) in [("/dev/zero", "a character device"), ("/", "a directory")] {
            let err = open_regular(Path::new(path)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(what), "{path}: {err}");
        }
        assert!(open_regular(Path::new("/proc/self/status")).is_ok());
    }
}
