//! Project tasks: toolchain bootstrap, the privileged test runner, benchmarks.
//!
//! `cargo xtask setup`            install what a fresh machine lacks (idempotent)
//! `cargo xtask test`             setup, lints, unit tests, then the root-only tests
//! `cargo xtask cluster-test [FILTER]`  only the tests on the real cluster
//! `cargo xtask syscribe ARGS…`   setup, build, run `syscribe ARGS…` (release build)
//! `cargo xtask bench recorder`   recorder overhead, side by side
//! `cargo xtask bench storm`      a real seccomp denial storm read by syscribe and plain readers
//! `cargo xtask cluster up|down|status`, `cargo xtask kubectl ARGS…`   a real Kubernetes here
//! `cargo xtask samples [SERVER…]`  record the sample profiles (deploy/profiles) again

mod bench;
mod bench_enricher;
mod bench_storm;
mod cluster;
mod samples;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the Debian packages, nightly rust-src and bpf-linker the project needs.
    Setup,
    /// Run every check: formatting, clippy, unit tests and the privileged tests (as root).
    Test {
        /// Extra arguments for the privileged test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Only the tests on the real cluster (tests/cluster.rs), for working on them: builds
    /// syscribe, brings the cluster up, runs them (ARGS: a test name filter…), takes it down.
    /// `cargo xtask test` runs them too, after everything else.
    ClusterTest {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build syscribe (release) and run it with the given arguments.
    Syscribe {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Fuzz (cargo fuzz, libFuzzer) each target for the given time: `parse_audit_line` (the
    /// audit record parser and enricher), `load_profile` (the YAML/JSON profile loader, its
    /// limits, the validator and the filter compiler) and `parse_cil` (the CIL reader).
    Fuzz {
        /// How long to run each target.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Benchmarks that print side-by-side ratios (never timed assertions).
    /// A real single-node Kubernetes built from source (xtask/cluster/versions.toml).
    Cluster {
        #[arg(value_enum)]
        action: ClusterAction,
    },
    /// kubectl against the running cluster, as its administrator.
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write the Syscribe image's root filesystem (release binary, the SELinux tools it runs and
    /// the libraries they load) into DIR: what deploy/Containerfile's image and the cluster's
    /// test image hold.
    Rootfs {
        dir: PathBuf,
        /// Put this syscribe binary in instead of building the release one.
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// Record the sample profiles (deploy/profiles/<SERVER>.yaml) again: each server's Debian
    /// package in a root filesystem built by debootstrap and apt-get (cached in
    /// ~/.cache/syscribe/samples), run by runc under its load while syscribe records it.
    Samples {
        /// nginx, httpd, haproxy (default: all).
        servers: Vec<String>,
        #[command(flatten)]
        source: samples::Source,
        /// Build the root filesystems again (a newer package version of the release).
        #[arg(long)]
        rebuild: bool,
        /// Only build the root filesystems and print their directory (SYSCRIBE_SAMPLES).
        #[arg(long)]
        rootfs_only: bool,
    },
    Bench {
        #[arg(value_enum)]
        what: BenchKind,
        /// Syscalls per measured run.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
        /// Rounds; each runs every configuration once, interleaved; medians are reported.
        #[arg(long, default_value_t = 21)]
        rounds: usize,
        /// Records in the generated audit log (`enricher`).
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ClusterAction {
    /// Only build the cluster's binaries into the cache (`up` does it when they are missing).
    Build,
    /// Build what is missing, start every component, wait for the node to be Ready.
    Up,
    /// Stop everything and remove every trace (fails naming what it could not remove).
    Down,
    /// What runs, the node, the images, the build times.
    Status,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchKind {
    /// Per-syscall cost of the recorder against an empty program and bpftrace.
    Recorder,
    /// Audit records parsed, enriched and printed per second, against ausearch.
    Enricher,
    /// A real seccomp denial storm (`--records` logged getppid calls) read from the audit
    /// netlink group: emitted, read, lost and CPU per record, plain readers beside syscribe.
    Storm,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::setup(),
        Task::Test { args } => test(&args),
        Task::ClusterTest { args } => {
            setup::setup()?;
            require_root("the cluster")?;
            let cache_bin = cluster::build::Cache::for_pins(&cluster::build::Pins::load()?)?.bin();
            if !cluster::leftovers(&cache_bin).is_empty() {
                eprintln!("xtask: a cluster is still here; taking it down first");
                cluster::down(&cache_bin)?;
            }
            let bin = build_syscribe(false)?;
            cluster_tests(&bin, &args)
        }
        Task::Syscribe { args } => {
            setup::setup()?;
            let bin = build_syscribe(true)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Cluster { action } => match action {
            ClusterAction::Build => {
                cluster::build::ensure_built(&cluster::build::Pins::load()?).map(drop)
            }
            ClusterAction::Up => {
                setup::setup()?;
                setup::apt_install(setup::CLUSTER_PACKAGES)?;
                require_root("the cluster")?;
                let bin = build_syscribe(true)?;
                cluster::up(&bin).map(drop)
            }
            ClusterAction::Down => {
                require_root("the cluster")?;
                cluster::down(
                    &cluster::build::Cache::for_pins(&cluster::build::Pins::load()?)?.bin(),
                )
            }
            ClusterAction::Status => cluster::status(),
        },
        Task::Kubectl { args } => cluster::kubectl(&args),
        Task::Rootfs { dir, bin } => {
            setup::setup()?;
            let bin = match bin {
                Some(bin) => bin,
                None => build_syscribe(true)?,
            };
            cluster::syscribe_rootfs(&bin)?.write_to(&dir)
        }
        Task::Samples {
            servers,
            source,
            rebuild,
            rootfs_only,
        } => {
            let servers = samples::selected(&servers)?;
            require_root("recording the sample servers (debootstrap, chroot, runc, eBPF)")?;
            setup::setup()?;
            let cache = samples::Cache::new(source)?;
            for server in &servers {
                cache.ensure(server, rebuild)?;
            }
            if rootfs_only {
                println!("{}", cache.suite_dir().display());
                return Ok(());
            }
            let bin = build_syscribe(false)?;
            run(Command::new("cargo").args([
                "build",
                "--package",
                "syscribe-tests",
                "--bin",
                "sample-record",
            ]))?;
            let sample_record = target_dir().join("debug/sample-record");
            samples::record(&cache, &servers, &bin, &sample_record)
        }
        Task::Fuzz { seconds, targets } => {
            setup::setup()?;
            fuzz(seconds, &targets)
        }
        Task::Bench {
            what,
            iterations,
            rounds,
            records,
        } => {
            setup::setup()?;
            setup::apt_install(setup::BENCH_PACKAGES)?;
            let bin = build_syscribe(true)?;
            match what {
                BenchKind::Recorder => {
                    if !is_root() {
                        bail!("the recorder benchmark loads eBPF programs: run it as root");
                    }
                    bench::recorder(&bin, iterations, rounds.max(1))
                }
                BenchKind::Enricher => bench_enricher::enricher(&bin, records.max(1)),
                BenchKind::Storm => {
                    if !is_root() {
                        bail!("the storm benchmark reads the kernel's audit: run it as root");
                    }
                    let bins = release_test_bins(&["syscall-probe"])?;
                    bench_storm::storm(&bin, &bins.join("syscall-probe"), records.max(1))
                }
            }
        }
    }
}

fn test(args: &[String]) -> Result<()> {
    setup::setup()?;
    if !is_root() {
        bail!(
            "the privileged tests need root (real eBPF, cgroups): run `cargo xtask test` as root"
        );
    }
    // A cluster left running (a developer's, or a run killed by a timeout) has a Syscribe
    // daemon with programs loaded and kubepods cgroups: the privileged tests start without it.
    let cache_bin = cluster::build::Cache::for_pins(&cluster::build::Pins::load()?)?.bin();
    if !cluster::leftovers(&cache_bin).is_empty() {
        eprintln!("xtask: a cluster is still here; taking it down before the tests");
        cluster::down(&cache_bin)?;
    }
    run(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    // Lints skip the eBPF sub-build (AYA_BUILD_SKIP=1; the object is built and tested by the
    // steps below) and use their own target dir, so that switching AYA_BUILD_SKIP does not
    // make the real build redo its build script and eBPF object.
    let lint_target = workspace_root().join("target/lint");
    run(Command::new("cargo")
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_DIR", &lint_target)
        .args([
            "clippy",
            "--package",
            "recorder-user",
            "--package",
            "xtask",
            "--package",
            "syscribe-tests",
            // tests/cluster.rs is built only with this feature: lint it too.
            "--features",
            "syscribe-tests/cluster",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    run(Command::new("cargo")
        .env("CARGO_TARGET_DIR", &lint_target)
        .args([
            "clippy",
            "--package",
            "recorder-ebpf",
            "--lib",
            "--features",
            "user",
            "--",
            "-D",
            "warnings",
        ]))?;
    run(Command::new("cargo").args([
        "test",
        "--package",
        "recorder-ebpf",
        "--lib",
        "--features",
        "user",
    ]))?;
    run(Command::new("cargo").args(["test", "--package", "recorder-user", "--package", "xtask"]))?;
    let bin = build_syscribe(false)?;
    // The sample servers' root filesystems (tests/samples.rs), built once and cached.
    let samples = samples::Cache::new(samples::Source::default())?;
    for (server, _) in samples::SERVERS {
        samples.ensure(server, false)?;
    }
    // The image's files, for the tests that run its tools in a container (tests/selinux.rs).
    let rootfs = std::env::temp_dir().join(format!("syscribe-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rootfs);
    cluster::syscribe_rootfs(&bin)?.write_to(&rootfs)?;
    let tests = run(Command::new("cargo")
        .args([
            "test",
            "--package",
            "syscribe-tests",
            "--",
            "--test-threads=1",
        ])
        .args(args)
        .env("SYSCRIBE_BIN", &bin)
        .env("SYSCRIBE_ROOTFS", &rootfs)
        .env("SYSCRIBE_SAMPLES", samples.suite_dir()));
    let _ = std::fs::remove_dir_all(&rootfs);
    tests?;
    cluster_tests(&bin, args)
}

/// The tests on the real cluster: built (or taken from the cache), brought up once, Syscribe
/// deployed by the tests themselves, then torn down — and a teardown that leaves anything
/// behind fails the run.
fn cluster_tests(debug_bin: &Path, args: &[String]) -> Result<()> {
    setup::apt_install(setup::CLUSTER_PACKAGES)?;
    let release = build_syscribe(true)?;
    let cache_bin = cluster::build::Cache::for_pins(&cluster::build::Pins::load()?)?.bin();
    let tests = cluster::up(&release).and_then(|cluster| {
        run(Command::new("cargo")
            .args([
                "test",
                "--package",
                "syscribe-tests",
                "--features",
                "cluster",
                "--test",
                "cluster",
                "--",
                "--test-threads=1",
                // The daemon's idle memory is a figure to read, printed by a passing test.
                "--show-output",
            ])
            .args(args)
            .env("SYSCRIBE_BIN", debug_bin)
            .envs(cluster.test_env()))
    });
    let down = cluster::down(&cache_bin);
    match (tests, down) {
        (Ok(()), down) => down,
        (Err(tests), Ok(())) => Err(tests),
        (Err(tests), Err(down)) => Err(tests.context(format!("and then: {down:#}"))),
    }
}

/// The fuzz targets (fuzz/fuzz_targets), each run from its checked-in seeds (fuzz/seeds/NAME).
const FUZZ_TARGETS: [&str; 3] = ["parse_audit_line", "load_profile", "parse_cil"];
/// What a single input may cost before libFuzzer calls it a finding: a bound on allocations
/// (one malloc and the whole process) and on time.
const FUZZ_MALLOC_LIMIT_MB: u32 = 256;
const FUZZ_RSS_LIMIT_MB: u32 = 1024;
const FUZZ_TIMEOUT_S: u32 = 10;

/// Runs each fuzz target from its checked-in seeds for `seconds`, with the limits above.
fn fuzz(seconds: u64, only: &[String]) -> Result<()> {
    for name in only {
        if !FUZZ_TARGETS.contains(&name.as_str()) {
            bail!("no fuzz target {name:?}; there are {FUZZ_TARGETS:?}");
        }
    }
    let has_cargo_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !has_cargo_fuzz {
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            "0.13.2",
            "--locked",
        ]))?;
    }
    let dir = workspace_root().join("fuzz");
    for target in FUZZ_TARGETS {
        if !only.is_empty() && !only.iter().any(|n| n == target) {
            continue;
        }
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        // The eBPF object is not needed by these targets.
        // cargo fuzz finds `fuzz/` below the workspace root, where `run` works.
        run(Command::new("cargo")
            .env("AYA_BUILD_SKIP", "1")
            .arg(format!("+{}", setup::ebpf_nightly()?))
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg(dir.join("seeds").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-malloc_limit_mb={FUZZ_MALLOC_LIMIT_MB}"))
            .arg(format!("-rss_limit_mb={FUZZ_RSS_LIMIT_MB}"))
            .arg(format!("-timeout={FUZZ_TIMEOUT_S}"))
            .arg("-print_final_stats=1"))?;
    }
    Ok(())
}

/// Builds the `syscribe` binary and returns its path.
fn build_syscribe(release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--package", "recorder-user", "--bin", "syscribe"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join("syscribe");
    if !bin.exists() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// Builds the test crate's helper programs `bins` in release; returns the directory they are in.
fn release_test_bins(bins: &[&str]) -> Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--package", "syscribe-tests"]);
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    run(&mut cmd)?;
    Ok(target_dir().join("release"))
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set (a private one beside others' builds), else
/// the workspace's `target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root (processes, mounts, cgroups, iptables): run it as root");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command with inherited stdio; fails with the command line if it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    // Tasks never read the caller's stdin.
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(workspace_root());
    }
    let status = cmd
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout; fails with its stderr if it does not exit 0.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}
