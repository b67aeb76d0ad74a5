//! `cargo xtask cluster up | down | status` and `cargo xtask kubectl ARGS…`: a real single-node
//! Kubernetes on this machine, built from source (see `build`), with its own PKI, RBAC, the
//! admission plugins a production cluster has, containerd running runc (and crun for the
//! RuntimeClass `crun`), CNI bridge networking and kube-proxy. Each component logs to
//! `/var/log/syscribe-cluster/<component>.log`.

pub mod build;
mod config;
mod down;
pub mod image;
mod pki;

use std::{
    fs,
    net::IpAddr,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{run, stdout_of, workspace_root};
use config::{API_PORT, KUBERNETES_SERVICE_IP, Node};
pub use down::{down, leftovers};
use image::{Entry, Image, Rootfs};
use pki::{Identity, Pki};

/// PKI, configuration, etcd data and pids; removed by `down`.
pub const STATE_DIR: &str = "/var/lib/syscribe-cluster";
/// One log per component; kept after `down` (the next `up` truncates them).
pub const LOG_DIR: &str = "/var/log/syscribe-cluster";

/// The components in start order (`down` stops them in reverse).
pub const COMPONENTS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
];

/// What the tests and users need to reach a running cluster.
pub struct Cluster {
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
    pub node: String,
    /// The images imported into containerd: (what, reference).
    pub images: Vec<(&'static str, String)>,
}

impl Cluster {
    /// The running cluster's handles (after `up`, from another process).
    pub fn running() -> Result<Self> {
        let cache = build::Cache::for_pins(&build::Pins::load()?)?;
        let dir = Path::new(STATE_DIR);
        let images = fs::read_to_string(dir.join("images"))
            .context("no cluster is up (run `cargo xtask cluster up`)")?;
        Ok(Self {
            kubectl: cache.bin().join("kubectl"),
            kubeconfig: dir.join("pki/admin.kubeconfig"),
            node: fs::read_to_string(dir.join("node"))?.trim().to_owned(),
            images: images
                .lines()
                .filter_map(|l| {
                    let (what, reference) = l.split_once('=')?;
                    let what = ["pause", "workload", "syscribe"]
                        .into_iter()
                        .find(|w| *w == what)?;
                    Some((what, reference.to_owned()))
                })
                .collect(),
        })
    }

    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Environment for the cluster tests.
    pub fn test_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "SYSCRIBE_KUBECTL".into(),
                self.kubectl.display().to_string(),
            ),
            ("KUBECONFIG".into(), self.kubeconfig.display().to_string()),
            ("SYSCRIBE_NODE".into(), self.node.clone()),
            ("SYSCRIBE_CLUSTER_LOGS".into(), LOG_DIR.into()),
            // The components' pids (`pids/<component>`): a test restarts the API server.
            ("SYSCRIBE_CLUSTER_STATE".into(), STATE_DIR.into()),
        ];
        for (what, reference) in &self.images {
            env.push((
                format!("SYSCRIBE_IMAGE_{}", what.to_uppercase()),
                reference.clone(),
            ));
        }
        env
    }
}

/// Builds what is missing (binaries, images) and starts every component; waits until the node
/// is Ready and the default ServiceAccount exists. Fails if a cluster is already running.
pub fn up(syscribe: &Path) -> Result<Cluster> {
    let started = Instant::now();
    let pins = build::Pins::load()?;
    let cache = build::ensure_built(&pins)?;
    if let Some(running) = COMPONENTS.iter().find(|c| pid_of(c).is_some()) {
        bail!("{running} is already running: `cargo xtask cluster down` first");
    }
    let rest = leftovers(&cache.bin());
    if !rest.is_empty() {
        bail!(
            "this machine still has a cluster's leftovers (`cargo xtask cluster down` removes them):\n  {}",
            rest.join("\n  ")
        );
    }
    let dir = Path::new(STATE_DIR);
    for d in [dir.join("pids"), dir.join("cni"), PathBuf::from(LOG_DIR)] {
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let ip = node_ip()?;
    let name = node_name()?;
    fs::write(dir.join("node"), &name)?;
    host_settings(dir)?;

    let images = build_images(syscribe, &dir.join("images.d"))?;
    let pause = images[0].1.clone();
    let node = Node {
        name: &name,
        ip,
        dir,
        bin: &cache.bin(),
        pause_image: &pause,
    };
    let pki = make_pki(&node)?;
    fs::write(dir.join("kubelet.yaml"), node.kubelet_config())?;
    fs::write(dir.join("kube-proxy.yaml"), node.kube_proxy_config())?;
    fs::write(dir.join("containerd.toml"), node.containerd_config())?;
    fs::write(dir.join("crun"), Node::crun_wrapper())?;
    fs::set_permissions(dir.join("crun"), fs::Permissions::from_mode(0o755))?;
    fs::write(dir.join("cni/10-syscribe.conflist"), node.cni_config())?;

    let cluster = Cluster {
        kubectl: cache.bin().join("kubectl"),
        kubeconfig: pki.path("admin.kubeconfig"),
        node: name.clone(),
        images: images.iter().map(|(w, a)| (*w, a.clone())).collect(),
    };
    let bin = cache.bin();
    start(&bin, "etcd", &node.etcd_args())?;
    let ca = pki.path("ca.crt");
    wait_for("etcd", Duration::from_secs(30), || {
        Ok(Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(pki.path("apiserver-etcd-client.crt"))
            .arg("--key")
            .arg(pki.path("apiserver-etcd-client.key"))
            .arg("https://127.0.0.1:2379/health")
            .output()?
            .status
            .success())
    })?;
    start(&bin, "kube-apiserver", &node.apiserver_args())?;
    wait_for("kube-apiserver", Duration::from_secs(90), || {
        Ok(cluster
            .kubectl()
            .args(["get", "--raw", "/readyz"])
            .output()?
            .status
            .success())
    })?;
    start(
        &bin,
        "kube-controller-manager",
        &node.controller_manager_args(),
    )?;
    start(&bin, "kube-scheduler", &node.scheduler_args())?;
    start_with_path(
        &bin,
        "containerd",
        &[
            "--config".into(),
            dir.join("containerd.toml").display().to_string(),
        ],
    )?;
    let ctr = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("ctr"));
        cmd.args([
            "--address",
            config::CONTAINERD_SOCKET,
            "--namespace",
            "k8s.io",
        ])
        .args(args);
        cmd
    };
    wait_for("containerd", Duration::from_secs(30), || {
        Ok(ctr(&["version"]).output()?.status.success())
    })?;
    for (what, archive) in &images {
        let path = dir.join("images.d").join(format!("{what}.oci.tar"));
        run(ctr(&["images", "import", "--platform", "linux/amd64"]).arg(&path))
            .with_context(|| format!("importing the {what} image {archive}"))?;
    }
    start_with_path(&bin, "kubelet", &node.kubelet_args())?;
    wait_for("kubelet", Duration::from_secs(120), || {
        let out = cluster
            .kubectl()
            .args(["get", "node", &name, "-o"])
            .arg("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
            .output()?;
        Ok(out.status.success() && out.stdout == b"True")
    })?;
    start_with_path(
        &bin,
        "kube-proxy",
        &[format!(
            "--config={}",
            dir.join("kube-proxy.yaml").display()
        )],
    )?;
    wait_for("kube-proxy", Duration::from_secs(60), || {
        Ok(Command::new("curl")
            .args(["-sf", "http://127.0.0.1:10256/healthz"])
            .output()?
            .status
            .success())
    })?;
    apply_stdin(&cluster, RUNTIME_CLASS)?;
    wait_for(
        "the default ServiceAccount",
        Duration::from_secs(60),
        || {
            Ok(cluster
                .kubectl()
                .args(["get", "serviceaccount", "default", "-n", "default"])
                .output()?
                .status
                .success())
        },
    )?;
    let images_text: String = images
        .iter()
        .map(|(what, reference)| format!("{what}={reference}\n"))
        .collect();
    fs::write(dir.join("images"), images_text)?;
    eprintln!(
        "xtask: cluster up in {:.1} s: node {name} ({ip}), API https://127.0.0.1:{API_PORT}, kubeconfig {}",
        started.elapsed().as_secs_f64(),
        cluster.kubeconfig.display()
    );
    Ok(cluster)
}

const RUNTIME_CLASS: &str =
    "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: crun}\nhandler: crun\n";

fn apply_stdin(cluster: &Cluster, yaml: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running kubectl apply")?;
    child
        .stdin
        .take()
        .context("kubectl's stdin")?
        .write_all(yaml.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("kubectl apply of\n{yaml}\nfailed: {status}");
    }
    Ok(())
}

/// Prints each component's state, the node and the images.
pub fn status() -> Result<()> {
    let pins = build::Pins::load()?;
    let cache = build::Cache::for_pins(&pins)?;
    println!(
        "binaries: {} ({})",
        cache.bin().display(),
        if cache.complete() {
            "built"
        } else {
            "not built yet"
        }
    );
    if let Some(times) = build::built_in(&cache.dir) {
        println!("build times (s):\n  {}", times.trim().replace('\n', "\n  "));
    }
    for component in COMPONENTS {
        match pid_of(component) {
            Some(pid) => println!("{component:<24} running (pid {pid})"),
            None => println!("{component:<24} stopped"),
        }
    }
    if pid_of("kube-apiserver").is_some() {
        let cluster = Cluster::running()?;
        run(cluster.kubectl().args(["get", "nodes", "-o", "wide"]))?;
        for (what, reference) in &cluster.images {
            println!("image {what:<9} {reference}");
        }
    }
    Ok(())
}

/// `kubectl ARGS…` against the running cluster, as its administrator.
pub fn kubectl(args: &[String]) -> Result<()> {
    let cluster = Cluster::running()?;
    let status = cluster
        .kubectl()
        .args(args)
        .status()
        .context("running kubectl")?;
    std::process::exit(status.code().unwrap_or(1));
}

fn make_pki(node: &Node) -> Result<Pki> {
    let pki = Pki::create(&node.dir.join("pki"))?;
    let localhost: IpAddr = "127.0.0.1".parse()?;
    let service: IpAddr = KUBERNETES_SERVICE_IP.parse()?;
    let client = |file: &'static str, cn: &str, org: Option<&'static str>| Identity {
        file,
        common_name: cn.to_owned(),
        organization: org,
        dns: vec![],
        ips: vec![],
    };
    let identities = [
        Identity {
            file: "apiserver",
            common_name: "kube-apiserver".into(),
            organization: None,
            dns: [
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
                node.name,
            ]
            .map(String::from)
            .to_vec(),
            ips: vec![localhost, node.ip, service],
        },
        Identity {
            file: "etcd-server",
            common_name: "etcd".into(),
            organization: None,
            dns: vec!["localhost".into()],
            ips: vec![localhost],
        },
        Identity {
            file: "kubelet-server",
            common_name: node.name.to_owned(),
            organization: None,
            dns: vec![node.name.to_owned()],
            ips: vec![node.ip, localhost],
        },
        client("apiserver-etcd-client", "kube-apiserver-etcd-client", None),
        client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        ),
        client("admin", "syscribe-admin", Some("system:masters")),
        client(
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
        ),
        client("kube-scheduler", "system:kube-scheduler", None),
        client(
            "kubelet",
            &format!("system:node:{}", node.name),
            Some("system:nodes"),
        ),
        client("kube-proxy", "system:kube-proxy", None),
    ];
    for who in &identities {
        pki.issue(who)?;
    }
    let local = format!("https://127.0.0.1:{API_PORT}");
    let on_node = format!("https://{}:{API_PORT}", node.ip);
    for who in ["admin", "kube-controller-manager", "kube-scheduler"] {
        pki.kubeconfig(who, &local)?;
    }
    for who in ["kubelet", "kube-proxy"] {
        pki.kubeconfig(who, &on_node)?;
    }
    Ok(pki)
}

/// The pause, workload and Syscribe images, as OCI archives in `dir`: (what, reference).
fn build_images(syscribe: &Path, dir: &Path) -> Result<Vec<(&'static str, String)>> {
    fs::create_dir_all(dir)?;
    let pause_bin = dir.join("pause");
    run(Command::new("cc")
        .args(["-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&pause_bin)
        .arg(workspace_root().join("xtask/cluster/pause.c")))
    .context("compiling the pause program (gcc and glibc's static libc)")?;
    let mut pause = Rootfs::default();
    pause.copy(&pause_bin, "/pause")?;
    let mut workload = Rootfs::default();
    workload.busybox()?;
    workload.accounts();
    let rootfs = syscribe_rootfs(syscribe)?;
    let images = [
        (
            "pause",
            Image {
                name: "localhost/syscribe/pause".into(),
                rootfs: pause,
                entrypoint: vec!["/pause".into()],
                cmd: vec![],
            },
        ),
        (
            "workload",
            Image {
                name: "localhost/syscribe/busybox".into(),
                rootfs: workload,
                entrypoint: vec![],
                cmd: vec!["sh".into()],
            },
        ),
        (
            "syscribe",
            Image {
                name: "localhost/syscribe/syscribe".into(),
                rootfs,
                entrypoint: vec!["/usr/local/bin/syscribe".into()],
                cmd: vec!["daemon".into()],
            },
        ),
    ];
    let mut out = Vec::new();
    for (what, image) in images {
        let archive = image.write(dir)?;
        let target = dir.join(format!("{what}.oci.tar"));
        if archive.path != target {
            fs::rename(&archive.path, &target)?;
        }
        out.push((what, archive.reference));
    }
    Ok(out)
}

/// The Syscribe image's files: the binary at /usr/local/bin/syscribe, the shared libraries
/// it loads (libseccomp, glibc), the SELinux tools it runs on SELinux nodes
/// ([`SELINUX_TOOLS`]), account files and /tmp. `deploy/Containerfile`'s image holds the same
/// files: its build stage runs `cargo xtask rootfs` and copies that into `scratch`.
pub fn syscribe_rootfs(syscribe: &Path) -> Result<Rootfs> {
    let mut rootfs = Rootfs::default();
    rootfs.copy_executable(syscribe, "/usr/local/bin/syscribe")?;
    for tool in SELINUX_TOOLS {
        let host = Path::new("/usr/sbin").join(tool);
        rootfs
            .copy_executable(&host, &format!("/usr/sbin/{tool}"))
            .with_context(|| {
                format!("{tool} (policycoreutils; `cargo xtask setup` installs it)")
            })?;
    }
    // libsemanage runs its helpers as /sbin/<tool> (Debian's build), other builds' semanage.conf
    // name /usr/sbin/<tool>: both resolve, as on a merged-/usr host.
    rootfs.add("/sbin", Entry::Symlink("usr/sbin".into()));
    rootfs.accounts();
    Ok(rootfs)
}

/// What installing or removing an SELinux module in the node's store executes (seen with
/// strace, `semodule -i x.cil` with and without `-p ROOT -n`, libsemanage 3.4): semodule itself,
/// then setfiles (checks the new file contexts against the policy) and sefcontext_compile
/// (twice: file_contexts.bin and file_contexts.homedirs.bin). libsemanage checks for
/// load_policy at every connection and runs it after a commit when SELinux is on (selinuxfs
/// mounted read-write). Everything else it reads is the node's store (/etc/selinux,
/// /var/lib/selinux) and the image's /etc/passwd (genhomedircon).
pub const SELINUX_TOOLS: [&str; 4] = ["semodule", "setfiles", "sefcontext_compile", "load_policy"];

/// Starts a component in its own session with its output in its log; records its pid.
fn start(bin: &Path, name: &str, args: &[String]) -> Result<()> {
    spawn(Command::new(bin.join(name)).args(args), name)
}

/// As `start`, with the cluster's binaries first on PATH (containerd finds its shim there,
/// the kubelet finds nothing of ours but keeps the same PATH).
fn start_with_path(bin: &Path, name: &str, args: &[String]) -> Result<()> {
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin.display()
    );
    spawn(
        Command::new(bin.join(name)).args(args).env("PATH", path),
        name,
    )
}

fn spawn(cmd: &mut Command, name: &str) -> Result<()> {
    let log_path = Path::new(LOG_DIR).join(format!("{name}.log"));
    let log = create_file(&log_path)?;
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    fs::write(
        Path::new(STATE_DIR).join("pids").join(name),
        child.id().to_string(),
    )?;
    Ok(())
}

/// Creates or truncates a file of ours as root without following a link planted at its name.
pub fn create_file(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("creating {} (a link there is refused)", path.display()))
}

/// The pid of a component this state directory started, if it is still that process.
pub fn pid_of(name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(Path::new(STATE_DIR).join("pids").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    (exe.file_name()? == name).then_some(pid)
}

/// Polls `ready` every 200 ms until it says yes; on timeout or if the component died, fails
/// with the tail of its log.
fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    let component = what.split_whitespace().next().unwrap_or(what);
    loop {
        if ready()? {
            return Ok(());
        }
        let died = COMPONENTS.contains(&component) && pid_of(component).is_none();
        if died || started.elapsed() > timeout {
            bail!(
                "{what} {} after {:.0} s; the end of its log:\n{}",
                if died { "exited" } else { "was not ready" },
                started.elapsed().as_secs_f64(),
                log_tail(component, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `lines` lines of a component's log.
pub fn log_tail(component: &str, lines: usize) -> String {
    let path = Path::new(LOG_DIR).join(format!("{component}.log"));
    match fs::read_to_string(&path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// The node's own address: the first global IPv4 address (the kubelet refuses loopback).
fn node_ip() -> Result<IpAddr> {
    let out = stdout_of(Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]))?;
    out.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .context("this machine has no global IPv4 address for the node")
}

fn node_name() -> Result<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        bail!("the hostname {name:?} is not a valid node name");
    }
    Ok(name)
}

/// Forwarding and bridge netfilter (pods reach Services through kube-proxy's rules), the bpf
/// filesystem, and `hugetlb` as a v1 hierarchy (crun refuses this hybrid layout otherwise). What was changed
/// is written down so that `down` puts it back.
fn host_settings(dir: &Path) -> Result<()> {
    let mut undo = String::new();
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        let path = Path::new("/proc/sys").join(key);
        let old =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if old.trim() != value {
            undo.push_str(&format!("sysctl {key} {}\n", old.trim()));
            fs::write(&path, value).with_context(|| format!("setting {}", path.display()))?;
        }
    }
    // Real nodes have the bpf filesystem at /sys/fs/bpf (systemd mounts it); the DaemonSet pins
    // its recorder there.
    let bpffs = Path::new(down::BPFFS);
    if !is_mount_point(bpffs)? {
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(bpffs))
            .context("mounting the bpf filesystem at /sys/fs/bpf")?;
        undo.push_str("umount-bpffs\n");
    }
    let hugetlb = Path::new(down::HUGETLB_V1);
    if !is_mount_point(hugetlb)? {
        fs::create_dir_all(hugetlb)?;
        run(Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup"])
            .arg(hugetlb))
        .context("mounting the hugetlb v1 hierarchy crun needs on hybrid cgroups")?;
        undo.push_str("umount-hugetlb\n");
    }
    fs::write(dir.join("undo"), undo)?;
    Ok(())
}

fn is_mount_point(path: &Path) -> Result<bool> {
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let want = path.display().to_string();
    Ok(mounts
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(want.as_str())))
}

#[cfg(test)]
mod tests {
    use std::fs;

    #[test]
    fn a_link_planted_at_a_files_name_is_refused_and_its_target_untouched() {
        let dir = std::env::temp_dir().join(format!("xtask-nofollow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("precious");
        fs::write(&target, "keep me").unwrap();
        let planted = dir.join("kubelet.log");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let err = super::create_file(&planted).unwrap_err();
        assert!(
            format!("{err:#}").contains("a link there is refused"),
            "{err:#}"
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        // A plain file is created, and truncated the next time.
        let log = dir.join("etcd.log");
        fs::write(&log, "old").unwrap();
        drop(super::create_file(&log).unwrap());
        assert_eq!(fs::read_to_string(&log).unwrap(), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
