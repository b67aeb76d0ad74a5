//! `cargo xtask bench recorder`: the per-syscall cost of the recorder, side by side with an
//! empty program (the floor every attached program pays) and bpftrace doing the same job.
//!
//! One workload (`syscall-probe loop N`: getppid N times, prints ns per call) runs under each
//! configuration; rounds interleave the configurations so drift hits all of them alike, and the
//! median of each is reported. Nothing here asserts a time: it prints the ratios.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{run, workspace_root};

const CONFIGS: [&str; 5] = [
    "bare (nothing attached)",
    "floor: empty raw sys_enter program",
    "syscribe recording, task not recorded",
    "syscribe recording this task",
    "bpftrace: cgroup filter + count map",
];

pub fn recorder(syscribe: &Path, iterations: u64, rounds: usize) -> Result<()> {
    run(Command::new("cargo").args([
        "build",
        "--release",
        "--package",
        "syscribe-tests",
        "--bin",
        "syscall-probe",
    ]))?;
    let probe = workspace_root().join("target/release/syscall-probe");
    let cgroup2 = cgroup2_mount()?;
    let scratch = std::env::temp_dir().join(format!("syscribe-bench-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;

    // bpftrace finds tracepoints through tracefs; mount it for the run if the host has not.
    let tracefs = Path::new("/sys/kernel/tracing");
    let mounted_tracefs = !tracefs.join("events").exists();
    if mounted_tracefs {
        run(Command::new("mount")
            .args(["-t", "tracefs", "tracefs"])
            .arg(tracefs))?;
    }
    let result = measure(syscribe, &probe, iterations, rounds, &cgroup2, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    if mounted_tracefs {
        let _ = Command::new("umount").arg(tracefs).status();
    }
    let stats = result?;
    print_table(&stats, iterations, rounds);
    Ok(())
}

fn measure(
    syscribe: &Path,
    probe: &Path,
    iterations: u64,
    rounds: usize,
    cgroup2: &Path,
    scratch: &Path,
) -> Result<Vec<Stats>> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); CONFIGS.len()];
    for round in 1..=rounds {
        eprintln!("bench: round {round}/{rounds}");
        samples[0].push(bare(probe, iterations)?);
        samples[1].push(floor(syscribe, probe, iterations)?);
        samples[2].push(unrecorded(syscribe, probe, iterations, cgroup2)?);
        samples[3].push(recorded(syscribe, probe, iterations, scratch)?);
        samples[4].push(bpftrace(probe, iterations, cgroup2)?);
    }
    Ok(samples.iter_mut().map(|s| Stats::of(s)).collect())
}

/// Median and spread of one configuration's samples.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(values: &mut [f64]) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

fn print_table(stats: &[Stats], iterations: u64, rounds: usize) {
    let medians: Vec<f64> = stats.iter().map(|s| s.median).collect();
    let bare_ns = medians[0];
    let floor_added = medians[1] - bare_ns;
    println!();
    println!("recorder overhead: getppid x {iterations}, {rounds} interleaved rounds, medians");
    println!(
        "{:<40} {:>11} {:>10} {:>15}",
        "configuration", "ns/syscall", "added ns", "added / floor"
    );
    for (i, name) in CONFIGS.iter().enumerate() {
        let added = medians[i] - bare_ns;
        let ratio = if i == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}x", added / floor_added)
        };
        let added = if i == 0 {
            "-".to_owned()
        } else {
            format!("{added:+.1}")
        };
        let spread = format!("{:.0}..{:.0}", stats[i].min, stats[i].max);
        println!(
            "{name:<40} {:>11.1} {added:>10} {ratio:>15} {spread:>17}",
            medians[i]
        );
    }
    println!();
    println!("goals: recorded <= 1.20x floor, not recorded <= 1.10x floor, well below bpftrace");
}

/// Runs the probe loop and parses the ns/call it prints.
fn probe_loop(cmd: &mut Command) -> Result<f64> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|line| line.trim().parse::<f64>().ok())
        .with_context(|| format!("{cmd:?} printed no ns/call: {text:?}"))
}

fn bare(probe: &Path, n: u64) -> Result<f64> {
    probe_loop(Command::new(probe).arg("loop").arg(n.to_string()))
}

fn floor(syscribe: &Path, probe: &Path, n: u64) -> Result<f64> {
    let mut holder = Command::new(syscribe)
        .arg("bench-floor")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting syscribe bench-floor")?;
    let mut line = String::new();
    BufReader::new(holder.stdout.take().context("stdout")?).read_line(&mut line)?;
    if line.trim() != "attached" {
        let _ = holder.kill();
        bail!("syscribe bench-floor did not attach: {line:?}");
    }
    let result = bare(probe, n);
    drop(holder.stdin.take());
    holder.wait()?;
    result
}

/// syscribe records a `sleep` in its own cgroup while the loop runs outside it.
fn unrecorded(syscribe: &Path, probe: &Path, n: u64, cgroup2: &Path) -> Result<f64> {
    let mut recording = Command::new(syscribe)
        .args(["record", "-o", "/dev/null", "--", "sleep", "3600"])
        .stderr(Stdio::null())
        .spawn()
        .context("starting syscribe record")?;
    let procs = cgroup2.join(format!("syscribe/record-{}/cgroup.procs", recording.id()));
    // The program is attached before the command joins its cgroup.
    wait_until(Duration::from_secs(10), || {
        fs::read_to_string(&procs).is_ok_and(|pids| !pids.trim().is_empty())
    })
    .context("syscribe record did not start recording")?;
    let result = bare(probe, n);
    stop(&mut recording)?;
    result
}

fn recorded(syscribe: &Path, probe: &Path, n: u64, scratch: &Path) -> Result<f64> {
    let profile = scratch.join("loop.json");
    let ns = probe_loop(
        Command::new(syscribe)
            .arg("record")
            .arg("-o")
            .arg(&profile)
            .arg("--")
            .arg(probe)
            .arg("loop")
            .arg(n.to_string()),
    )?;
    let text = fs::read_to_string(&profile)?;
    if !text.contains("\"getppid\"") {
        bail!("the recorded run did not record getppid: the measurement would be meaningless");
    }
    Ok(ns)
}

/// bpftrace counting syscalls per id for one cgroup (the loop's), the classic one-liner.
fn bpftrace(probe: &Path, n: u64, cgroup2: &Path) -> Result<f64> {
    let cgroup = cgroup2.join("syscribe-bench-bpftrace");
    let _ = fs::create_dir(&cgroup);
    let script = format!(
        "tracepoint:raw_syscalls:sys_enter /cgroup == cgroupid(\"{}\")/ {{ @[args->id] = count(); }}",
        cgroup.display()
    );
    let mut tracer = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting bpftrace (installed by the bench setup)")?;
    let mut stdout = BufReader::new(tracer.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if !line.starts_with("Attaching") {
        let _ = tracer.kill();
        bail!("bpftrace did not attach: {line:?}");
    }
    // bpftrace prints "Attaching N probes..." just before attaching.
    thread::sleep(Duration::from_millis(500));
    let procs = cgroup.join("cgroup.procs");
    let result = probe_loop(Command::new("sh").arg("-c").arg(format!(
        "echo $$ > {} && exec {} loop {n}",
        procs.display(),
        probe.display()
    )));
    // SAFETY: kill has no memory-safety preconditions; bpftrace prints its map on SIGINT.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest)?;
    tracer.wait()?;
    let _ = fs::remove_dir(&cgroup);
    // getppid is 110 on x86_64: the peer must have counted the loop, or the comparison is void.
    if !rest.lines().any(|l| l.starts_with("@[110]:")) {
        bail!("bpftrace did not count the loop's getppid calls: {rest}");
    }
    result
}

fn stop(child: &mut Child) -> Result<()> {
    // SAFETY: kill has no memory-safety preconditions; syscribe forwards SIGTERM to its command.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait()?;
    Ok(())
}

fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn cgroup2_mount() -> Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    mountinfo
        .lines()
        .find(|line| line.contains(" - cgroup2 "))
        .and_then(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .context("no cgroup2 mount")
}
