//! Real containers for the tests: OCI bundles (busybox, or a root filesystem seen through an
//! overlay) run by runc or crun at kubelet-like cgroup paths
//! (`/kubepods/besteffort/pod<uid>/<64-hex id>`), without images or a daemon, and
//! `syscribe record --cgroup` recording them.

use std::{
    ffi::CString,
    io::{BufRead as _, BufReader},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use crate::{TempDir, assert_no_leftovers, stdout, syscribe};

/// Where the cgroup hierarchies are mounted on these machines (hybrid: v1 controllers and
/// cgroup2 at `unified`).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique-enough hex string of `len` digits for ids and UIDs.
fn hex(len: usize) -> String {
    let seed =
        u64::from(std::process::id()) << 32 | u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut state = seed ^ (u64::from(nanos) << 16) ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.push_str(&format!(
            "{:016x}",
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        ));
    }
    out.truncate(len);
    out
}

/// A pod's cgroup, as the kubelet (cgroupfs driver) lays it out; removed with its parents
/// from every hierarchy on drop.
pub struct PodCgroup {
    pub uid: String,
}

impl PodCgroup {
    /// Creates the pod's cgroup2 directory (containers' cgroups are created by the runtime).
    pub fn new() -> Self {
        let h = hex(32);
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        let pod = Self { uid };
        std::fs::create_dir_all(pod.unified_dir()).expect("create the pod cgroup");
        pod
    }

    /// The pod's cgroup path relative to each hierarchy's root.
    pub fn path(&self) -> String {
        format!("/kubepods/besteffort/pod{}", self.uid)
    }

    pub fn unified_dir(&self) -> PathBuf {
        PathBuf::from(format!("{CGROUP_ROOT}/unified{}", self.path()))
    }
}

impl Default for PodCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir(CGROUP_ROOT) else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            let base = hierarchy.path();
            // Deepest first; a directory still in use (or shared) stays.
            for rel in [
                self.path(),
                "/kubepods/besteffort".to_owned(),
                "/kubepods".to_owned(),
            ] {
                let _ = std::fs::remove_dir(base.join(rel.trim_start_matches('/')));
            }
        }
    }
}

/// An OCI bundle: a root filesystem and a config running `args`, in the pod's cgroup.
pub struct Bundle {
    /// Unmounted before the bundle's directory is removed (fields drop in order).
    overlay: Option<Overlay>,
    dir: TempDir,
    pub id: String,
}

impl Bundle {
    /// A busybox root filesystem of its own.
    pub fn new(pod: &PodCgroup, args: &[&str]) -> Self {
        let bundle = Self::empty();
        let rootfs = bundle.rootfs();
        for sub in ["bin", "etc", "tmp", "proc", "dev", "sys"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is installed");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
        bundle.write_config(pod, args);
        bundle
    }

    /// The root filesystem `lower` (never written: a cache several bundles share) seen
    /// through an overlay whose writes stay in this bundle and go with it.
    pub fn over(lower: &Path, pod: &PodCgroup, args: &[&str]) -> Self {
        let mut bundle = Self::empty();
        bundle.overlay = Some(Overlay::mount(lower, bundle.dir.path()));
        bundle.write_config(pod, args);
        bundle
    }

    fn empty() -> Self {
        let id = hex(64);
        let dir = TempDir::new(&format!("bundle-{}", &id[..12]));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        Self {
            overlay: None,
            dir,
            id,
        }
    }

    /// `runc spec`'s config, running `args` on the host's network in the pod's cgroup.
    fn write_config(&self, pod: &PodCgroup, args: &[&str]) {
        let status = Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "runc spec failed");
        let rootfs = self.rootfs();
        self.edit(|config| {
            config["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
            config["process"]["terminal"] = false.into();
            config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
            config["linux"]["cgroupsPath"] = format!("{}/{}", pod.path(), self.id).into();
            // The host's network: loopback works without setting up a namespace.
            config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|ns| ns["type"] != "network");
        });
    }

    /// The container's root filesystem as the host sees it.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Changes the bundle's config.json.
    pub fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let config_path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        change(&mut config);
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets (or with `None` removes) the container's seccomp profile.
    pub fn set_seccomp(&self, profile: Option<&serde_json::Value>) {
        self.edit(|config| match profile {
            Some(profile) => config["linux"]["seccomp"] = profile.clone(),
            None => {
                config["linux"].as_object_mut().unwrap().remove("seccomp");
            }
        });
    }

    /// Sets the OCI annotations a CRI runtime would (containerd's names for the pod).
    pub fn annotate(&self, namespace: &str, pod: &str, container: &str) {
        self.edit(|config| {
            config["annotations"] = serde_json::json!({
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-namespace": namespace,
                "io.kubernetes.cri.sandbox-name": pod,
                "io.kubernetes.cri.container-name": container,
            });
        });
    }

    /// Gives the container's process exactly these capabilities (`CAP_*` names) in its
    /// bounding, effective and permitted sets, none inheritable or ambient.
    pub fn set_capabilities(&self, capabilities: &[&str]) {
        let config_path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        let set = serde_json::json!(capabilities);
        config["process"]["capabilities"] = serde_json::json!({
            "bounding": set, "effective": set, "permitted": set,
        });
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Runs the container in the foreground with `runtime` (runc or crun) and deletes it.
    pub fn run(&self, runtime: &str) -> Output {
        run_bundle(runtime, self.dir.path(), &self.id)
    }

    /// [`Bundle::run`] on a thread of its own (the caller goes on collecting meanwhile).
    pub fn spawn_run(&self, runtime: &'static str) -> std::thread::JoinHandle<Output> {
        let (dir, id) = (self.dir.path().to_owned(), self.id.clone());
        std::thread::spawn(move || run_bundle(runtime, &dir, &id))
    }
}

fn run_bundle(runtime: &str, dir: &Path, id: &str) -> Output {
    let output = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(dir)
        .arg(id)
        .output()
        .unwrap_or_else(|err| panic!("{runtime} run: {err}"));
    let _ = Command::new(runtime)
        .args(["delete", "--force", id])
        .output();
    output
}

/// An overlay mount: a shared lower directory, this bundle's upper and work directories.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn mount(lower: &Path, bundle: &Path) -> Self {
        let (upper, work, merged) = (
            bundle.join("upper"),
            bundle.join("work"),
            bundle.join("rootfs"),
        );
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        assert!(
            !lower.as_os_str().as_bytes().contains(&b',')
                && !lower.as_os_str().as_bytes().contains(&b':'),
            "{}: an overlay's lower directory cannot be named with ',' or ':'",
            lower.display()
        );
        let c = |bytes: &[u8]| CString::new(bytes).expect("no NUL in a path");
        let (source, target, fstype, data) = (
            c(b"overlay"),
            c(merged.as_os_str().as_bytes()),
            c(b"overlay"),
            c(options.as_bytes()),
        );
        // SAFETY: NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount -t overlay -o {options} {}: {}",
            merged.display(),
            std::io::Error::last_os_error()
        );
        Self { merged }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let target = CString::new(self.merged.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: a NUL-terminated path. Detached: a container that a failed test left
        // running does not keep the directory from going.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// A running `syscribe record --cgroup`.
pub struct PodRecording {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl PodRecording {
    pub fn start(pod: &PodCgroup, out: &Path) -> Self {
        Self::start_with(pod, out, &[])
    }

    pub fn start_with(pod: &PodCgroup, out: &Path, extra: &[&str]) -> Self {
        let mut child = syscribe()
            .args([
                "--log-format",
                "json",
                "record",
                "--cgroup",
                &pod.path(),
                "-o",
            ])
            .arg(out)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn syscribe record --cgroup");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut recording = Self {
            child,
            lines,
            log: Vec::new(),
        };
        recording.wait_for_line("recording the containers");
        recording
    }

    pub fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return;
                }
            }
        }
        panic!(
            "syscribe never said {needle:?}; it said:\n{}",
            self.log.join("\n")
        );
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (up to 10 s) for syscribe to end by itself; returns the whole log.
    pub fn finished(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "syscribe did not end: {}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.log.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "syscribe record --cgroup failed: {}",
            self.log.join("\n")
        );
        self.log
    }

    /// It took over a killed syscribe's pinned state.
    pub fn assert_adopted(&self) {
        assert!(
            self.log
                .iter()
                .any(|l| l.contains("adopted the recorder state")),
            "{:?}",
            self.log
        );
    }

    /// SIGTERM, then the whole log.
    pub fn stop(self) -> Vec<String> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.finished()
    }
}

/// Waits for the profile syscribe writes when the container's cgroup goes away.
pub fn profile_of(out: &Path, bundle: &Bundle) -> serde_json::Value {
    let path: PathBuf = out.join(format!("{}.json", bundle.id));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no profile at {} (there: {:?})",
            path.display(),
            std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The seccomp profile containers are recorded under: allows everything, but makes the runtime
/// install a filter, which is where the runtime's own setup ends.
pub fn recording_profile() -> serde_json::Value {
    serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"] })
}

/// After a test: no container left in any runtime, no pod cgroup in any hierarchy, no bundle,
/// nothing of syscribe's (see `assert_no_leftovers`).
pub fn assert_no_container_leftovers(pod: PodCgroup) {
    let relative = pod.path();
    drop(pod);
    assert_pod_gone(&relative);
}

/// No container in any runtime, no `relative` cgroup in any hierarchy, no bundle, nothing of
/// syscribe's.
pub fn assert_pod_gone(relative: &str) {
    for runtime in ["runc", "crun"] {
        let list = std::process::Command::new(runtime)
            .args(["list", "-q"])
            .output()
            .unwrap();
        assert!(
            stdout(&list).trim().is_empty(),
            "{runtime} still has containers: {}",
            stdout(&list)
        );
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join(relative.trim_start_matches('/'));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    let bundles: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("syscribe-test-bundle-")
        })
        .collect();
    assert!(
        bundles.is_empty(),
        "bundles left: {:?}",
        bundles.iter().map(|b| b.path()).collect::<Vec<_>>()
    );
    assert_no_leftovers();
}
