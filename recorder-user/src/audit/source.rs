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

    /// The next message (its first line), `None` at the end (non-follow mode).
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
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}
