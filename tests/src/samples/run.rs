//! One run of a sample server: its container, its site, and the load checked response by
//! response.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use syscribe::files::Dir;

use super::{
    BIG_SEED, CLIENTS, DEFAULT_CAPABILITIES, INDEX, NOT_FOUND, RELOAD_TIME, REQUEST_TIME,
    START_TIME, STOP_TIME, STYLE, Server, big_body, http,
};
use crate::{
    TempDir,
    containers::{Bundle, PodCgroup},
};

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
    /// `seccomp` (OCI JSON; `None`: Unconfined, a pod's default), as root with containerd's
    /// default capabilities, its site and configuration (v1) in place.
    pub fn new(
        server: Server,
        rootfs: &Path,
        pod: &PodCgroup,
        seccomp: Option<&serde_json::Value>,
    ) -> Self {
        let bundle = Bundle::over(rootfs, pod, server.args());
        bundle.set_seccomp(seccomp);
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

    /// Only `capabilities` (`CAP_*` names) instead of containerd's defaults: every other one
    /// dropped, as `securityContext.capabilities` {drop: [ALL], add: [...]} does.
    pub fn with_capabilities(self, capabilities: &[String]) -> Self {
        self.bundle.edit(|config| {
            let caps = serde_json::json!(capabilities);
            config["process"]["capabilities"] = serde_json::json!({
                "bounding": caps, "effective": caps, "permitted": caps,
            });
        });
        self
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
