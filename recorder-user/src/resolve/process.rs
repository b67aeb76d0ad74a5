//! pid → container at the time of an audit record.
//!
//! A live process is read from `/proc/<pid>/cgroup` (short-lived bounded cache: a burst of
//! denials from one process reads /proc once). A process that is gone — `SCMP_ACT_KILL` kills it
//! before anyone reads its record — is looked up in the kernel's memory of exits
//! ([`ExitLookup`], the eBPF `EXITED` map: pid → cgroup id and exit time), and its cgroup id is
//! turned into a path by scanning the cgroup2 tree ([`CgroupIndex`]).
//!
//! Pid reuse (pid_max is 32768 on many nodes): a live process that started after the record
//! is not the one that wrote it; an exit is only believed if it happened after the record and
//! within [`ProcResolver::EXIT_GRACE`] of it.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::container::{ContainerRef, container_of_path, container_of_proc_cgroup};

/// Where exited processes are remembered: pid → (cgroup v2 id, exit time in `CLOCK_BOOTTIME` ns).
pub trait ExitLookup {
    fn exited(&mut self, pid: u32) -> Option<(u64, u64)>;
}

/// How records were resolved (reported at the end and on /metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResolveCounts {
    /// From a live process's /proc entry.
    pub live: u64,
    /// From the kernel's memory of exits (the process was gone).
    pub exited: u64,
    /// The pid belonged to a process started after the record: not used.
    pub pid_reused: u64,
    /// Nothing known about the process (gone and not remembered, or its cgroup is gone too).
    pub unresolved: u64,
    /// How many times the cache was full and started over.
    pub cache_resets: u64,
}

#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    /// Whether /proc had the process (else nothing else is known).
    live: bool,
    /// The process's start (`CLOCK_BOOTTIME` ns), when known.
    start_ns: Option<u64>,
    container: Option<ContainerRef>,
    /// What the kernel's memory of exits says about the pid, once asked.
    exited: Option<Option<(u64, u64)>>,
}

pub struct ProcResolver {
    proc: PathBuf,
    cache: HashMap<u32, Cached>,
    exits: Option<Box<dyn ExitLookup>>,
    cgroups: CgroupIndex,
    ticks_per_second: u64,
    pub counts: ResolveCounts,
}

impl ProcResolver {
    /// How long an answer is reused.
    const TTL: Duration = Duration::from_secs(1);
    const MAX: usize = 16384;
    /// Clock slack when comparing a record's time (realtime, milliseconds) with boot-time
    /// clocks (start ticks are 10 ms; NTP may slew realtime).
    const SLACK_NS: u64 = 100_000_000;
    /// An exit this long after the record may be a later process with the same pid.
    pub const EXIT_GRACE: Duration = Duration::from_secs(60);

    /// `cgroup2` is where the cgroup v2 hierarchy is mounted (for cgroup id → path).
    pub fn new(proc: PathBuf, cgroup2: PathBuf, exits: Option<Box<dyn ExitLookup>>) -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            proc,
            cache: HashMap::new(),
            exits,
            cgroups: CgroupIndex::new(cgroup2),
            ticks_per_second: u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100),
            counts: ResolveCounts::default(),
        }
    }

    /// The container of the process `pid` that wrote a record at `at_boot_ns`
    /// (`CLOCK_BOOTTIME`; see [`BootClock`]); `None` for a host process or one
    /// nothing is known about.
    /// `now` is the caller's clock reading (one per record is enough).
    pub fn container_of(
        &mut self,
        pid: u32,
        at_boot_ns: u64,
        now: Instant,
    ) -> Option<ContainerRef> {
        let fresh_enough = |c: &Cached| now.duration_since(c.at) < Self::TTL;
        if !self.cache.get(&pid).is_some_and(fresh_enough) {
            let fresh = self.read_proc(pid).unwrap_or(Cached {
                at: now,
                live: false,
                start_ns: None,
                container: None,
                exited: None,
            });
            if self.cache.len() >= Self::MAX {
                self.cache.clear();
                self.counts.cache_resets += 1;
            }
            self.cache.insert(pid, fresh);
        }
        let cached = self.cache.get_mut(&pid)?;
        if cached.live {
            let started_after = cached
                .start_ns
                .is_some_and(|start| start > at_boot_ns.saturating_add(Self::SLACK_NS));
            if !started_after {
                self.counts.live += 1;
                return cached.container.clone();
            }
            self.counts.pid_reused += 1;
        }
        // The kernel's memory, read once per cache entry.
        let exited = *cached
            .exited
            .get_or_insert_with(|| self.exits.as_mut().and_then(|exits| exits.exited(pid)));
        let found = exited
            .filter(|(_, exit_ns)| {
                *exit_ns + Self::SLACK_NS >= at_boot_ns
                    && *exit_ns <= at_boot_ns.saturating_add(Self::EXIT_GRACE.as_nanos() as u64)
            })
            .and_then(|(cgroup_id, _)| self.cgroups.path_of(cgroup_id));
        match found {
            Some(path) => {
                self.counts.exited += 1;
                container_of_path(&path)
            }
            None => {
                self.counts.unresolved += 1;
                None
            }
        }
    }

    /// A live process's container and start time; `None` if there is no such process.
    fn read_proc(&self, pid: u32) -> Option<Cached> {
        let dir = self.proc.join(pid.to_string());
        let file = std::fs::File::open(dir.join("cgroup")).ok()?;
        let container = container_of_proc_cgroup(std::io::BufReader::new(file))
            .ok()
            .flatten();
        let start_ns = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|stat| start_ticks(&stat))
            .map(|ticks| ticks.saturating_mul(1_000_000_000) / self.ticks_per_second);
        Some(Cached {
            at: Instant::now(),
            live: true,
            start_ns,
            container,
            exited: None,
        })
    }
}

/// Field 22 (`starttime`, clock ticks after boot) of `/proc/<pid>/stat`; the command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
// By hand, not procfs's Stat: one field of a process-named line, no panic on any input
// (procfs slices around the parentheses at fixed offsets and needs all 52 fields).
fn start_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Converts records' realtime timestamps to `CLOCK_BOOTTIME` nanoseconds (what eBPF and /proc
/// use). The clocks' offset is read again every second (NTP may step realtime).
#[derive(Debug, Default)]
pub struct BootClock {
    offset: Option<(Instant, i128)>,
}

impl BootClock {
    pub fn to_boot_ns(&mut self, seconds: u64, millis: u32, now: Instant) -> u64 {
        let offset = match self.offset {
            Some((at, offset)) if now.duration_since(at) < Duration::from_secs(1) => offset,
            _ => {
                let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
                self.offset = Some((now, offset));
                offset
            }
        };
        let at = i128::from(seconds) * 1_000_000_000 + i128::from(millis) * 1_000_000;
        u64::try_from(at - offset).unwrap_or(0)
    }
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// cgroup v2 id → path (relative to the hierarchy's root), by scanning the tree. Bounded: at
/// most [`CgroupIndex::MAX`] cgroups, at most one scan per [`CgroupIndex::RESCAN`].
pub struct CgroupIndex {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
    /// Full scans done.
    pub scans: u64,
    /// Scans that stopped at `MAX` cgroups.
    pub truncated: u64,
}

impl CgroupIndex {
    pub const MAX: usize = 65536;
    const RESCAN: Duration = Duration::from_millis(100);

    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            paths: HashMap::new(),
            last_scan: None,
            scans: 0,
            truncated: 0,
        }
    }

    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        if self.last_scan.is_some_and(|at| at.elapsed() < Self::RESCAN) {
            return None;
        }
        self.scan();
        self.paths.get(&id).cloned()
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.scans += 1;
        self.paths.clear();
        let mut stack = vec![(self.root.clone(), String::from("/"))];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            if self.paths.len() >= Self::MAX {
                self.truncated += 1;
                return;
            }
            self.paths.insert(meta.ino(), rel.clone());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if rel == "/" {
                        format!("/{name}")
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((entry.path(), child));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ID: &str = "4c3a4d5ca0d4b62dd1d0b1cb24ea3f9ba8e23f1e3ea4e6b9e6f6a0a3c5e8c2d1";
    const UID: &str = "0f6e5a2b-8b1c-4b7e-9d3a-1c2b3d4e5f60";

    struct FakeExits(HashMap<u32, (u64, u64)>);
    impl ExitLookup for FakeExits {
        fn exited(&mut self, pid: u32) -> Option<(u64, u64)> {
            self.0.get(&pid).copied()
        }
    }

    fn tree(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("syscribe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    /// A fake /proc entry: a kubelet cgroup line and a stat started at `start_ticks`.
    fn fake_process(proc: &Path, pid: u32, start_ticks: u64) {
        std::fs::create_dir_all(proc.join(pid.to_string())).unwrap();
        std::fs::write(
            proc.join(format!("{pid}/cgroup")),
            format!("0::/kubepods/besteffort/pod{UID}/{ID}\n"),
        )
        .unwrap();
        let fields: Vec<String> = (3..=52)
            .map(|n| {
                if n == 22 {
                    start_ticks.to_string()
                } else {
                    "0".into()
                }
            })
            .collect();
        std::fs::write(
            proc.join(format!("{pid}/stat")),
            format!("{pid} (a (weird) name) {}\n", fields.join(" ")),
        )
        .unwrap();
    }

    #[test]
    fn start_time_is_field_22_after_the_name() {
        let stat = "7 (x) y) S 1 7 7 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 12345 100 5\n";
        assert_eq!(start_ticks(stat), Some(12345));
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn live_processes_resolve_and_cache() {
        let root = tree("proc-live");
        fake_process(&root, 42, 100);
        let mut resolver = ProcResolver::new(root.clone(), root.join("none"), None);
        let found = resolver
            .container_of(42, 5_000_000_000, Instant::now())
            .expect("container");
        assert_eq!(found.container_id, ID);
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            resolver.container_of(43, 5_000_000_000, Instant::now()),
            None,
            "no such process"
        );
        std::fs::remove_dir_all(&root).unwrap();
        assert!(
            resolver
                .container_of(42, 5_000_000_000, Instant::now())
                .is_some(),
            "cached within the TTL"
        );
        assert_eq!(resolver.counts.live, 2);
        assert_eq!(resolver.counts.unresolved, 1);
    }

    #[test]
    fn gone_processes_resolve_from_exits_and_reused_pids_are_not_believed() {
        let root = tree("proc-exits");
        let proc = root.join("proc");
        let cgroup2 = root.join("cgroup2");
        let container = cgroup2.join(format!("kubepods/besteffort/pod{UID}/{ID}"));
        std::fs::create_dir_all(&container).unwrap();
        std::fs::create_dir_all(&proc).unwrap();
        let cgroup_id = std::fs::metadata(&container).unwrap().ino();
        let record_ns = 50_000_000_000; // 50 s after boot
        let exits = FakeExits(HashMap::from([
            // Exited 2 ms after its record: the killed process.
            (7, (cgroup_id, record_ns + 2_000_000)),
            // Exited long before the record: another, older process.
            (8, (cgroup_id, record_ns - 10_000_000_000)),
            // Exited long after: possibly a later process with the same pid.
            (9, (cgroup_id, record_ns + 120_000_000_000)),
            // Its cgroup is gone.
            (10, (1, record_ns)),
        ]));
        // Pid 7 is live again, but started (at 60 s) after the record: reused.
        fake_process(&proc, 7, 6000);
        let mut resolver = ProcResolver::new(proc, cgroup2, Some(Box::new(exits)));
        let found = resolver
            .container_of(7, record_ns, Instant::now())
            .expect("attributed");
        assert_eq!(found.container_id, ID);
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(resolver.counts.pid_reused, 1);
        assert_eq!(resolver.counts.exited, 1);
        for pid in [8, 9, 10, 11] {
            assert_eq!(
                resolver.container_of(pid, record_ns, Instant::now()),
                None,
                "pid {pid}"
            );
        }
        assert_eq!(resolver.counts.unresolved, 4);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_cgroup_index_is_bounded_by_rescans() {
        let root = tree("cgindex");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let mut index = CgroupIndex::new(root.clone());
        let id = std::fs::metadata(root.join("a/b")).unwrap().ino();
        assert_eq!(index.path_of(id).as_deref(), Some("/a/b"));
        std::fs::create_dir_all(root.join("c")).unwrap();
        let c = std::fs::metadata(root.join("c")).unwrap().ino();
        // Within the rescan interval: not found, no second scan.
        assert_eq!(index.path_of(c), None);
        assert_eq!(index.scans, 1);
        std::thread::sleep(CgroupIndex::RESCAN);
        assert_eq!(index.path_of(c).as_deref(), Some("/c"));
        assert_eq!(index.scans, 2);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
