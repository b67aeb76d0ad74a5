//! Helpers for syscribe's privileged integration tests (real kernel, real processes, root).
//!
//! Run them with `cargo xtask test`, which builds syscribe and passes its path in
//! `SYSCRIBE_BIN`. Without root they fail loudly: a recorder test that cannot record proves
//! nothing.

pub mod cluster;
pub mod containers;
pub mod fake_api;
pub mod samples;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The cgroup2 directory syscribe creates its local recordings under.
pub const LOCAL_CGROUP_PARENT: &str = "/sys/fs/cgroup/unified/syscribe";

/// Panics unless running as root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (eBPF, cgroups): run them with `cargo xtask test` as root"
    );
}

/// The syscribe binary under test.
pub fn syscribe_bin() -> PathBuf {
    let bin = std::env::var_os("SYSCRIBE_BIN")
        .map(PathBuf::from)
        .expect("SYSCRIBE_BIN is not set: run these tests with `cargo xtask test`");
    assert!(
        bin.exists(),
        "SYSCRIBE_BIN={} does not exist",
        bin.display()
    );
    bin
}

pub fn syscribe() -> Command {
    require_root();
    Command::new(syscribe_bin())
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("syscribe-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished `syscribe record`: its process output and the profile it wrote.
pub struct Recorded {
    pub output: Output,
    pub profile: serde_json::Value,
    pub profile_path: PathBuf,
}

impl Recorded {
    /// The names in the profile's (single) allow rule.
    pub fn names(&self) -> BTreeSet<String> {
        allowed_names(&self.profile)
    }
}

pub fn allowed_names(profile: &serde_json::Value) -> BTreeSet<String> {
    profile["syscalls"]
        .as_array()
        .expect("profile has syscalls")
        .iter()
        .filter(|rule| rule["action"] == "SCMP_ACT_ALLOW")
        .flat_map(|rule| rule["names"].as_array().expect("names").iter())
        .map(|name| name.as_str().expect("name is a string").to_owned())
        .collect()
}

/// `syscribe record -o <dir>/<tag>.json -- command…`; asserts syscribe exited as the command did.
pub fn record(dir: &TempDir, tag: &str, command: &[&str]) -> Recorded {
    let profile_path = dir.join(&format!("{tag}.json"));
    let output = syscribe()
        .arg("record")
        .arg("-o")
        .arg(&profile_path)
        .arg("--")
        .args(command)
        .output()
        .expect("spawn syscribe record");
    let text = std::fs::read_to_string(&profile_path).unwrap_or_else(|err| {
        panic!(
            "no profile at {} ({err}); syscribe stderr:\n{}",
            profile_path.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let profile = serde_json::from_str(&text).expect("profile is JSON");
    Recorded {
        output,
        profile,
        profile_path,
    }
}

/// `syscribe run --profile <profile> -- command…`.
pub fn run_under(profile: &Path, command: &[&str]) -> Output {
    syscribe()
        .arg("run")
        .arg("--profile")
        .arg(profile)
        .arg("--")
        .args(command)
        .output()
        .expect("spawn syscribe run")
}

/// Writes a copy of `profile` without `name` in its allow rule, and returns its path.
pub fn without_syscall(dir: &TempDir, profile: &serde_json::Value, name: &str) -> PathBuf {
    let mut copy = profile.clone();
    let mut removed = false;
    for rule in copy["syscalls"].as_array_mut().expect("syscalls") {
        let names = rule["names"].as_array_mut().expect("names");
        let before = names.len();
        names.retain(|n| n != name);
        removed |= names.len() != before;
    }
    assert!(
        removed,
        "{name} is not in the profile, so removing it proves nothing"
    );
    let path = dir.join(&format!("without-{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&copy).expect("serialize"))
        .expect("write profile");
    path
}

/// Asserts nothing syscribe creates is left (no local recording cgroup, no syscribe program
/// loaded in the kernel) and nothing it must not touch was replaced (`/dev/null`).
pub fn assert_no_leftovers() {
    use std::os::unix::fs::FileTypeExt as _;
    let null = std::fs::metadata("/dev/null").expect("/dev/null exists");
    assert!(
        null.file_type().is_char_device(),
        "/dev/null is no longer a device"
    );
    let cgroups: Vec<_> = std::fs::read_dir(LOCAL_CGROUP_PARENT)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        cgroups.is_empty(),
        "recording cgroups left behind: {cgroups:?}"
    );
    assert!(
        !Path::new(LOCAL_CGROUP_PARENT).exists(),
        "{LOCAL_CGROUP_PARENT} was left behind"
    );
    // The kernel frees a program asynchronously (RCU) after its last fd closes: give it time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let programs: Vec<String> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter_map(|info| info.name_as_str().map(str::to_owned))
            .filter(|name| name.starts_with("syscribe"))
            .collect();
        if programs.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "syscribe programs still loaded 5 s after syscribe exited: {programs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `syscribe enrich --follow` running in the background: its stdout lines are collected, and
/// `start` returns once stderr says it is ready.
pub struct Following {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Following {
    /// Starts `syscribe enrich --follow ARGS…` and waits (up to 10 s) for `ready` on stderr.
    pub fn start(args: &[&str], ready: &str) -> Self {
        use std::io::BufRead as _;
        let mut child = syscribe()
            .arg("enrich")
            .arg("--follow")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn syscribe enrich");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        let (l, e) = (lines.clone(), stderr.clone());
        let readers = vec![
            std::thread::spawn(move || {
                for line in out.lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                for line in err.lines().map_while(Result::ok) {
                    let mut e = e.lock().unwrap();
                    e.push_str(&line);
                    e.push('\n');
                }
            }),
        ];
        let following = Self {
            child,
            lines,
            stderr,
            readers,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !following.stderr().contains(ready) {
            assert!(
                std::time::Instant::now() < deadline,
                "syscribe enrich never said {ready:?}; stderr: {}",
                following.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        following
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The JSON lines so far that `keep` selects.
    pub fn lines_where(&self, keep: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .filter(|v| keep(v))
            .collect()
    }

    /// Waits up to `timeout` for `count` lines that `keep` selects.
    pub fn wait_for(
        &self,
        count: usize,
        timeout: std::time::Duration,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let found = self.lines_where(&keep);
            if found.len() >= count || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit status and final stderr (with the counts summary).
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        signal(self.child.id(), libc::SIGTERM);
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// The number before `label` in syscribe enrich's summary (`…, 1 exited, …`).
pub fn summary_count(stderr: &str, label: &str) -> u64 {
    let summary = stderr
        .lines()
        .rfind(|l| l.contains(" lines, "))
        .unwrap_or_else(|| panic!("no summary in: {stderr}"));
    summary
        .split([',', ';'])
        .find_map(|part| part.trim().strip_suffix(label)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in: {summary}"))
}

/// bpffs at /sys/fs/bpf for one test: mounted if it was not, unmounted after.
pub struct BpfFs {
    mounted_here: bool,
}

impl BpfFs {
    pub const DIR: &'static str = "/sys/fs/bpf";

    pub fn ensure() -> Self {
        let is_bpffs = || {
            let out = std::process::Command::new("stat")
                .args(["-f", "-c", "%T", Self::DIR])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "bpf_fs"
        };
        if is_bpffs() {
            return Self {
                mounted_here: false,
            };
        }
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf", Self::DIR])
            .status()
            .unwrap();
        assert!(
            status.success() && is_bpffs(),
            "cannot mount bpffs at {}",
            Self::DIR
        );
        Self { mounted_here: true }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = std::process::Command::new("umount").arg(Self::DIR).status();
        }
    }
}
