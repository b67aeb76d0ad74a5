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
    print_table(&result?, iterations, rounds);
    Ok(())
}

/// ns/syscall of every configuration, one row per round.
fn measure(
    syscribe: &Path,
    probe: &Path,
    iterations: u64,
    rounds: usize,
    cgroup2: &Path,
    scratch: &Path,
) -> Result<Vec<[f64; CONFIGS.len()]>> {
    let mut samples = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        eprintln!("bench: round {round}/{rounds}");
        // Bare runs first and last; the round's baseline is their mean, so slow drift within
        // a round cancels out of the paired differences.
        let bare_before = bare(probe, iterations)?;
        let floor = floor(syscribe, probe, iterations)?;
        let unrecorded = unrecorded(syscribe, probe, iterations, cgroup2)?;
        let recorded = recorded(syscribe, probe, iterations, scratch)?;
        let bpftrace = bpftrace(probe, iterations, cgroup2)?;
        let bare_after = bare(probe, iterations)?;
        let bare = (bare_before + bare_after) / 2.0;
        samples.push([bare, floor, unrecorded, recorded, bpftrace]);
    }
    Ok(samples)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints, per configuration, the median ns/syscall, the median added cost, and the median of
/// the per-round ratios (added cost / the floor's added cost in the same round): pairing within
/// a round keeps this VM's drift out of the ratio.
fn print_table(samples: &[[f64; CONFIGS.len()]], iterations: u64, rounds: usize) {
    println!();
    println!("recorder overhead: getppid x {iterations}, {rounds} interleaved rounds, medians");
    println!(
        "{:<40} {:>11} {:>10} {:>15} {:>17}",
        "configuration", "ns/syscall", "added ns", "added / floor", "ratio min..max"
    );
    for (i, name) in CONFIGS.iter().enumerate() {
        let ns = median(samples.iter().map(|r| r[i]).collect());
        if i == 0 {
            println!("{name:<40} {ns:>11.1} {:>10} {:>15} {:>17}", "-", "-", "-");
            continue;
        }
        let added = median(samples.iter().map(|r| r[i] - r[0]).collect());
        let mut ratios: Vec<f64> = samples
            .iter()
            .map(|r| (r[i] - r[0]) / (r[1] - r[0]))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let spread = format!("{:.2}..{:.2}", ratios[0], ratios[ratios.len() - 1]);
        let ratio = median(ratios);
        println!(
            "{name:<40} {ns:>11.1} {added:>+10.1} {:>14.2}x {spread:>17}",
            ratio
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
    if !cgroup.exists() {
        fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
    }
    let script = format!(
        "tracepoint:raw_syscalls:sys_enter /cgroup == cgroupid(\"{}\")/ {{ @[args->id] = count(); }}",
        cgroup.display()
    );
    let mut tracer = Command::new("bpftrace")
        // Unbuffered: with a pipe for stdout, bpftrace would hold back its "Attaching" line.
        .args(["-B", "none", "-e", &script])
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
