//! `cargo xtask setup`: everything a fresh machine needs to build and test syscribe.
//!
//! Idempotent and fast on a second run: each step first checks whether its result is already
//! there (installed Debian package, nightly `rust-src`, a working `bpf-linker` built for the
//! nightly's LLVM major) and does nothing if so.

use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{run, stdout_of};

/// Debian packages the build and the tests need.
/// - libseccomp-dev: the userspace links libseccomp (syscall names per arch, filter loading).
/// - busybox-static: the replay tests record and replay busybox applets.
/// - strace: ground truth for "which syscalls did this program make".
/// - curl, python3: real programs the replay tests record (Debian's /usr/bin/python3); curl is
///   also the HTTPS client of the webhook test.
/// - openssl: the webhook test makes its own certificates.
/// - util-linux: `setpriv` runs syscribe unprivileged in the non-root test.
/// - runc, crun: real container runtimes for the container recording tests.
/// - auditd: the enricher's audit-log test starts Debian's auditd itself (and stops it): a
///   daemon left running would take the audit records away from the kernel log, so one the
///   package's install started is stopped (see `apt_install`).
/// - semodule-utils, policycoreutils, selinux-policy-default, setools, secilc: SELinux modules
///   are built into an offline copy of Debian's reference policy store (semodule) and read
///   back (sesearch); SELinux itself stays off.
/// - debootstrap: the sample servers' root filesystems (Debian's nginx, apache2, haproxy) are
///   built with it (`cargo xtask samples`, tests/samples.rs).
/// - chromium: a real browser renders `syscribe report --format html` headless (`--dump-dom`)
///   in the cluster test, which reads what the page shows.
pub const TEST_PACKAGES: &[&str] = &[
    "libseccomp-dev",
    "busybox-static",
    "strace",
    "curl",
    "openssl",
    "util-linux",
    "python3",
    "runc",
    "crun",
    "auditd",
    "semodule-utils",
    "policycoreutils",
    "selinux-policy-default",
    "setools",
    "secilc",
    "chromium",
    "debootstrap",
];

/// Packages only the benchmarks need: the peers they are compared with (bpftrace, and auditd
/// for ausearch).
pub const BENCH_PACKAGES: &[&str] = &["bpftrace", "auditd"];

/// Packages the cluster needs beside its own Go builds: iptables and conntrack (kube-proxy),
/// libc6-dev (the pause program is linked static), curl and openssl (health checks, PKI).
pub const CLUSTER_PACKAGES: &[&str] = &["iptables", "conntrack", "libc6-dev", "curl", "openssl"];

/// The bpf-linker release we build; it must offer an `llvm-<major>` feature for the nightly's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn setup() -> Result<()> {
    apt_install(TEST_PACKAGES)?;
    lint_components()?;
    let nightly = ebpf_nightly()?;
    nightly_rust_src(&nightly)?;
    bpf_linker(&nightly)?;
    Ok(())
}

/// The pinned nightly of `recorder-ebpf/rust-toolchain.toml` (`nightly-YYYY-MM-DD`).
pub fn ebpf_nightly() -> Result<String> {
    let path = crate::workspace_root().join("recorder-ebpf/rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_channel(&text)
        .with_context(|| format!("{}: no `channel = \"nightly-…\"` line", path.display()))
}

fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("channel")?
            .trim()
            .strip_prefix('=')?
            .trim();
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        value.starts_with("nightly-").then(|| value.to_owned())
    })
}

/// Installs the Debian packages that are missing; runs `apt-get update` only when something is.
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| !dpkg_installed(pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if missing.contains(&"auditd") {
        stop_auditd();
    }
    Ok(())
}

/// Stops an auditd the package's install started (where policy-rc.d does not prevent it).
fn stop_auditd() {
    let Some(pid) = std::fs::read_to_string("/var/run/auditd.pid")
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    eprintln!("xtask: stopping the auditd (pid {pid}) its install started");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    for _ in 0..50 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// rustfmt and clippy for the toolchain that runs the tests (`cargo fmt --check`, clippy):
/// a machine's rustup toolchain may come without them.
fn lint_components() -> Result<()> {
    let installed = stdout_of(Command::new("rustup").args(["component", "list", "--installed"]))?;
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|line| line.starts_with(component)) {
            eprintln!("xtask: adding {component} to the default toolchain");
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

fn nightly_rust_src(nightly: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", nightly])
        .output()
        .context("running rustup (is rustup on PATH?)")?;
    if !installed.status.success() {
        eprintln!("xtask: installing the pinned {nightly} toolchain with rust-src");
        return run(Command::new("rustup").args([
            "toolchain",
            "install",
            nightly,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]));
    }
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.starts_with("rust-src"))
    {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the {nightly} toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", nightly]))
}

/// LLVM major version of the nightly rustc (`LLVM version: 22.1.4` → 22).
fn nightly_llvm_major(nightly: &str) -> Result<u32> {
    let meta = stdout_of(Command::new("rustc").arg(format!("+{nightly}")).arg("-vV"))?;
    parse_llvm_major(&meta)
        .with_context(|| format!("no `LLVM version:` line in `rustc +{nightly} -vV`:\n{meta}"))
}

fn parse_llvm_major(meta: &str) -> Option<u32> {
    let version = meta
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?;
    version.split('.').next()?.trim().parse().ok()
}

/// Where the libLLVM symlinks of `nightly` live; bpf-linker keeps an rpath to it, so it must
/// be stable.
fn llvm_prefix(nightly: &str) -> Result<PathBuf> {
    Ok(share_dir()?.join(format!("llvm-{nightly}")))
}

fn share_dir() -> Result<PathBuf> {
    let home = env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local/share/syscribe"))
}

fn bpf_linker(nightly: &str) -> Result<()> {
    let major = nightly_llvm_major(nightly)?;
    let prefix = llvm_prefix(nightly)?;
    // Which build the bpf-linker on PATH is: rebuilt when the pin changes.
    let marker = share_dir()?.join("bpf-linker.installed");
    let wanted = format!("{BPF_LINKER_VERSION} {nightly} llvm-{major}\n");
    let linker_works = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if linker_works && fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }

    let sysroot = stdout_of(
        Command::new("rustc")
            .arg(format!("+{nightly}"))
            .args(["--print", "sysroot"]),
    )?;
    let nightly_lib = Path::new(sysroot.trim()).join("lib");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let mut main_lib = None;
    for entry in
        fs::read_dir(&nightly_lib).with_context(|| format!("reading {}", nightly_lib.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("libLLVM") {
            continue;
        }
        let link = lib.join(&*name);
        let _ = fs::remove_file(&link);
        symlink(entry.path(), &link).with_context(|| format!("linking {}", link.display()))?;
        if name.starts_with("libLLVM-") && name.ends_with(".so") {
            main_lib = Some(entry.path());
        }
    }
    let main_lib = main_lib.with_context(|| {
        format!(
            "the nightly toolchain has no libLLVM-*.so in {}",
            nightly_lib.display()
        )
    })?;
    let generic = lib.join("libLLVM.so");
    let _ = fs::remove_file(&generic);
    symlink(&main_lib, &generic).with_context(|| format!("linking {}", generic.display()))?;

    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {nightly}'s LLVM {major}");
    run(Command::new("cargo")
        .arg(format!("+{nightly}"))
        .args(["install", "bpf-linker", "--locked", "--force"])
        .args(["--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_channel, parse_llvm_major};

    #[test]
    fn the_pinned_nightly_is_read_from_the_toolchain_file() {
        assert_eq!(
            parse_channel("[toolchain]\nchannel = \"nightly-2026-05-19\"\n").as_deref(),
            Some("nightly-2026-05-19")
        );
        assert_eq!(parse_channel("channel = \"stable\"\n"), None);
        assert!(super::ebpf_nightly().unwrap().starts_with("nightly-20"));
    }

    #[test]
    fn llvm_major_from_rustc_meta() {
        let meta = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(meta), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0\n"), None);
    }
}
