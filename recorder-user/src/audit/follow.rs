//! Following a log file (auditd's audit.log) across rotations, without re-emitting or skipping
//! a line:
//! - appends: read from where the last read stopped; a line without its newline yet waits;
//! - rename-and-create (auditd's own rotation, `kill -USR1`): the file at the path has another
//!   inode; the old file (still open) is read to its end first, then the new one from its start;
//! - copytruncate (logrotate): the bytes just before where we stopped are no longer what we read
//!   there (the file is shorter, or was truncated and written again past that point); what was
//!   appended between our last read and the copy is in `<path>.1`, so that is read from our
//!   offset first, then the truncated file from its start.

use super::source::{Lines, open_regular};
use std::{
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

pub struct Follower {
    path: PathBuf,
    file: File,
    inode: u64,
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// The last bytes read (up to `TAIL`), which end at `offset`: still there means same file.
    tail: Vec<u8>,
    /// Inside a line already counted as too long: dropped up to its newline.
    skipping: bool,
    /// Rotations seen, by kind.
    pub renames: u64,
    pub truncations: u64,
    /// Lines dropped for being longer than [`Lines::MAX_LINE`].
    pub too_long: u64,
}

/// How many of the last bytes read are remembered to recognise a truncated-and-rewritten file.
const TAIL: usize = 256;

impl Follower {
    /// Starts at the beginning of the file (`from_end`: at its current end). Only a regular
    /// file is followed.
    pub fn open(path: &Path, from_end: bool) -> io::Result<Self> {
        let mut file = open_regular(path)?;
        let inode = file.metadata()?.ino();
        let offset = if from_end {
            file.seek(SeekFrom::End(0))?
        } else {
            0
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            inode,
            offset,
            partial: Vec::new(),
            tail: Vec::new(),
            skipping: false,
            renames: 0,
            truncations: 0,
            too_long: 0,
        })
    }

    /// The complete lines written since the last call, in order.
    pub fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.ino() != self.inode => {
                // Renamed away and recreated: finish the old file, then take the new one.
                self.read_to_end(&mut lines)?;
                self.flush_partial(&mut lines);
                self.file = open_regular(&self.path)?;
                self.inode = self.file.metadata()?.ino();
                self.offset = 0;
                self.tail.clear();
                self.renames += 1;
            }
            Ok(meta) if meta.len() < self.offset || !self.tail_still_there()? => {
                // Copied to <path>.1 and truncated: the copy holds what we had not read yet.
                let rotated = rotated_copy(&self.path);
                if let Ok(mut copy) = File::open(&rotated)
                    && copy.metadata()?.len() >= self.offset
                {
                    copy.seek(SeekFrom::Start(self.offset))?;
                    let mut rest = Vec::new();
                    copy.read_to_end(&mut rest)?;
                    self.split(&rest, &mut lines);
                }
                self.flush_partial(&mut lines);
                self.file.seek(SeekFrom::Start(0))?;
                self.offset = 0;
                self.tail.clear();
                self.truncations += 1;
            }
            // Same file (or gone for a moment during a rotation): read what is new.
            _ => {}
        }
        self.read_to_end(&mut lines)?;
        Ok(lines)
    }

    fn read_to_end(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        let n = self.file.read_to_end(&mut buf)?;
        self.offset += n as u64;
        let keep = buf.len().min(TAIL);
        if keep == TAIL {
            self.tail.clear();
        } else if self.tail.len() + keep > TAIL {
            self.tail.drain(..self.tail.len() + keep - TAIL);
        }
        self.tail.extend_from_slice(&buf[buf.len() - keep..]);
        self.split(&buf, lines);
        Ok(())
    }

    /// Whether the bytes before `offset` are still the ones we read.
    fn tail_still_there(&self) -> io::Result<bool> {
        use std::os::unix::fs::FileExt as _;
        if self.tail.is_empty() {
            return Ok(true);
        }
        let mut now = vec![0u8; self.tail.len()];
        match self
            .file
            .read_exact_at(&mut now, self.offset - self.tail.len() as u64)
        {
            Ok(()) => Ok(now == self.tail),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Appends the complete lines of `partial + data`; keeps an unfinished last line (up to
    /// [`Lines::MAX_LINE`]: a longer one is dropped up to its newline, and counted).
    fn split(&mut self, data: &[u8], lines: &mut Vec<String>) {
        let mut data = data;
        if self.skipping {
            match memchr::memchr(b'\n', data) {
                Some(at) => {
                    data = &data[at + 1..];
                    self.skipping = false;
                }
                None => return,
            }
        }
        self.partial.extend_from_slice(data);
        let rest = match self.partial.iter().rposition(|b| *b == b'\n') {
            Some(last_newline) => self.partial.split_off(last_newline + 1),
            None => std::mem::take(&mut self.partial),
        };
        for line in self
            .partial
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            if line.len() > Lines::MAX_LINE {
                self.too_long += 1;
            } else {
                lines.push(String::from_utf8_lossy(line).into_owned());
            }
        }
        self.partial = rest;
        if self.partial.len() > Lines::MAX_LINE {
            self.too_long += 1;
            self.skipping = true;
            self.partial = Vec::new();
        }
    }

    /// A file that ended without a final newline: its last line is complete after all.
    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        self.skipping = false;
    }
}

fn rotated_copy(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
