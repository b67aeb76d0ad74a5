//! Where audit lines come from: the kernel log (`/dev/kmsg`) or any text (a file, stdin).

use std::{
    fs::File,
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

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

    /// The next message (its first line), `None` at the end (non-follow mode) or on a stop
    /// signal.
    pub fn next_message(&mut self) -> io::Result<Option<String>> {
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
                    if stop_requested() {
                        return Ok(None);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Set by SIGINT/SIGTERM (see [`stop_on_signals`]): sources return at their next wake-up.
pub static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// SIGINT and SIGTERM set [`STOP`] and interrupt blocking reads (no `SA_RESTART`), so a
/// following reader can finish its output and report its counts.
pub fn stop_on_signals() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe); the sigaction struct
    // is zeroed then filled with valid values.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = request_stop as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
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

/// The audit netlink multicast group (`AUDIT_NLGRP_READLOG`): every record the kernel emits, read
/// beside auditd (or without it), never taking records away from it. Needs CAP_AUDIT_READ.
pub struct AuditNetlink {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
    /// Records the socket dropped because we read too slowly (ENOBUFS).
    pub lost: u64,
}

impl AuditNetlink {
    const AUDIT_NLGRP_READLOG: u32 = 1;

    pub fn open() -> io::Result<Self> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_AUDIT,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = Self::AUDIT_NLGRP_READLOG;
        // A big receive buffer: bursts of denials arrive faster than they are printed.
        let size: libc::c_int = 8 << 20;
        // SAFETY: valid fd, pointers to live values of the sizes given.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self {
            fd,
            buf: vec![0; 16384],
            lost: 0,
        })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// The next record as a kernel-log style line (`audit: type=N audit(…): …`); `None` when
    /// interrupted by a signal.
    pub fn next_record(&mut self) -> io::Result<Option<String>> {
        loop {
            // SAFETY: valid fd and buffer of the given length.
            let n = unsafe {
                libc::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        self.lost += 1;
                        continue;
                    }
                    Some(libc::EINTR) | Some(libc::EAGAIN) => return Ok(None),
                    _ => return Err(err),
                }
            }
            let n = n as usize;
            // struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; } then the text.
            if n < 16 {
                continue;
            }
            let record_type = u16::from_ne_bytes([self.buf[4], self.buf[5]]);
            let len = (u32::from_ne_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                as usize)
                .clamp(16, n);
            let text = String::from_utf8_lossy(&self.buf[16..len]);
            let text = text.trim_end_matches(['\0', '\n']);
            return Ok(Some(format!("audit: type={record_type} {text}")));
        }
    }
}

/// Why [`for_each_line`] stopped.
#[derive(Debug)]
pub enum LinesError {
    Read(io::Error),
    Handle(io::Error),
}

/// Calls `handle` with each line of `reader` (without its newline), reading big blocks and
/// handing out lines in place (no copy per line). Invalid UTF-8 is replaced, not fatal; a line
/// longer than the block is handed out whole.
pub fn for_each_line(
    mut reader: impl io::Read,
    mut handle: impl FnMut(&str) -> io::Result<()>,
) -> Result<(), LinesError> {
    const BLOCK: usize = 1 << 20;
    let mut buf = vec![0u8; BLOCK];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0); // one line longer than the buffer
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(LinesError::Read(err)),
        };
        let end = filled + n;
        let mut start = 0;
        while let Some(at) = memchr::memchr(b'\n', &buf[start..end]) {
            handle_bytes(&buf[start..start + at], &mut handle)?;
            start += at + 1;
        }
        if n == 0 {
            if start < end {
                handle_bytes(&buf[start..end], &mut handle)?;
            }
            return Ok(());
        }
        buf.copy_within(start..end, 0);
        filled = end - start;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_handed_out_whole_across_blocks() {
        let long = "x".repeat(3 << 20);
        let mut input = format!("a\n\nbc\n{long}\nlast\n").into_bytes();
        input.extend_from_slice(b"\xff tail");
        let mut lines = Vec::new();
        for_each_line(&input[..], |line| {
            lines.push(line.to_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[..3], ["a", "", "bc"]);
        assert_eq!(lines[3].len(), 3 << 20);
        assert_eq!(lines[4], "last");
        assert_eq!(lines[5], "\u{fffd} tail");
    }
}
