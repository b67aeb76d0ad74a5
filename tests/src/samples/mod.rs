//! The servers of the sample profiles (`deploy/profiles/`): each one Debian's package in a
//! root filesystem that `cargo xtask samples` builds (debootstrap and apt-get, cached outside
//! the repository), run by runc with Debian's own configuration plus the site in
//! `tests/samples/`, and driven from the host by one load — static files, a 404, keep-alive,
//! parallel clients, a configuration reload and a graceful stop — whose every response must be
//! the one the site defines. `cargo xtask samples` records a server under that load;
//! `tests/samples.rs` replays it under the committed profile.

pub mod http;
mod record;
mod run;

use std::{path::PathBuf, time::Duration};

pub use record::{Provenance, profile_document, record};
pub use run::{Sample, Served};

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

#[cfg(test)]
mod tests {
    use super::*;

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
