//! `cargo xtask samples [SERVER…]`: the sample profiles in `deploy/profiles/`, recorded again.
//!
//! Each server runs in a runc container whose root filesystem is Debian's: `debootstrap
//! --variant=minbase`, then `apt-get install --no-install-recommends PACKAGE` in a chroot (the
//! package's maintainer scripts run, so its configuration is Debian's as installed). Root
//! filesystems are cached outside the repository, keyed by Debian release:
//!
//! ```text
//! <cache>/debs/                    debootstrap's downloaded packages
//! <cache>/<suite>/base/            the minbase system (<suite>/base.done when complete)
//! <cache>/<suite>/<server>/rootfs  base + the server's package
//! <cache>/<suite>/<server>/version the package's version, written last (= complete)
//! ```
//!
//! `<cache>` is `$SYSCRIBE_SAMPLES_CACHE`, else `$XDG_CACHE_HOME/syscribe/samples`, else
//! `~/.cache/syscribe/samples`. The tests' side (`syscribe_tests::samples`) reads
//! `<cache>/<suite>` from `SYSCRIBE_SAMPLES`; the load and the recording are there
//! (`tests/src/bin/sample-record.rs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{run, stdout_of};

/// The servers with a sample profile, and their Debian packages (as
/// `syscribe_tests::samples::Server` names them).
pub const SERVERS: [(&str, &str); 3] = [
    ("nginx", "nginx"),
    ("httpd", "apache2"),
    ("haproxy", "haproxy"),
];

/// The Debian release the committed profiles were recorded on (this machine's own).
pub const DEFAULT_SUITE: &str = "bookworm";
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// Where and from what the root filesystems are built.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// The Debian release to build the root filesystems from.
    #[arg(long, default_value = DEFAULT_SUITE)]
    pub suite: String,
    /// The Debian mirror (debootstrap's and apt's).
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub mirror: String,
    /// The security mirror (`<suite>-security`; not used for unstable/sid).
    #[arg(long, default_value = DEFAULT_SECURITY_MIRROR)]
    pub security_mirror: String,
}

impl Default for Source {
    fn default() -> Self {
        Self {
            suite: DEFAULT_SUITE.to_owned(),
            mirror: DEFAULT_MIRROR.to_owned(),
            security_mirror: DEFAULT_SECURITY_MIRROR.to_owned(),
        }
    }
}

/// The cache of root filesystems for one Debian release.
pub struct Cache {
    root: PathBuf,
    source: Source,
}

impl Cache {
    pub fn new(source: Source) -> Result<Self> {
        let root = match std::env::var_os("SYSCRIBE_SAMPLES_CACHE") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("XDG_CACHE_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("syscribe/samples"),
                _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                    .join(".cache/syscribe/samples"),
            },
        };
        if !source
            .suite
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("--suite {:?} is not a Debian release name", source.suite);
        }
        Ok(Self { root, source })
    }

    /// What `SYSCRIBE_SAMPLES` names: the release's directory.
    pub fn suite_dir(&self) -> PathBuf {
        self.root.join(&self.source.suite)
    }

    fn server_dir(&self, server: &str) -> PathBuf {
        self.suite_dir().join(server)
    }

    /// The version of `server`'s package in its cached root filesystem, if that is complete.
    pub fn built_version(&self, server: &str) -> Option<String> {
        std::fs::read_to_string(self.server_dir(server).join("version"))
            .ok()
            .map(|v| v.trim().to_owned())
    }

    /// Builds what is missing (everything with `rebuild`); returns the package's version.
    pub fn ensure(&self, server: &str, rebuild: bool) -> Result<String> {
        let package = package_of(server)?;
        if !rebuild && let Some(version) = self.built_version(server) {
            return Ok(version);
        }
        let base = self.ensure_base(rebuild)?;
        let started = Instant::now();
        let dir = self.server_dir(server);
        remove_dir(&dir)?;
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        run(Command::new("cp").arg("-a").arg(&base).arg(&rootfs))?;
        let mut sources = format!("deb {} {} main\n", self.source.mirror, self.source.suite);
        if !matches!(self.source.suite.as_str(), "sid" | "unstable") {
            sources.push_str(&format!(
                "deb {} {}-updates main\ndeb {} {}-security main\n",
                self.source.mirror,
                self.source.suite,
                self.source.security_mirror,
                self.source.suite
            ));
        }
        write(&rootfs.join("etc/apt/sources.list"), sources.as_bytes())?;
        // No service starts inside the chroot while packages are configured.
        let policy = rootfs.join("usr/sbin/policy-rc.d");
        write(&policy, b"#!/bin/sh\nexit 101\n")?;
        set_mode(&policy, 0o755)?;
        eprintln!("xtask: installing {package} into {}", rootfs.display());
        run(Command::new("chroot")
            .arg(&rootfs)
            .args([
                "/bin/sh",
                "-c",
                &format!(
                    "apt-get update -qq && apt-get install -y -qq --no-install-recommends {package} && apt-get clean && rm -rf /var/lib/apt/lists/*"
                ),
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        std::fs::remove_file(&policy).with_context(|| format!("removing {}", policy.display()))?;
        // The build's name server is the host's; each run writes its own (tests/src/samples).
        let _ = std::fs::remove_file(rootfs.join("etc/resolv.conf"));
        let version = stdout_of(Command::new("chroot").arg(&rootfs).args([
            "dpkg-query",
            "-W",
            "-f",
            "${Version}",
            package,
        ]))?
        .trim()
        .to_owned();
        if version.is_empty() {
            bail!("{package} is not installed in {}", rootfs.display());
        }
        write(&dir.join("version"), format!("{version}\n").as_bytes())?;
        eprintln!(
            "xtask: {package} {version} installed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(version)
    }

    /// The minimal Debian system every server's root filesystem starts from.
    fn ensure_base(&self, rebuild: bool) -> Result<PathBuf> {
        let base = self.suite_dir().join("base");
        let done = self.suite_dir().join("base.done");
        if !rebuild && done.exists() {
            return Ok(base);
        }
        let started = Instant::now();
        remove_dir(&base)?;
        let _ = std::fs::remove_file(&done);
        let debs = self.root.join("debs");
        std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        eprintln!(
            "xtask: debootstrap --variant=minbase {} into {} (once; cached)",
            self.source.suite,
            base.display()
        );
        run(Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(&self.source.suite)
            .arg(&base)
            .arg(&self.source.mirror))?;
        let seconds = started.elapsed().as_secs_f64();
        write(&done, format!("{seconds:.0} s\n").as_bytes())?;
        eprintln!("xtask: debootstrap took {seconds:.0} s");
        Ok(base)
    }
}

/// `server`'s entry in [`SERVERS`]: its name and package.
fn entry(server: &str) -> Result<(&'static str, &'static str)> {
    SERVERS
        .into_iter()
        .find(|(name, _)| *name == server)
        .with_context(|| {
            format!(
                "no sample server {server:?}; there are {:?}",
                SERVERS.map(|(name, _)| name)
            )
        })
}

fn package_of(server: &str) -> Result<&'static str> {
    entry(server).map(|(_, package)| package)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    // Never through a link the root filesystem holds at that name.
    if path.is_symlink() {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// The named servers (all when none is named), checked before anything is built.
pub fn selected(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(SERVERS.map(|(name, _)| name).to_vec());
    }
    names
        .iter()
        .map(|name| entry(name).map(|(name, _)| name))
        .collect()
}

/// Records each server under its load with `syscribe` (`bin`) by `sample_record` and writes
/// `deploy/profiles/<server>.yaml`.
pub fn record(
    cache: &Cache,
    servers: &[&str],
    syscribe: &Path,
    sample_record: &Path,
) -> Result<()> {
    let date = stdout_of(Command::new("date").args(["-u", "+%Y-%m-%d"]))?
        .trim()
        .to_owned();
    let profiles = crate::workspace_root().join("deploy/profiles");
    std::fs::create_dir_all(&profiles)
        .with_context(|| format!("creating {}", profiles.display()))?;
    for server in servers {
        let started = Instant::now();
        run(Command::new(sample_record)
            .arg(server)
            .arg(profiles.join(format!("{server}.yaml")))
            .arg(&cache.source.suite)
            .arg(&date)
            .env("SYSCRIBE_BIN", syscribe)
            .env("SYSCRIBE_SAMPLES", cache.suite_dir()))?;
        eprintln!(
            "xtask: {server} recorded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_checked_before_anything_is_built() {
        assert_eq!(selected(&[]).unwrap(), ["nginx", "httpd", "haproxy"]);
        assert_eq!(selected(&["httpd".to_owned()]).unwrap(), ["httpd"]);
        let err = selected(&["apache2".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("no sample server \"apache2\""), "{err}");
    }

    #[test]
    fn a_suite_is_a_plain_name() {
        let source = Source {
            suite: "../etc".to_owned(),
            ..Source::default()
        };
        assert!(Cache::new(source).is_err());
    }
}
