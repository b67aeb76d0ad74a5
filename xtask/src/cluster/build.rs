//! Builds the cluster's binaries from source, once per set of pins.
//!
//! Each component is a Go module of our own in the cache (`src/<component>/go.mod`) that
//! requires the pinned upstream module and imports the commands to build; `go mod tidy` resolves
//! it through the module proxy (sums checked against the checksum database) and `go build`
//! writes the binaries to `bin/`. The cache directory is keyed by the pins file and the Go
//! version; a `complete` marker is written last, so an interrupted build is redone.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

use crate::{run, stdout_of, workspace_root};

/// Every binary the cluster runs; `up` checks they are all there.
pub const BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
];

/// The pins of `xtask/cluster/versions.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    pub kubernetes: String,
    pub etcd: String,
    pub containerd: String,
    pub cni_plugins: String,
    /// The file's text: part of the cache key.
    text: String,
}

pub fn pins_path() -> PathBuf {
    workspace_root().join("xtask/cluster/versions.toml")
}

impl Pins {
    pub fn load() -> Result<Self> {
        let path = pins_path();
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// `key = "value"` lines; `#` comments and blank lines skipped; every key required once.
    fn parse(text: &str) -> Result<Self> {
        let mut values: [(&str, Option<String>); 4] = [
            ("kubernetes", None),
            ("etcd", None),
            ("containerd", None),
            ("cni-plugins", None),
        ];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("line {}: expected `name = \"version\"`", n + 1))?;
            let (key, value) = (key.trim(), value.trim());
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .with_context(|| format!("line {}: the version must be quoted", n + 1))?;
            if !is_semver_tag(value) {
                bail!(
                    "line {}: {key}: {value:?} is not a vMAJOR.MINOR.PATCH tag",
                    n + 1
                );
            }
            let slot = values
                .iter_mut()
                .find(|(name, _)| *name == key)
                .with_context(|| format!("line {}: unknown pin {key:?}", n + 1))?;
            if slot.1.replace(value.to_owned()).is_some() {
                bail!("line {}: {key} is pinned twice", n + 1);
            }
        }
        let [k, e, c, p] =
            values.map(|(name, v)| v.with_context(|| format!("{name} is not pinned")));
        Ok(Self {
            kubernetes: k?,
            etcd: e?,
            containerd: c?,
            cni_plugins: p?,
            text: text.to_owned(),
        })
    }

    /// The staging modules' version for this Kubernetes release: v1.36.3 → v0.36.3.
    fn staging_version(&self) -> String {
        format!("v0.{}", self.kubernetes.trim_start_matches("v1."))
    }
}

fn is_semver_tag(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the binaries of these pins live (built or not).
pub struct Cache {
    pub dir: PathBuf,
}

impl Cache {
    pub fn for_pins(pins: &Pins) -> Result<Self> {
        let go_version = stdout_of(go().arg("version"))
            .context("Go is needed to build the cluster (is `go` on PATH?)")?;
        let mut hash = Sha256::new();
        hash.update(pins.text.as_bytes());
        hash.update(go_version.trim().as_bytes());
        let key: String = hash.finalize()[..8].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        Ok(Self {
            dir: cache_root()?.join(format!("cluster-{key}")),
        })
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn complete(&self) -> bool {
        self.dir.join("complete").exists() && BINARIES.iter().all(|b| self.bin().join(b).exists())
    }
}

/// `~/.cache/syscribe` (or `$XDG_CACHE_HOME/syscribe`): outside the repository, kept between runs.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("syscribe"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/syscribe"))
}

/// One Go module of ours that builds some commands of one upstream module.
struct Component {
    name: &'static str,
    module: &'static str,
    version: String,
    /// (package, binary name)
    commands: Vec<(&'static str, &'static str)>,
    /// Extra go.mod lines (the Kubernetes staging replaces).
    extra: String,
    ldflags: String,
}

/// Builds every binary of `pins` unless the cache has them; returns the cache.
pub fn ensure_built(pins: &Pins) -> Result<Cache> {
    let cache = Cache::for_pins(pins)?;
    if cache.complete() {
        return Ok(cache);
    }
    eprintln!(
        "xtask: building the cluster (Kubernetes {}, etcd {}, containerd {}, CNI plugins {}) into {}",
        pins.kubernetes,
        pins.etcd,
        pins.containerd,
        pins.cni_plugins,
        cache.dir.display()
    );
    fs::create_dir_all(cache.bin())
        .with_context(|| format!("creating {}", cache.bin().display()))?;
    let mut times = String::new();
    let all = Instant::now();
    for component in components(pins)? {
        let started = Instant::now();
        build(&cache, &component)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("xtask: built {} in {secs:.0} s", component.name);
        let _ = writeln!(times, "{} {} {secs:.1}", component.name, component.version);
    }
    let _ = writeln!(times, "total {:.1}", all.elapsed().as_secs_f64());
    fs::write(cache.dir.join("build-times"), &times)?;
    for binary in BINARIES {
        if !cache.bin().join(binary).exists() {
            bail!("the build left no {binary} in {}", cache.bin().display());
        }
    }
    fs::write(cache.dir.join("complete"), &pins.text)?;
    Ok(cache)
}

fn components(pins: &Pins) -> Result<Vec<Component>> {
    let k8s = &pins.kubernetes;
    let minor = k8s
        .trim_start_matches("v1.")
        .split('.')
        .next()
        .unwrap_or_default();
    let k8s_ldflags = [
        format!("-X k8s.io/component-base/version.gitVersion={k8s}"),
        "-X k8s.io/component-base/version.gitMajor=1".to_owned(),
        format!("-X k8s.io/component-base/version.gitMinor={minor}"),
        "-X k8s.io/component-base/version.gitTreeState=clean".to_owned(),
        format!("-X k8s.io/client-go/pkg/version.gitVersion={k8s}"),
        "-X k8s.io/client-go/pkg/version.gitMajor=1".to_owned(),
        format!("-X k8s.io/client-go/pkg/version.gitMinor={minor}"),
    ]
    .join(" ");
    let staging = staging_replaces(pins)?;
    Ok(vec![
        Component {
            name: "kubernetes",
            module: "k8s.io/kubernetes",
            version: k8s.clone(),
            commands: vec![
                ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
                (
                    "k8s.io/kubernetes/cmd/kube-controller-manager",
                    "kube-controller-manager",
                ),
                ("k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
                ("k8s.io/kubernetes/cmd/kubelet", "kubelet"),
                ("k8s.io/kubernetes/cmd/kube-proxy", "kube-proxy"),
                ("k8s.io/kubernetes/cmd/kubectl", "kubectl"),
            ],
            extra: staging,
            ldflags: k8s_ldflags,
        },
        Component {
            name: "etcd",
            module: "go.etcd.io/etcd/server/v3",
            version: pins.etcd.clone(),
            commands: vec![("go.etcd.io/etcd/server/v3", "etcd")],
            extra: String::new(),
            ldflags: String::new(),
        },
        Component {
            name: "containerd",
            module: "github.com/containerd/containerd/v2",
            version: pins.containerd.clone(),
            commands: vec![
                (
                    "github.com/containerd/containerd/v2/cmd/containerd",
                    "containerd",
                ),
                (
                    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
                    "containerd-shim-runc-v2",
                ),
                ("github.com/containerd/containerd/v2/cmd/ctr", "ctr"),
            ],
            extra: String::new(),
            ldflags: format!(
                "-X github.com/containerd/containerd/v2/version.Version={}",
                pins.containerd
            ),
        },
        Component {
            name: "cni-plugins",
            module: "github.com/containernetworking/plugins",
            version: pins.cni_plugins.clone(),
            commands: vec![
                (
                    "github.com/containernetworking/plugins/plugins/main/bridge",
                    "bridge",
                ),
                (
                    "github.com/containernetworking/plugins/plugins/main/loopback",
                    "loopback",
                ),
                (
                    "github.com/containernetworking/plugins/plugins/ipam/host-local",
                    "host-local",
                ),
                (
                    "github.com/containernetworking/plugins/plugins/meta/portmap",
                    "portmap",
                ),
            ],
            extra: String::new(),
            ldflags: String::new(),
        },
    ])
}

/// k8s.io/kubernetes points its staging modules at `./staging/…`, which a module that requires
/// it cannot see: require each at the matching published version instead. The list is read
/// from the release's own go.mod, so a new staging module is never missed.
fn staging_replaces(pins: &Pins) -> Result<String> {
    let json = stdout_of(go().args([
        "mod",
        "download",
        "-json",
        &format!("k8s.io/kubernetes@{}", pins.kubernetes),
    ]))?;
    let gomod: serde_json::Value =
        serde_json::from_str(&json).context("`go mod download -json` printed no JSON")?;
    let path = gomod["GoMod"]
        .as_str()
        .context("`go mod download -json` gave no GoMod path")?;
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let version = pins.staging_version();
    let mut out = String::new();
    for module in staging_modules(&text) {
        let _ = writeln!(out, "replace {module} => {module} {version}");
    }
    if out.is_empty() {
        bail!(
            "{path} names no ./staging modules: is {} a Kubernetes release?",
            pins.kubernetes
        );
    }
    Ok(out)
}

fn staging_modules(gomod: &str) -> Vec<&str> {
    gomod
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches("replace").trim();
            let (module, target) = line.split_once("=>")?;
            target
                .trim()
                .starts_with("./staging/")
                .then(|| module.split_whitespace().next())
                .flatten()
        })
        .collect()
}

fn build(cache: &Cache, c: &Component) -> Result<()> {
    let dir = cache.dir.join("src").join(c.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut gomod = format!(
        "// Written by `cargo xtask cluster`: builds {module} {version}.\nmodule syscribe.local/cluster/{name}\n\ngo 1.24\n\nrequire {module} {version}\n\n",
        module = c.module,
        version = c.version,
        name = c.name
    );
    gomod.push_str(&c.extra);
    fs::write(dir.join("go.mod"), gomod)?;
    let mut tools = String::from("//go:build tools\n\npackage tools\n\nimport (\n");
    for (pkg, _) in &c.commands {
        let _ = writeln!(tools, "\t_ \"{pkg}\"");
    }
    tools.push_str(")\n");
    fs::write(dir.join("tools.go"), tools)?;
    run(go().arg("mod").arg("tidy").current_dir(&dir))
        .with_context(|| format!("resolving {} {}", c.module, c.version))?;
    for (pkg, binary) in &c.commands {
        run(go()
            .args(["build", "-trimpath", "-ldflags"])
            .arg(format!("-s -w {}", c.ldflags))
            .arg("-o")
            .arg(cache.bin().join(binary))
            .arg(pkg)
            .current_dir(&dir))
        .with_context(|| format!("building {binary} from {pkg}@{}", c.version))?;
    }
    Ok(())
}

/// `go` with static binaries, the module proxy as configured, and no toolchain download.
/// The machine's Go lives in /usr/local/go/bin, which a bare environment may not have on PATH.
fn go() -> Command {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("go").is_file()));
    let mut cmd = if on_path {
        Command::new("go")
    } else {
        Command::new("/usr/local/go/bin/go")
    };
    cmd.env("CGO_ENABLED", "0")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod -buildvcs=false");
    cmd
}

pub fn built_in(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join("build-times")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_pins_parse() {
        let pins = Pins::load().unwrap();
        assert!(pins.kubernetes.starts_with("v1."));
        assert_eq!(
            pins.staging_version(),
            format!("v0.{}", &pins.kubernetes[3..])
        );
    }

    #[test]
    fn bad_pins_are_named() {
        let err = Pins::parse("kubernetes = v1.2.3\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1: the version must be quoted"));
        let err = Pins::parse("kubernetes = \"1.2\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("not a vMAJOR.MINOR.PATCH tag"));
        let err = Pins::parse("kubelet = \"v1.2.3\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown pin \"kubelet\""));
        let err = Pins::parse("etcd = \"v3.6.1\"\netcd = \"v3.6.2\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("pinned twice"));
        let err = Pins::parse("etcd = \"v3.6.1\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("kubernetes is not pinned"));
    }

    #[test]
    fn staging_modules_come_from_the_release_go_mod() {
        let gomod = "module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\nreplace k8s.io/kubelet v0.0.0 => ./staging/src/k8s.io/kubelet\n";
        assert_eq!(
            staging_modules(gomod),
            ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet"]
        );
    }
}
