//! The kernel's audit netlink socket: the multicast group (`AUDIT_NLGRP_READLOG`), which carries
//! every record the kernel emits, read beside auditd (or without it) and never taking records
//! away from it; and the audit status (`AUDIT_GET`: the kernel's own lost count, rate limit and
//! backlog limit).
//!
//! A denial storm (one process making LOG-action syscalls in a loop: ~376k records/s here) fills
//! a socket's receive buffer in milliseconds; the kernel then drops records for this socket and
//! says so once with `ENOBUFS`. So: the buffer is as big as root can force, reads are batched
//! (`recvmmsg`, many records per syscall), each record is handed out in place (no allocation),
//! and what was dropped anyway is counted: exactly, from the socket's own drop counter
//! (`SO_MEMINFO`), and as a check from the records' serial numbers (a gap is an event this
//! socket never got). `NETLINK_NO_ENOBUFS` is set: with it, a full socket drops only while it
//! is full; without it, one overflow marks the socket congested and the kernel drops every
//! record until the reader has emptied the whole queue (seen: a storm's last 17 000 records
//! gone, with no later record to show the gap).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDRLEN: usize = 16;
const AUDIT_GET: u16 = 1000;
const NLMSG_ERROR: u16 = 2;
/// The kernel's biggest audit message (`MAX_AUDIT_MESSAGE_LENGTH`) plus the header, rounded.
const MESSAGE: usize = 9 * 1024;

/// How the receive buffer was sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferHow {
    /// `SO_RCVBUFFORCE` (root, CAP_NET_ADMIN): the size asked, whatever `rmem_max` says.
    Forced,
    /// `SO_RCVBUF`: capped by `net.core.rmem_max` (forcing was refused).
    Capped,
}

pub struct AuditNetlink {
    fd: OwnedFd,
    /// `batch` slots of [`MESSAGE`] bytes each.
    bufs: Vec<u8>,
    batch: usize,
    /// One record as a kernel-log style line, reused.
    line: String,
    last_serial: Option<u64>,
    /// The receive buffer the kernel granted (bytes, as `SO_RCVBUF` reads it back).
    pub rcvbuf: usize,
    pub how: BufferHow,
    /// Times the kernel said it dropped records for this socket (`ENOBUFS`).
    pub overflows: u64,
    /// Records (events) missing between the serial numbers received: dropped on the way to
    /// this socket (overflows), or by the kernel's own rate limit.
    pub missing: u64,
    /// Records the kernel dropped because this socket was full (its `sk_drops`).
    pub drops: u64,
    /// Records received.
    pub records: u64,
}

impl AuditNetlink {
    const AUDIT_NLGRP_READLOG: u32 = 1;
    /// The receive buffer asked for by default (the kernel doubles it for its bookkeeping).
    pub const DEFAULT_RCVBUF: usize = 64 << 20;
    /// Records per `recvmmsg`.
    pub const BATCH: usize = 64;

    /// Joins the multicast group with a receive buffer of `rcvbuf` bytes (forced if allowed).
    /// Needs CAP_AUDIT_READ.
    pub fn open(rcvbuf: usize) -> io::Result<Self> {
        let fd = audit_socket()?;
        let (granted, how) = size_receive_buffer(fd.as_fd(), rcvbuf);
        let no_enobufs: libc::c_int = 1;
        // SAFETY: valid fd, a live c_int of the size given. Failing is not fatal: ENOBUFS and
        // the drop counter still count.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_NO_ENOBUFS,
                (&no_enobufs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: a zeroed sockaddr_nl is valid; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = Self::AUDIT_NLGRP_READLOG;
        // SAFETY: valid fd, a live sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            bufs: vec![0; Self::BATCH * MESSAGE],
            batch: Self::BATCH,
            line: String::with_capacity(MESSAGE),
            last_serial: None,
            rcvbuf: granted,
            how,
            overflows: 0,
            missing: 0,
            drops: 0,
            records: 0,
        })
    }

    /// One record per read, as a naive reader does (the benchmark's "before").
    pub fn unbatched(mut self) -> Self {
        self.batch = 1;
        self
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Lost records, as well as they are known: the socket's drop counter (exact), the serial
    /// gaps, and at least one per overflow.
    pub fn lost(&mut self) -> u64 {
        self.read_drops();
        self.drops.max(self.missing).max(self.overflows)
    }

    /// Reads the socket's drop counter (`SO_MEMINFO`, `SK_MEMINFO_DROPS`).
    fn read_drops(&mut self) {
        const SK_MEMINFO_VARS: usize = 9;
        const SK_MEMINFO_DROPS: usize = 8;
        let mut info = [0u32; SK_MEMINFO_VARS];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: valid fd, a live buffer and its length.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 && len as usize > SK_MEMINFO_DROPS * 4 {
            self.drops = u64::from(info[SK_MEMINFO_DROPS]);
        }
    }

    /// Takes what is queued (up to one batch) without waiting and hands each record to `handle`
    /// as a kernel-log style line (`audit: type=N audit(…): …`). Returns how many records were
    /// read: 0 when nothing was queued (or a signal interrupted).
    pub fn read_batch(
        &mut self,
        mut handle: impl FnMut(&str) -> io::Result<()>,
    ) -> io::Result<usize> {
        // SAFETY: zeroed iovec/mmsghdr arrays are valid; each iovec points into `bufs` at a
        // distinct MESSAGE-sized slot that outlives the call.
        let mut iovecs: [libc::iovec; Self::BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; Self::BATCH] = unsafe { std::mem::zeroed() };
        for (i, (iov, msg)) in iovecs.iter_mut().zip(msgs.iter_mut()).enumerate() {
            iov.iov_base = self.bufs[i * MESSAGE..].as_mut_ptr().cast();
            iov.iov_len = MESSAGE;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let n = loop {
            // SAFETY: `msgs` holds `batch` (≤ BATCH) valid headers; no timeout.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    self.batch as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // The kernel dropped records for us since the last read; what is queued is
                // still there (the serial gap says how many were lost).
                Some(libc::ENOBUFS) => self.overflows += 1,
                Some(libc::EINTR) | Some(libc::EAGAIN) => return Ok(0),
                _ => return Err(err),
            }
        };
        for (i, msg) in msgs.iter().enumerate().take(n) {
            let len = (msg.msg_len as usize).min(MESSAGE);
            let slot = &self.bufs[i * MESSAGE..i * MESSAGE + len];
            // struct nlmsghdr, then the text (one message per datagram for this group).
            if slot.len() < NLMSG_HDRLEN {
                continue;
            }
            let record_type = u16::from_ne_bytes([slot[4], slot[5]]);
            let end = (u32::from_ne_bytes([slot[0], slot[1], slot[2], slot[3]]) as usize)
                .clamp(NLMSG_HDRLEN, slot.len());
            let mut text = &slot[NLMSG_HDRLEN..end];
            while let [rest @ .., b'\0' | b'\n'] = text {
                text = rest;
            }
            self.records += 1;
            if let Some(serial) = serial_of(text) {
                if let Some(last) = self.last_serial
                    && serial > last
                {
                    self.missing += serial - last - 1;
                }
                if self.last_serial.is_none_or(|last| serial > last) {
                    self.last_serial = Some(serial);
                }
            }
            self.line.clear();
            self.line.push_str("audit: type=");
            self.line.push_str(itoa::Buffer::new().format(record_type));
            self.line.push(' ');
            // The kernel hex-encodes untrusted strings: the text is ASCII but for a bug.
            match std::str::from_utf8(text) {
                Ok(text) => self.line.push_str(text),
                Err(_) => self.line.push_str(&String::from_utf8_lossy(text)),
            }
            handle(&self.line)?;
        }
        Ok(n)
    }
}

/// The serial of `audit(SECONDS.MILLIS:SERIAL): …`.
fn serial_of(text: &[u8]) -> Option<u64> {
    let head = text.strip_prefix(b"audit(")?;
    let close = memchr::memchr(b')', &head[..head.len().min(48)])?;
    let colon = memchr::memchr(b':', &head[..close])?;
    std::str::from_utf8(&head[colon + 1..close])
        .ok()?
        .parse()
        .ok()
}

fn audit_socket() -> io::Result<OwnedFd> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: valid fd, a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks for `bytes` of receive buffer, forced past `rmem_max` if allowed, else as much as
/// `SO_RCVBUF` gives; returns what the kernel granted and how.
fn size_receive_buffer(fd: BorrowedFd<'_>, bytes: usize) -> (usize, BufferHow) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let how = if set_int(fd, libc::SO_RCVBUFFORCE, value) {
        BufferHow::Forced
    } else {
        set_int(fd, libc::SO_RCVBUF, value);
        BufferHow::Capped
    };
    let mut granted: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd, a live c_int and its length.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        );
    }
    (usize::try_from(granted).unwrap_or(0), how)
}

/// The kernel's audit status (`auditctl -s`): what it drops itself and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStatus {
    pub enabled: u32,
    /// Records per second (0: unlimited); beyond it the kernel drops and counts them.
    pub rate_limit: u32,
    /// Records queued for kauditd before producers wait (or, without waiting, drop).
    pub backlog_limit: u32,
    /// Records the kernel dropped since boot (rate limit, backlog, memory).
    pub lost: u32,
    pub backlog: u32,
    /// How long a producer waits for room in the backlog (jiffies) before its record is lost.
    pub backlog_wait_time: u32,
    /// Total time producers waited for room (jiffies).
    pub backlog_wait_time_actual: u32,
}

impl AuditStatus {
    /// Asks the kernel (`AUDIT_GET`; needs CAP_AUDIT_CONTROL).
    pub fn read() -> io::Result<Self> {
        let fd = audit_socket()?;
        let mut request = [0u8; NLMSG_HDRLEN];
        request[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
        request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        request[8..12].copy_from_slice(&1u32.to_ne_bytes());
        // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd, buffer and address of the sizes given.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 512];
        for _ in 0..8 {
            // SAFETY: valid fd and buffer of the given length.
            let n =
                unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(status) = Self::from_reply(&reply[..n as usize])? {
                return Ok(status);
            }
        }
        Err(io::Error::other("no AUDIT_GET reply from the kernel"))
    }

    /// The status in a reply; `None` for another message (e.g. an ACK).
    fn from_reply(reply: &[u8]) -> io::Result<Option<Self>> {
        if reply.len() < NLMSG_HDRLEN {
            return Ok(None);
        }
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        let u32_at = |at: usize| {
            reply
                .get(NLMSG_HDRLEN + at * 4..NLMSG_HDRLEN + at * 4 + 4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        match kind {
            NLMSG_ERROR => {
                let errno = u32_at(0) as i32;
                if errno == 0 {
                    Ok(None)
                } else {
                    Err(io::Error::from_raw_os_error(-errno))
                }
            }
            AUDIT_GET => Ok(Some(Self {
                // struct audit_status: mask, enabled, failure, pid, rate_limit, backlog_limit,
                // lost, backlog, feature_bitmap, backlog_wait_time, backlog_wait_time_actual.
                enabled: u32_at(1),
                rate_limit: u32_at(4),
                backlog_limit: u32_at(5),
                lost: u32_at(6),
                backlog: u32_at(7),
                backlog_wait_time: u32_at(9),
                backlog_wait_time_actual: u32_at(10),
            })),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_come_from_the_record_header() {
        assert_eq!(serial_of(b"audit(1795703105.844:2): pid=1"), Some(2));
        assert_eq!(
            serial_of(b"audit(1795703105.844:18446744073709551615): x"),
            Some(u64::MAX)
        );
        assert_eq!(serial_of(b"audit(1795703105.844): x"), None);
        assert_eq!(serial_of(b"type=SECCOMP"), None);
        assert_eq!(serial_of(b"audit(1.2:x"), None);
    }
}
