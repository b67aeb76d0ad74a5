//! `cargo xtask cluster down`: stops the cluster and removes every trace of it — processes,
//! mounts, cgroups, network interfaces, iptables rules, host settings, state — then checks
//! that nothing is left (`leftovers`), and fails naming what is.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{COMPONENTS, Cluster, STATE_DIR, config, pid_of};

/// Where `up` mounts the hugetlb v1 hierarchy when it is not one yet.
pub const HUGETLB_V1: &str = "/sys/fs/cgroup/hugetlb";
/// Where `up` mounts a bpf filesystem when none is there (real nodes have one).
pub const BPFFS: &str = "/sys/fs/bpf";

/// Directories the cluster owns (made by it, removed whole by `down`).
const OWNED_DIRS: &[&str] = &[
    config::KUBELET_DIR,
    "/var/lib/containerd",
    "/run/containerd",
    STATE_DIR,
    // The Syscribe DaemonSet's pinned recorder and its state, made on this node by the tests.
    "/sys/fs/bpf/syscribe",
    "/var/lib/syscribe",
];

/// Mounts below these are the cluster's (volumes, rootfs, sandboxes' namespaces).
const MOUNT_ROOTS: &[&str] = &[
    config::KUBELET_DIR,
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns",
];

pub fn down(bin: &Path) -> Result<()> {
    let started = Instant::now();
    drain_pods();
    for component in COMPONENTS.iter().rev() {
        if *component == "containerd" {
            // Whatever the kubelet did not stop dies with its shim, before containerd goes.
            kill_containers();
        }
        stop(component);
    }
    kill_containers();
    // kube-proxy removes its own rules; the sweep below takes what any other component left.
    if bin.join("kube-proxy").exists() {
        let _ = Command::new(bin.join("kube-proxy"))
            .args(["--cleanup", "--proxy-mode=iptables"])
            .output();
    }
    sweep_iptables();
    unmount_below(MOUNT_ROOTS);
    remove_cgroups();
    let _ = Command::new("ip")
        .args(["link", "delete", config::BRIDGE])
        .output();
    for netns in list_dir(Path::new("/run/netns")) {
        if netns
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cni-"))
        {
            let _ = fs::remove_file(netns);
        }
    }
    // The state directory holds the undo list: read it first, and remove the directories (the
    // DaemonSet's pins among them) before the bpf filesystem is unmounted.
    let undo = fs::read_to_string(Path::new(STATE_DIR).join("undo")).unwrap_or_default();
    for dir in OWNED_DIRS {
        // A mount still below (an unmount that failed) could be a pod's volume or a rootfs
        // holding the host's own paths (the DaemonSet's hostPath mounts): never delete through
        // it. The leftover check below names it instead.
        if mounts_below(&[dir]).is_empty() {
            let _ = fs::remove_dir_all(dir);
        }
    }
    undo_host_settings(&undo);
    let rest = leftovers(bin);
    if !rest.is_empty() {
        bail!("`cluster down` left these behind:\n  {}", rest.join("\n  "));
    }
    eprintln!(
        "xtask: cluster down in {:.1} s, nothing left behind",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Deletes every pod through the API (so the kubelet stops them as it would, volumes
/// unmounted, sandboxes' networks torn down by CNI) after stopping the controllers that would
/// make them again; waits at most 60 s.
fn drain_pods() {
    let (Some(_), Some(_)) = (pid_of("kube-apiserver"), pid_of("kubelet")) else {
        return;
    };
    let Ok(cluster) = Cluster::running() else {
        return;
    };
    stop("kube-controller-manager");
    let _ = cluster
        .kubectl()
        .args([
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=5",
            "--wait=false",
        ])
        .output();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = cluster
            .kubectl()
            .args(["get", "pods", "--all-namespaces", "-o", "name"])
            .output();
        if out.is_ok_and(|o| o.status.success() && o.stdout.is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("xtask: pods still there after 60 s; killing their containers");
}

/// SIGTERM, up to 15 s, then SIGKILL.
fn stop(component: &str) {
    let Some(pid) = pid_of(component) else {
        return;
    };
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid_of(component).is_some() {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
        }
        if Instant::now() > deadline + Duration::from_secs(5) {
            eprintln!("xtask: {component} (pid {pid}) does not die");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a stale pid at worst gives ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Kills every process in a pod's cgroup and every containerd shim, until none is left (5 s).
fn kill_containers() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<i32> = processes()
            .into_iter()
            .filter(|p| p.in_pod || p.exe.ends_with("containerd-shim-runc-v2"))
            .map(|p| p.pid)
            .collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            signal(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Process {
    pid: i32,
    exe: String,
    in_pod: bool,
}

fn processes() -> Vec<Process> {
    let me = std::process::id() as i32;
    list_dir(Path::new("/proc"))
        .into_iter()
        .filter_map(|dir| {
            let pid: i32 = dir.file_name()?.to_str()?.parse().ok()?;
            let cgroups = fs::read_to_string(dir.join("cgroup")).ok()?;
            let exe = fs::read_link(dir.join("exe"))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            (pid != me).then_some(Process {
                pid,
                exe,
                in_pod: cgroups.lines().any(|l| l.contains(":/kubepods")),
            })
        })
        .collect()
}

/// Deletes the rules that jump to KUBE-/CNI- chains from the built-in chains, then flushes and
/// deletes those chains, in every table, for IPv4 and IPv6.
fn sweep_iptables() {
    for tool in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle", "raw"] {
            let Ok(out) = Command::new(tool).args(["-w", "-t", table, "-S"]).output() else {
                continue;
            };
            let rules = String::from_utf8_lossy(&out.stdout);
            let ours = |name: &str| name.starts_with("KUBE-") || name.starts_with("CNI-");
            for rule in rules.lines() {
                let Some(rest) = rule.strip_prefix("-A ") else {
                    continue;
                };
                let chain = rest.split_whitespace().next().unwrap_or_default();
                if !ours(chain) && (rest.contains("KUBE-") || rest.contains("CNI-")) {
                    // `-S` prints rules shell-quoted (comments): let sh split them back.
                    let _ = Command::new("sh")
                        .arg("-c")
                        .arg(format!("{tool} -w -t {table} -D {rest}"))
                        .output();
                }
            }
            let chains: Vec<&str> = rules
                .lines()
                .filter_map(|r| r.strip_prefix("-N "))
                .map(str::trim)
                .filter(|c| ours(c))
                .collect();
            for flag in ["-F", "-X"] {
                for chain in &chains {
                    let _ = Command::new(tool)
                        .args(["-w", "-t", table, flag, chain])
                        .output();
                }
            }
        }
    }
}

fn mounts_below(roots: &[&str]) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points_below(&info, roots)
}

/// The mount points of a mountinfo table at or below `roots`, deepest first.
fn mount_points_below(info: &str, roots: &[&str]) -> Vec<String> {
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| {
            roots
                .iter()
                .any(|r| *p == *r || p.starts_with(&format!("{r}/")))
        })
        .map(|p| p.replace("\\040", " "))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    points.dedup();
    points
}

fn unmount_below(roots: &[&str]) {
    for _ in 0..3 {
        let points = mounts_below(roots);
        if points.is_empty() {
            return;
        }
        for point in points {
            let _ = Command::new("umount").args(["-l", &point]).output();
        }
    }
}

/// Every `kubepods` directory in every hierarchy, deepest first.
fn kubepods_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for hierarchy in list_dir(Path::new("/sys/fs/cgroup")) {
        let root = hierarchy.join("kubepods");
        if root.is_dir() {
            collect_dirs(&root, &mut found);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in list_dir(dir) {
        if entry.is_dir() && !entry.is_symlink() {
            collect_dirs(&entry, out);
        }
    }
}

fn remove_cgroups() {
    for _ in 0..20 {
        let dirs = kubepods_cgroups();
        if dirs.is_empty() {
            return;
        }
        for dir in dirs {
            let _ = fs::remove_dir(dir);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn undo_host_settings(undo: &str) {
    for line in undo.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["sysctl", key, value] => {
                let _ = fs::write(Path::new("/proc/sys").join(key), value);
            }
            ["umount-bpffs"] => {
                let _ = Command::new("umount").arg(BPFFS).output();
            }
            ["umount-hugetlb"] => {
                let _ = Command::new("umount").arg(HUGETLB_V1).output();
                let _ = fs::remove_dir(HUGETLB_V1);
            }
            _ => eprintln!("xtask: cannot undo {line:?}"),
        }
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// What a cluster left on this machine: its processes (binaries from `bin`, anything in a
/// pod's cgroup), mounts, cgroups, interfaces, iptables rules, directories. Empty when clean.
pub fn leftovers(bin: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let bin = bin.display().to_string();
    for p in processes() {
        if p.in_pod || p.exe.starts_with(&bin) {
            found.push(format!("process {} ({})", p.pid, p.exe));
        }
    }
    for point in mounts_below(MOUNT_ROOTS) {
        found.push(format!("mount {point}"));
    }
    if Path::new(HUGETLB_V1).exists() {
        found.push(format!("the hugetlb v1 hierarchy at {HUGETLB_V1}"));
    }
    for dir in kubepods_cgroups() {
        found.push(format!("cgroup {}", dir.display()));
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(':').nth(1).unwrap_or_default().trim();
            let name = name.split('@').next().unwrap_or_default();
            if name == config::BRIDGE || name.starts_with("veth") {
                found.push(format!("network interface {name}"));
            }
        }
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = Command::new(tool).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if !line.starts_with('#') && (line.contains("KUBE-") || line.contains("CNI-")) {
                    found.push(format!("{tool}: {line}"));
                }
            }
        }
    }
    for dir in OWNED_DIRS {
        if Path::new(dir).exists() {
            found.push(format!("directory {dir}"));
        }
    }
    for netns in list_dir(Path::new("/run/netns")) {
        if netns
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cni-"))
        {
            found.push(format!("network namespace {}", netns.display()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::mount_points_below;

    #[test]
    fn a_directory_with_a_mount_below_is_seen_as_mounted() {
        // What `down` checks before removing one of its directories (a rootfs still mounted
        // below /run/containerd would lead into the host paths bind-mounted into it).
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
90 22 0:50 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
91 90 0:30 /seccomp /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/var/lib/kubelet/seccomp rw - ext4 /dev/vda rw
92 22 0:51 / /var/lib/kubelet-other rw - tmpfs tmpfs rw
";
        assert_eq!(
            mount_points_below(info, &["/run/containerd"]),
            [
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/var/lib/kubelet/seccomp",
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            ]
        );
        // A sibling whose name only starts the same is not below.
        assert!(mount_points_below(info, &["/var/lib/kubelet"]).is_empty());
    }
}
