//! The daemon's resident memory, handed back. Loading the recorder parses the kernel's BTF
//! (megabytes of types, freed once the programs are loaded), and watches, re-lists and ended
//! recordings free what they held; glibc's allocator keeps freed memory in its arenas rather
//! than returning it, so the daemon sat at ~48 MiB resident of which ~25 MiB were free chunks
//! (measured on the real cluster: `malloc_trim(0)` in the running daemon took it to 23 MiB).
//! [`Trim`] returns free pages to the kernel once the daemon has started and then at most once
//! a [`Trim::EVERY`].

use std::time::{Duration, Instant};

/// Returns the allocator's free pages to the kernel; how much resident memory that gave back
/// (KiB), when it can be read.
pub fn release_free_memory() -> Option<u64> {
    let before = resident_kib();
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    Some(before?.saturating_sub(resident_kib()?))
}

/// This process's resident memory (KiB), from /proc/self/statm.
pub fn resident_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()? / 1024)
}

/// When to trim next.
#[derive(Debug)]
pub struct Trim {
    next: Instant,
    said: bool,
}

impl Default for Trim {
    fn default() -> Self {
        Self {
            next: Instant::now(),
            said: false,
        }
    }
}

impl Trim {
    /// How often the daemon trims (a walk of the free lists: about a millisecond).
    pub const EVERY: Duration = Duration::from_secs(60);

    /// Trims when it is time (the first call at once); says what it gave back the first time.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + Self::EVERY;
        let released = release_free_memory();
        if !std::mem::replace(&mut self.said, true) {
            tracing::info!(
                released_kib = released,
                resident_kib = resident_kib(),
                "free memory returned to the kernel"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        // Many small blocks (the allocator's arenas, not mmap), touched, then freed.
        let blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 2048]).collect();
        let full = resident_kib().unwrap();
        drop(blocks);
        release_free_memory().unwrap();
        let after = resident_kib().unwrap();
        assert!(
            after + 40_000 < full,
            "80 MB freed, resident {full} KiB → {after} KiB"
        );
        let mut trim = Trim::default();
        trim.tick();
        assert!(trim.next > Instant::now() + Trim::EVERY - Duration::from_secs(1));
    }
}
