//! Real containers for the tests: busybox OCI bundles run by runc or crun at kubelet-like
//! cgroup paths (`/kubepods/besteffort/pod<uid>/<64-hex id>`), without images or a daemon.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::TempDir;

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

/// An OCI bundle: busybox rootfs and a config running `args`, in the pod's cgroup.
pub struct Bundle {
    dir: TempDir,
    pub id: String,
}

impl Bundle {
    pub fn new(pod: &PodCgroup, args: &[&str]) -> Self {
        let id = hex(64);
        let dir = TempDir::new(&format!("bundle-{}", &id[..12]));
        let rootfs = dir.join("rootfs");
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

        let status = Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "runc spec failed");
        let config_path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        config["linux"]["cgroupsPath"] = format!("{}/{id}", pod.path()).into();
        // The host's network: loopback works without setting up a namespace.
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Self { dir, id }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets (or with `None` removes) the container's seccomp profile.
    pub fn set_seccomp(&self, profile: Option<&serde_json::Value>) {
        let config_path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        match profile {
            Some(profile) => config["linux"]["seccomp"] = profile.clone(),
            None => {
                config["linux"].as_object_mut().unwrap().remove("seccomp");
            }
        }
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Sets the OCI annotations a CRI runtime would (containerd's names for the pod).
    pub fn annotate(&self, namespace: &str, pod: &str, container: &str) {
        let config_path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["annotations"] = serde_json::json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.container-name": container,
        });
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
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
