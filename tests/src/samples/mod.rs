//! The servers of the sample profiles (`deploy/profiles/`): each one Debian's package in a
//! root filesystem that `cargo xtask samples` builds (debootstrap and apt-get, cached outside
//! the repository), run by runc with Debian's own configuration plus the site in
//! `tests/samples/`, and driven from the host by one load — static files, a 404, keep-alive,
//! parallel clients, a configuration reload and a graceful stop — whose every response must be
//! the one the site defines. `cargo xtask samples` records a server under that load;
//! `tests/samples.rs` replays it under the committed profile.

pub mod http;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use syscribe::{
    files::Dir,
    profile::{
        crd::{API_VERSION, KIND, SeccompProfileDoc},
        seccomp::Seccomp,
    },
};

use crate::{
    TempDir, allowed_names,
    containers::{Bundle, PodCgroup, PodRecording, profile_of, recording_profile},
};

/// The environment variable naming the cache directory `cargo xtask samples` (and `cargo
/// xtask test`) built the root filesystems in: `<dir>/<server>/rootfs`, with the package's
/// version in `<dir>/<server>/version`.
pub const ROOTFS_ENV: &str = "SYSCRIBE_SAMPLES";

/// The annotation on a sample profile naming the Debian package and version it was recorded
/// from (`nginx=1.22.1-9+deb12u11`).
pub const ANNOTATION_PACKAGE: &str = "syscribe.dev/sample-package";

/// The servers with a sample profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Nginx,
    Httpd,
    Haproxy,
}

/// Clients at once in the parallel part of the load, each making two rounds of every request.
const CLIENTS: usize = 4;
/// The syscall-level limit of one request batch (curl's `--max-time`).
const REQUEST_TIME: Duration = Duration::from_secs(10);
/// How long a server may take to listen, to apply a reload, and to stop.
const START_TIME: Duration = Duration::from_secs(20);
const RELOAD_TIME: Duration = Duration::from_secs(20);
const STOP_TIME: Duration = Duration::from_secs(30);

/// What containerd (and so a Kubernetes pod) gives a container by default: the sample
/// servers run with exactly these, as root, without `no_new_privs` (a pod's default
/// `allowPrivilegeEscalation`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Syscalls only a runtime's setup makes: never in a profile recorded from the filter on.
const RUNTIME_SETUP_ONLY: [&str; 5] = ["pivot_root", "mount", "umount2", "sethostname", "unshare"];

impl Server {
    pub const ALL: [Self; 3] = [Self::Nginx, Self::Httpd, Self::Haproxy];

    /// The profile's name and file name (`deploy/profiles/<name>.yaml`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Httpd => "httpd",
            Self::Haproxy => "haproxy",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The container's host name.
    fn hostname(self) -> String {
        format!("{}-sample", self.name())
    }

    /// The Debian package.
    pub fn package(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Httpd => "apache2",
            Self::Haproxy => "haproxy",
        }
    }

    /// The container's command: the server in the foreground as the container images run it
    /// (Apache through Debian's envvars, as apache2ctl would).
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Nginx => &["/usr/sbin/nginx", "-g", "daemon off;"],
            Self::Httpd => &[
                "/bin/sh",
                "-c",
                ". /etc/apache2/envvars && exec /usr/sbin/apache2 -DFOREGROUND",
            ],
            Self::Haproxy => &[
                "/usr/sbin/haproxy",
                "-W",
                "-db",
                "-f",
                "/etc/haproxy/haproxy.cfg",
            ],
        }
    }

    /// The signal that makes the server reload its configuration gracefully.
    fn reload_signal(self) -> &'static str {
        match self {
            Self::Nginx => "SIGHUP",
            // apachectl -k graceful
            Self::Httpd => "SIGUSR1",
            // the master re-executes itself and replaces its worker
            Self::Haproxy => "SIGUSR2",
        }
    }

    /// The signal that stops the server gracefully (finishing what is in flight).
    fn stop_signal(self) -> &'static str {
        match self {
            Self::Nginx => "SIGQUIT",
            // apachectl -k graceful-stop
            Self::Httpd => "SIGWINCH",
            // soft stop
            Self::Haproxy => "SIGUSR1",
        }
    }

    /// Every request of one round, in order, on one connection.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Self::Nginx | Self::Httpd => &[
                "/",
                "/index.html",
                "/style.css",
                "/big.bin",
                "/missing.html",
                "/version",
            ],
            Self::Haproxy => &[
                "/",
                "/index.html",
                "/style.css",
                "/app/hello",
                "/app/big.bin",
                "/missing.html",
                "/app/missing",
                "/version",
            ],
        }
    }

    /// A syscall the server makes only once it serves requests: the replay test takes it out
    /// of the profile and the load must then fail. (Not `accept4`: denied, it makes nginx's
    /// and HAProxy's workers spin on their readable listening sockets.)
    pub fn needed_to_serve(self) -> &'static str {
        match self {
            // every static file (Debian's nginx.conf has `sendfile on`)
            Self::Nginx => "sendfile",
            // every response's head and body
            Self::Httpd => "writev",
            // to the backend
            Self::Haproxy => "connect",
        }
    }

    /// What the site answers for `path` while its configuration is `version`.
    fn expected(self, path: &str, version: &str) -> (u16, Vec<u8>) {
        if self == Self::Haproxy && path.starts_with("/app/") {
            return http::backend_answer(path);
        }
        match path {
            "/" | "/index.html" => (200, INDEX.to_vec()),
            "/style.css" => (200, STYLE.to_vec()),
            "/big.bin" => (200, big_body(BIG_SEED)),
            "/version" => (200, format!("{version}\n").into_bytes()),
            _ => (404, NOT_FOUND.to_vec()),
        }
    }

    /// The configuration files (path in the root filesystem, text) for `version`.
    fn config(self, port: u16, backend: u16, version: &str) -> Vec<(&'static str, String)> {
        let fill = |template: &str| {
            template
                .replace("@PORT@", &port.to_string())
                .replace("@BACKEND@", &backend.to_string())
                .replace("@VERSION@", version)
        };
        match self {
            Self::Nginx => vec![(
                "etc/nginx/sites-enabled/default",
                fill(include_str!("../../samples/nginx/default")),
            )],
            Self::Httpd => vec![
                (
                    "etc/apache2/ports.conf",
                    fill(include_str!("../../samples/httpd/ports.conf")),
                ),
                (
                    "etc/apache2/sites-enabled/000-default.conf",
                    fill(include_str!("../../samples/httpd/000-default.conf")),
                ),
            ],
            Self::Haproxy => vec![(
                "etc/haproxy/haproxy.cfg",
                fill(include_str!("../../samples/haproxy/haproxy.cfg")),
            )],
        }
    }

    /// Directories the server expects that a Debian system makes at boot (`/run` is a tmpfs).
    fn run_dirs(self) -> &'static [&'static str] {
        match self {
            Self::Nginx => &[],
            Self::Httpd => &["run/apache2", "run/lock/apache2"],
            Self::Haproxy => &["run/haproxy"],
        }
    }

    /// The load in words, for the profile's header.
    pub fn load_description(self) -> String {
        format!(
            "TCP probes until it listens; one keep-alive connection GETting {} (a 404 among them, \
             bodies compressed where the server compresses); {CLIENTS} clients at once, each \
             doing that twice; a configuration reload ({}) that switches /version from v1 to v2, \
             then the round again; a graceful stop ({}) — every status and body checked",
            self.paths().join(" "),
            self.reload_signal(),
            self.stop_signal(),
        )
    }
}

const INDEX: &[u8] = include_bytes!("../../samples/site/index.html");
const STYLE: &[u8] = include_bytes!("../../samples/site/style.css");
const NOT_FOUND: &[u8] = include_bytes!("../../samples/site/404.html");
const BIG_SEED: u64 = 0x5eed_0001;

/// 256 KiB of deterministic bytes (xorshift64*) that do not compress: what a large static
/// file exercises (sendfile, or reads and writes in pieces).
pub fn big_body(seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(256 * 1024);
    while out.len() < 256 * 1024 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out
}

/// A server's root filesystem in the cache, and the version of its package there.
pub struct Rootfs {
    pub path: PathBuf,
    pub version: String,
}

/// The root filesystem `cargo xtask` built for `server` (see [`ROOTFS_ENV`]).
pub fn rootfs(server: Server) -> Rootfs {
    let dir = std::env::var_os(ROOTFS_ENV).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{ROOTFS_ENV} is not set: run these tests with `cargo xtask test`, which builds the \
             sample servers' root filesystems (or `cargo xtask samples --rootfs-only` and set \
             {ROOTFS_ENV} to the directory it prints)"
        )
    });
    let version_file = dir.join(server.name()).join("version");
    let version = std::fs::read_to_string(&version_file).unwrap_or_else(|err| {
        panic!(
            "{}: {err}: the {} root filesystem is not (completely) built; `cargo xtask samples \
             --rootfs-only {}` builds it",
            version_file.display(),
            server.package(),
            server.name()
        )
    });
    Rootfs {
        path: dir.join(server.name()).join("rootfs"),
        version: version.trim().to_owned(),
    }
}

/// One run of a server in a runc container over a cached root filesystem.
pub struct Sample {
    server: Server,
    bundle: Bundle,
    port: u16,
    backend: Option<http::Backend>,
    scratch: TempDir,
    request_time: Duration,
}

/// A run that answered every request as the site defines and stopped by itself.
pub struct Served {
    /// Requests answered as they must be (readiness probes and reload polls not counted).
    pub requests: usize,
    /// The container's own output (runc's stdout and stderr).
    pub output: Output,
}

impl Sample {
    /// A container of `server` over `rootfs` in `pod`'s cgroup, under the seccomp profile
    /// `seccomp` (OCI JSON), its site and configuration (v1) in place.
    pub fn new(
        server: Server,
        rootfs: &Path,
        pod: &PodCgroup,
        seccomp: &serde_json::Value,
    ) -> Self {
        let bundle = Bundle::over(rootfs, pod, server.args());
        bundle.set_seccomp(Some(seccomp));
        bundle.edit(|config| {
            let caps = serde_json::json!(DEFAULT_CAPABILITIES);
            config["process"]["capabilities"] = serde_json::json!({
                "bounding": caps, "effective": caps, "permitted": caps,
            });
            config["process"]["noNewPrivileges"] = false.into();
            config["hostname"] = server.hostname().into();
        });
        let backend = (server == Server::Haproxy).then(http::Backend::start);
        let sample = Self {
            server,
            port: http::free_port(),
            backend,
            scratch: TempDir::new(&format!("sample-{}-{}", server.name(), &bundle.id[..12])),
            bundle,
            request_time: REQUEST_TIME,
        };
        sample.install_site();
        sample.configure("v1");
        sample
    }

    /// How long one round of requests may take (default 10 s): a run expected to fail need
    /// not wait that long.
    pub fn with_request_time(mut self, limit: Duration) -> Self {
        self.request_time = limit;
        self
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    fn root(&self) -> PathBuf {
        self.bundle.rootfs()
    }

    /// Writes `rel` (a path in the root filesystem) through directory handles that follow no
    /// link, so that nothing in the root filesystem (`/var/run -> /run`, Debian's
    /// `sites-enabled` links) sends a write outside it; a link at `rel` itself is replaced.
    fn put(&self, rel: &str, bytes: &[u8]) {
        let (parent, name) = rel.rsplit_once('/').expect("a path below a directory");
        let dir = Dir::open_below(&self.root(), Path::new(parent), true)
            .unwrap_or_else(|err| panic!("{parent} in the root filesystem: {err}"));
        dir.remove(name)
            .and_then(|_| dir.write_atomically(name, bytes, false))
            .unwrap_or_else(|err| panic!("writing {rel} in the root filesystem: {err}"));
    }

    fn install_site(&self) {
        for (name, bytes) in [
            ("index.html", INDEX),
            ("style.css", STYLE),
            ("404.html", NOT_FOUND),
        ] {
            self.put(&format!("var/www/html/{name}"), bytes);
        }
        self.put("var/www/html/big.bin", &big_body(BIG_SEED));
        for version in ["v1", "v2"] {
            self.put(
                &format!("var/www/version/{version}.txt"),
                format!("{version}\n").as_bytes(),
            );
        }
        // As a pod's: the container's host name is in its hosts file (kubelet writes one), and
        // a name lookup never leaves the machine.
        self.put(
            "etc/hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n",
                self.server.hostname()
            )
            .as_bytes(),
        );
        self.put("etc/resolv.conf", b"nameserver 127.0.0.1\n");
        for dir in self.server.run_dirs() {
            Dir::open_below(&self.root(), Path::new(dir), true)
                .unwrap_or_else(|err| panic!("{dir} in the root filesystem: {err}"));
        }
    }

    fn configure(&self, version: &str) {
        let backend = self.backend.as_ref().map_or(0, |b| b.port);
        for (rel, text) in self.server.config(self.port, backend, version) {
            self.put(rel, text.as_bytes());
        }
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let out = Command::new("runc")
            .args(["kill", &self.bundle.id, signal])
            .output()
            .map_err(|e| format!("runc kill: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "runc kill {signal}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// One round of every request on one connection, each checked against the site.
    fn round(&self, client: &str, version: &str) -> Result<usize, String> {
        let paths = self.server.paths();
        let responses = http::get(
            self.port,
            paths,
            &self.scratch.join(client),
            self.request_time,
        )?;
        for (i, response) in responses.iter().enumerate() {
            let (status, body) = self.server.expected(&response.path, version);
            if response.status != status || response.body != body {
                return Err(format!(
                    "{client}: GET {} answered {} with {} bytes ({:?}…); the site answers {status} with {} bytes",
                    response.path,
                    response.status,
                    response.body.len(),
                    String::from_utf8_lossy(&response.body[..response.body.len().min(120)]),
                    body.len(),
                ));
            }
            let connects = u32::from(i == 0);
            if response.connects != connects {
                return Err(format!(
                    "{client}: GET {} opened {} connections; keep-alive means {connects}",
                    response.path, response.connects
                ));
            }
        }
        Ok(responses.len())
    }

    /// The whole load on a running container; returns the requests answered.
    fn load(&self, runner: &std::thread::JoinHandle<Output>) -> Result<usize, String> {
        http::wait_listening(self.port, START_TIME)?;
        let mut requests = self.round("first", "v1")?;
        requests += std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    scope.spawn(move || {
                        let name = format!("client{c}");
                        Ok::<_, String>(self.round(&name, "v1")? + self.round(&name, "v1")?)
                    })
                })
                .collect();
            clients
                .into_iter()
                .map(|c| c.join().expect("client thread"))
                .sum::<Result<usize, String>>()
        })?;

        self.configure("v2");
        self.signal(self.server.reload_signal())?;
        let deadline = Instant::now() + RELOAD_TIME;
        loop {
            let got = http::get(
                self.port,
                &["/version"],
                &self.scratch.join("reload"),
                self.request_time,
            )?;
            if got[0].status == 200 && got[0].body == b"v2\n" {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the reload ({}) was not applied within {RELOAD_TIME:?}: /version still {} {:?}",
                    self.server.reload_signal(),
                    got[0].status,
                    String::from_utf8_lossy(&got[0].body)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        requests += self.round("after-reload", "v2")?;

        self.signal(self.server.stop_signal())?;
        let deadline = Instant::now() + STOP_TIME;
        while !runner.is_finished() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not stop within {STOP_TIME:?} of {}",
                    self.server.name(),
                    self.server.stop_signal()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(requests)
    }

    /// Runs the container and the whole load. Err names the first thing that was not as the
    /// site defines (with the container's output); the container is gone either way.
    pub fn serve(&self) -> Result<Served, String> {
        let runner = self.bundle.spawn_run("runc");
        let loaded = self.load(&runner);
        if !runner.is_finished() {
            let _ = Command::new("runc")
                .args(["delete", "--force", &self.bundle.id])
                .output();
        }
        let output = runner.join().expect("the runc thread");
        let said = || {
            format!(
                "\ncontainer stdout:\n{}\ncontainer stderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        };
        match loaded {
            Ok(_) if !output.status.success() => Err(format!(
                "{} stopped with {} after its graceful stop{}",
                self.server.name(),
                output.status,
                said()
            )),
            Ok(requests) => Ok(Served { requests, output }),
            Err(err) => Err(format!("{err}{}", said())),
        }
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        // A run a panic interrupted: its container goes before its bundle.
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.bundle.id])
            .output();
    }
}

/// Records `server` under the load (in a pod's cgroup, from the container's first seccomp
/// filter on); returns the container's profile as syscribe wrote it (OCI JSON).
pub fn record(server: Server, rootfs: &Path) -> Result<(serde_json::Value, Served), String> {
    let pod = PodCgroup::new();
    let out = TempDir::new(&format!("sample-record-{}", server.name()));
    let recording = PodRecording::start(&pod, out.path());
    let sample = Sample::new(server, rootfs, &pod, &recording_profile());
    let served = sample.serve();
    let profile = served
        .is_ok()
        .then(|| profile_of(out.path(), sample.bundle()));
    drop(sample);
    let log = recording.stop();
    let served = served?;
    let profile = profile.expect("a profile when the load succeeded");
    let problems: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    if !problems.is_empty() {
        return Err(format!("syscribe warned while recording: {problems:#?}"));
    }
    // `filterSeen: true` today; `boundary.kind: filter` once the Unconfined boundary exists.
    let container = &profile["syscribe"]["container"];
    if container["filterSeen"] != true && container["boundary"]["kind"] != "filter" {
        return Err(format!(
            "the recording did not start at the container's seccomp filter: {}",
            profile["syscribe"]
        ));
    }
    let names = allowed_names(&profile);
    if let Some(setup) = RUNTIME_SETUP_ONLY.iter().find(|s| names.contains(**s)) {
        return Err(format!(
            "runtime setup syscall {setup} in the profile: {names:?}"
        ));
    }
    Ok((profile, served))
}

/// What the profile's header says about where it came from.
pub struct Provenance<'a> {
    pub package_version: &'a str,
    /// The Debian release (`bookworm`).
    pub suite: &'a str,
    /// The day of the recording (`2026-11-30`).
    pub date: &'a str,
}

/// The committed form of a recorded profile: an upstream SeccompProfile named after the
/// server, with a header saying where it came from and how to make it again.
pub fn profile_document(
    server: Server,
    recorded: &serde_json::Value,
    provenance: &Provenance<'_>,
) -> Result<String, String> {
    let seccomp: Seccomp = serde_json::from_value(recorded.clone())
        .map_err(|e| format!("syscribe's profile does not read back: {e}"))?;
    let mut doc = SeccompProfileDoc::from_recorded(server.name().to_owned(), &seccomp);
    doc.metadata.annotations.insert(
        ANNOTATION_PACKAGE.to_owned(),
        format!("{}={}", server.package(), provenance.package_version),
    );
    debug_assert_eq!(
        (doc.api_version.as_str(), doc.kind.as_str()),
        (API_VERSION, KIND)
    );
    let yaml = serde_yaml::to_string(&doc).map_err(|e| format!("YAML: {e}"))?;
    let count = seccomp
        .syscalls
        .iter()
        .map(|r| r.names.len())
        .sum::<usize>();
    let handoff = recorded["syscribe"]["container"]["runtimeHandoff"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let mut header = vec![
        format!(
            "{} {} (Debian {}, amd64): {count} syscalls, recorded {} by `syscribe record --cgroup`.",
            server.package(),
            provenance.package_version,
            provenance.suite,
            provenance.date
        ),
        String::new(),
        format!(
            "Recorded in a runc container built from Debian's packages (debootstrap --variant=minbase, then apt-get install {}), running `{}` with Debian's own configuration and the site in tests/samples/, as root with containerd's default capabilities and without no_new_privs (a pod's defaults), on the host's network.",
            server.package(),
            server.args().join(" ")
        ),
        format!("Load: {}.", server.load_description()),
        "The recording started at the container's seccomp filter (an allow-all profile, as a pod under RuntimeDefault or a recording profile has one), so none of runc's setup is in it; what runc does after its filter is, and so is its Go hand-off set (futex, tgkill…) whether seen or not.".to_owned(),
    ];
    if !handoff.is_empty() {
        header.push(format!(
            "Of that hand-off set this run did not make: {handoff}."
        ));
    }
    header.extend([
        String::new(),
        "Capabilities: NOT RECORDED YET — Syscribe cannot yet say which capabilities a container uses (capability recording is being built, issue 17). This run had containerd's default set; re-record once capability recording exists to have the set it needs here.".to_owned(),
        String::new(),
        format!(
            "Re-record (as root; rebuilds the root filesystem with --rebuild, another Debian release with --suite): cargo xtask samples {}",
            server.name()
        ),
        format!(
            "Use: kubectl apply -f deploy/profiles/{}.yaml, then securityContext.seccompProfile {{type: Localhost, localhostProfile: operator/{}.json}}.",
            server.name(),
            server.name()
        ),
    ]);
    let mut text = String::new();
    for line in header {
        for wrapped in wrap(&line, 96) {
            text.push_str("# ");
            text.push_str(&wrapped);
            text.push('\n');
        }
        if line.is_empty() {
            text.push_str("#\n");
        }
    }
    text.push_str(&yaml);
    Ok(text)
}

/// `line` cut at spaces into lines of at most `width` characters (a longer word stays whole).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in line.split(' ').filter(|w| !w.is_empty()) {
        if !current.is_empty() && current.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_wrapped_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("a-very-long-word x", 4), ["a-very-long-word", "x"]);
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn every_server_has_a_name_that_finds_it() {
        for server in Server::ALL {
            assert_eq!(Server::from_name(server.name()), Some(server));
        }
        assert_eq!(Server::from_name("apache2"), None);
    }

    #[test]
    fn the_large_file_is_deterministic_and_256_kib() {
        assert_eq!(big_body(1), big_body(1));
        assert_ne!(big_body(1), big_body(2));
        assert_eq!(big_body(1).len(), 256 * 1024);
    }
}
