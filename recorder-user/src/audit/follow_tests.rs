use std::io::Write as _;

use super::*;

struct Log {
    dir: PathBuf,
    path: PathBuf,
    next: u32,
}

impl Log {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("syscribe-follow-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.log");
        std::fs::write(&path, "").unwrap();
        Self { dir, path, next: 0 }
    }

    /// What logrotate's copytruncate does: copy to `.1`, truncate in place.
    fn copytruncate(&self) {
        std::fs::copy(&self.path, self.dir.join("audit.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    /// Appends `n` numbered lines.
    fn append(&mut self, n: u32) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap();
        for _ in 0..n {
            writeln!(file, "line {}", self.next).unwrap();
            self.next += 1;
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn numbers(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect()
}

#[test]
fn appends_renames_and_copytruncates_lose_and_repeat_nothing() {
    let mut log = Log::new("rotations");
    let mut follower = Follower::open(&log.path, false).unwrap();
    let mut seen = Vec::new();
    log.append(3);
    seen.extend(follower.poll().unwrap());

    // auditd: written after our last read, then renamed away; a new file follows.
    log.append(2);
    std::fs::rename(&log.path, log.dir.join("audit.log.1")).unwrap();
    std::fs::write(&log.path, "").unwrap();
    log.append(2);
    seen.extend(follower.poll().unwrap());
    assert_eq!(follower.renames, 1);

    // logrotate copytruncate: written after our last read, copied, truncated, then more.
    log.append(4);
    log.copytruncate();
    log.append(1);
    seen.extend(follower.poll().unwrap());
    assert_eq!(follower.truncations, 1);

    log.append(2);
    seen.extend(follower.poll().unwrap());
    assert_eq!(
        numbers(&seen),
        (0..log.next).collect::<Vec<_>>(),
        "every line once, in order"
    );
}

#[test]
fn a_copytruncate_is_seen_even_when_the_new_file_is_already_as_long() {
    let mut log = Log::new("regrown");
    let mut follower = Follower::open(&log.path, false).unwrap();
    log.append(1);
    let mut seen = follower.poll().unwrap();
    // Copied and truncated, then rewritten to the very same length before the next poll.
    log.append(1);
    log.copytruncate();
    log.append(2);
    seen.extend(follower.poll().unwrap());
    assert_eq!(follower.truncations, 1);
    assert_eq!(numbers(&seen), [0, 1, 2, 3]);
}

#[test]
fn a_line_without_its_newline_waits() {
    let log = Log::new("partial");
    let mut follower = Follower::open(&log.path, false).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log.path)
        .unwrap();
    write!(file, "type=SECCOMP msg=aud").unwrap();
    assert!(follower.poll().unwrap().is_empty());
    writeln!(file, "it(1.2:3): pid=1").unwrap();
    assert_eq!(
        follower.poll().unwrap(),
        ["type=SECCOMP msg=audit(1.2:3): pid=1"]
    );
}

#[test]
fn a_line_that_never_ends_is_bounded_and_counted() {
    let log = Log::new("endless");
    let mut follower = Follower::open(&log.path, false).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log.path)
        .unwrap();
    let chunk = vec![b'x'; 48 << 10];
    for _ in 0..4 {
        file.write_all(&chunk).unwrap();
        assert!(follower.poll().unwrap().is_empty());
        assert!(follower.partial.len() <= Lines::MAX_LINE, "bounded");
    }
    writeln!(file, "tail of the long line\nline 0").unwrap();
    assert_eq!(follower.poll().unwrap(), ["line 0"]);
    assert_eq!(follower.too_long, 1);
}

#[test]
fn a_device_is_refused() {
    let err = Follower::open(Path::new("/dev/zero"), false).err().unwrap();
    assert!(err.to_string().contains("a character device"), "{err}");
}

#[test]
fn from_end_skips_what_was_there() {
    let mut log = Log::new("from-end");
    log.append(5);
    let mut follower = Follower::open(&log.path, true).unwrap();
    assert!(follower.poll().unwrap().is_empty());
    log.append(1);
    assert_eq!(follower.poll().unwrap(), ["line 5"]);
}
