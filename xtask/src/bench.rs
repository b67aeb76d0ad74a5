//! `cargo xtask bench recorder`: the per-syscall cost of the recorder, side by side with an
//! empty program (the floor every attached program pays) and bpftrace doing the same job.
//!
//! One workload (`syscall-probe loop N`: getppid N times on one CPU, prints ns per call) runs
//! under each configuration — among them 1, 10 and 110 pods recorded at once (`record
//! --cgroup` of each), with the loop outside them and in a container of one of them: the cost
//! must not grow with the number of pods. Two passes:
//! 1. end to end: rounds interleave the configurations (bare first and last in each round), and
//!    each configuration's added cost is compared with the floor's;
//! 2. program bodies: with the kernel's BPF run-time statistics on, the ns per run of each
//!    program — what the recorder's body costs beyond an empty program's, measured precisely
//!    where the end-to-end numbers of this VM drift by tens of ns.
//!
//! A third pass measures the capability hook (the program on the `cap_capable` tracepoint,
//! attached while recording): `syscall-probe caploop N` (kill(child, 0) N times, one CAP_KILL
//! check each) bare, beside a recording it is not part of, and recorded.
//!
//! Nothing here asserts a time: it prints the numbers and ratios.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{bench_enricher::median, run};

const CONFIGS: [&str; 11] = [
    "bare (nothing attached)",
    "floor: empty raw sys_enter program",
    "syscribe recording, task not recorded",
    "syscribe recording this task",
    "1 pod recorded, task not recorded",
    "1 pod recorded, task in its container",
    "10 pods recorded, task not recorded",
    "10 pods recorded, task in a container",
    "110 pods recorded, task not recorded",
    "110 pods recorded, task in a container",
    "bpftrace: cgroup filter + count map",
];

/// The pod counts of the pod configurations (each with the task outside, then inside).
const POD_COUNTS: [usize; 3] = [1, 10, 110];

/// Rounds of the program-body pass (each builds the 110 pods again).
const BODY_ROUNDS: usize = 7;

const CAPABILITY_CONFIGS: [&str; 3] = [
    "bare (nothing attached)",
    "syscribe recording, task not recorded",
    "syscribe recording this task",
];

/// What the measured loop does.
#[derive(Clone, Copy)]
enum Workload {
    /// getppid: the per-syscall cost.
    Getppid,
    /// kill(child, 0) of another user's child: one capability check per call.
    CapKill,
}

impl Workload {
    fn probe_arg(self) -> &'static str {
        match self {
            Self::Getppid => "loop",
            Self::CapKill => "caploop",
        }
    }
}

struct Bench<'a> {
    syscribe: &'a Path,
    probe: PathBuf,
    iterations: u64,
    cgroup2: PathBuf,
    scratch: PathBuf,
    /// Programs loaded before the configuration being measured started (others' on a shared
    /// machine): never taken for its own.
    loaded_before: std::cell::RefCell<std::collections::HashSet<u32>>,
}

/// The capability pass: ns per call of each configuration (one row per round), and the hook's
/// body, task not recorded and recorded (one row per body round).
type CapabilityRuns = (Vec<[f64; 3]>, Vec<[f64; 2]>);

/// What one run measured: ns per syscall end to end, and (body pass) ns per program run.
struct Sample {
    ns: f64,
    body: Option<f64>,
}

pub fn recorder(syscribe: &Path, iterations: u64, rounds: usize) -> Result<()> {
    // The loop, and the container-start helper (run at the end).
    let bins = crate::release_test_bins(&["syscall-probe", "container-start"])?;
    let bench = Bench {
        syscribe,
        probe: bins.join("syscall-probe"),
        iterations,
        cgroup2: cgroup2_mount()?,
        scratch: std::env::temp_dir().join(format!("syscribe-bench-{}", std::process::id())),
        loaded_before: Default::default(),
    };
    fs::create_dir_all(&bench.scratch)?;

    // bpftrace finds tracepoints through tracefs; mount it for the run if the host has not.
    let tracefs = Path::new("/sys/kernel/tracing");
    let mounted_tracefs = !tracefs.join("events").exists();
    if mounted_tracefs {
        run(Command::new("mount")
            .args(["-t", "tracefs", "tracefs"])
            .arg(tracefs))?;
    }
    let result = bench.end_to_end(rounds).and_then(|e2e| {
        let bodies = bench.bodies()?;
        Ok((e2e, bodies, bench.capabilities(rounds)?))
    });
    let _ = fs::remove_dir_all(&bench.scratch);
    if mounted_tracefs {
        let _ = Command::new("umount").arg(tracefs).status();
    }
    let (e2e, bodies, capabilities) = result?;
    print_report(&e2e, &bodies, iterations, rounds);
    print_capability_report(&capabilities, iterations, rounds);

    // Container start, with and without a recording of its pod.
    let helper = bins.join("container-start");
    eprintln!("bench: container start");
    let out = Command::new(&helper)
        .arg(syscribe)
        .args(["10", "5"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", helper.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", helper.display(), out.status);
    }
    println!();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

impl Bench<'_> {
    /// ns/syscall of every configuration, one row per round.
    fn end_to_end(&self, rounds: usize) -> Result<Vec<[f64; CONFIGS.len()]>> {
        let mut rows = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            eprintln!("bench: end-to-end round {round}/{rounds}");
            // The round's baseline is the mean of a bare run first and last: slow drift
            // within a round cancels out of the differences.
            let before = self.bare()?;
            let mut row = [0.0; CONFIGS.len()];
            for (i, ns) in row.iter_mut().enumerate().skip(1) {
                *ns = self.config(i, false)?.ns;
            }
            let after = self.bare()?;
            row[0] = (before + after) / 2.0;
            rows.push(row);
        }
        Ok(rows)
    }

    /// Runs attached configuration `i` (1.. of `CONFIGS`).
    fn config(&self, i: usize, body: bool) -> Result<Sample> {
        if body {
            self.mark_loaded();
        }
        match i {
            1 => self.floor(body),
            2 => self.unrecorded(Workload::Getppid, body),
            3 => self.recorded(Workload::Getppid, body),
            i if i < CONFIGS.len() - 1 => {
                let pods = POD_COUNTS[(i - 4) / 2];
                self.pods(pods, (i - 4) % 2 == 1, body)
            }
            _ => self.bpftrace(body),
        }
    }

    /// ns per program run of the attached configurations, one row per round (`BODY_ROUNDS`).
    fn bodies(&self) -> Result<Vec<[f64; CONFIGS.len() - 1]>> {
        // Statistics are on while this fd is open; programs loaded meanwhile start from zero.
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("enabling BPF run-time statistics")?;
        let mut rows = Vec::new();
        for round in 1..=BODY_ROUNDS {
            eprintln!("bench: program-body round {round}/{BODY_ROUNDS}");
            let body = |sample: Result<Sample>| -> Result<f64> {
                sample?.body.context("no program statistics")
            };
            let mut row = [0.0; CONFIGS.len() - 1];
            for (i, ns) in row.iter_mut().enumerate() {
                *ns = body(self.config(i + 1, true))?;
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// The capability hook, end to end (ns per kill(child, 0), one row per round, bare first
    /// and last as above), and the hook's body (ns per run, task not recorded and recorded:
    /// one row per `BODY_ROUNDS` round, with statistics on).
    fn capabilities(&self, rounds: usize) -> Result<CapabilityRuns> {
        let mut rows = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            eprintln!("bench: capability hook round {round}/{rounds}");
            let before = probe_loop(&mut self.loop_cmd(Workload::CapKill))?;
            let unrecorded = self.unrecorded(Workload::CapKill, false)?.ns;
            let recorded = self.recorded(Workload::CapKill, false)?.ns;
            let after = probe_loop(&mut self.loop_cmd(Workload::CapKill))?;
            rows.push([(before + after) / 2.0, unrecorded, recorded]);
        }
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("enabling BPF run-time statistics")?;
        let mut bodies = Vec::new();
        for _ in 0..BODY_ROUNDS {
            let body = |sample: Result<Sample>| -> Result<f64> {
                sample?.body.context("no program statistics")
            };
            self.mark_loaded();
            let unrecorded = body(self.unrecorded(Workload::CapKill, true))?;
            self.mark_loaded();
            bodies.push([unrecorded, body(self.recorded(Workload::CapKill, true))?]);
        }
        Ok((rows, bodies))
    }

    fn loop_cmd(&self, workload: Workload) -> Command {
        let mut cmd = Command::new(&self.probe);
        cmd.arg(workload.probe_arg())
            .arg(self.iterations.to_string());
        cmd
    }

    fn bare(&self) -> Result<f64> {
        probe_loop(&mut self.loop_cmd(Workload::Getppid))
    }

    fn floor(&self, body: bool) -> Result<Sample> {
        let mut holder = Command::new(self.syscribe)
            .arg("bench-floor")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting syscribe bench-floor")?;
        let line = first_line(holder.stdout.take().context("stdout")?)?;
        if line.trim() != "attached" {
            let _ = holder.kill();
            bail!("syscribe bench-floor did not attach: {line:?}");
        }
        let ns = self.bare();
        let body = body
            .then(|| self.program_body(|name| name == "syscribe_floor"))
            .transpose();
        drop(holder.stdin.take());
        holder.wait()?;
        Ok(Sample {
            ns: ns?,
            body: body?,
        })
    }

    /// syscribe records a `sleep` in its own cgroup while the loop runs outside it.
    fn unrecorded(&self, workload: Workload, body: bool) -> Result<Sample> {
        let mut recording = Command::new(self.syscribe)
            .args(["record", "-o", "/dev/null", "--", "sleep", "3600"])
            .stderr(Stdio::null())
            .spawn()
            .context("starting syscribe record")?;
        let procs = self
            .cgroup2
            .join(format!("syscribe/record-{}/cgroup.procs", recording.id()));
        // The programs are attached before the command joins its cgroup.
        let started = wait_until(Duration::from_secs(10), || {
            fs::read_to_string(&procs).is_ok_and(|pids| !pids.trim().is_empty())
        });
        let ns = started.and_then(|()| probe_loop(&mut self.loop_cmd(workload)));
        let body = body
            .then(|| self.program_body(is_hook(workload)))
            .transpose();
        stop(&mut recording)?;
        Ok(Sample {
            ns: ns?,
            body: body?,
        })
    }

    /// syscribe records the loop itself (through a shell that waits so the program's
    /// statistics can be read before syscribe detaches it).
    fn recorded(&self, workload: Workload, body: bool) -> Result<Sample> {
        let profile = self.scratch.join("loop.json");
        let script = format!(
            "{} {} {}; read _; exit 0",
            self.probe.display(),
            workload.probe_arg(),
            self.iterations
        );
        let mut recording = Command::new(self.syscribe)
            .arg("record")
            .arg("-o")
            .arg(&profile)
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting syscribe record")?;
        let line = first_line(recording.stdout.take().context("stdout")?)?;
        let ns = line
            .trim()
            .parse::<f64>()
            .with_context(|| format!("the recorded loop printed {line:?}"));
        let body = body
            .then(|| self.program_body(is_hook(workload)))
            .transpose();
        recording.stdin.take().context("stdin")?.write_all(b"\n")?;
        let status = recording.wait()?;
        if !status.success() {
            bail!("syscribe record of the loop failed: {status}");
        }
        let text = fs::read_to_string(&profile)?;
        let (needle, what) = match workload {
            Workload::Getppid => ("\"getppid\"", "getppid"),
            Workload::CapKill => ("\"CAP_KILL\"", "CAP_KILL"),
        };
        if !text.contains(needle) {
            bail!("the recorded run did not record {what}: the measurement would be meaningless");
        }
        Ok(Sample {
            ns: ns?,
            body: body?,
        })
    }

    /// `count` pods recorded by one `syscribe record --cgroup …` (their cgroups at two depths,
    /// as the kubelet lays out guaranteed and burstable pods), the loop outside them or in a
    /// container of the first one (at the deeper level: two levels to look at on a miss).
    fn pods(&self, count: usize, in_container: bool, body: bool) -> Result<Sample> {
        let base = self.cgroup2.join("syscribe-bench-pods");
        let mut made = Vec::new();
        let result = self.pods_in(&base, &mut made, count, in_container, body);
        for dir in made.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
        result
    }

    fn pods_in(
        &self,
        base: &Path,
        made: &mut Vec<PathBuf>,
        count: usize,
        in_container: bool,
        body: bool,
    ) -> Result<Sample> {
        let mut mkdir = |dir: PathBuf| -> Result<PathBuf> {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            made.push(dir.clone());
            Ok(dir)
        };
        mkdir(base.to_owned())?;
        mkdir(base.join("burstable"))?;
        let pods = (0..count)
            .map(|i| match i % 2 {
                0 => mkdir(base.join("burstable").join(format!("pod{i}"))),
                _ => mkdir(base.join(format!("pod{i}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self.scratch.join(format!("pods-{count}"));
        let mut recording = Command::new(self.syscribe)
            .arg("record")
            .args(pods.iter().flat_map(|pod| [Path::new("--cgroup"), pod]))
            .arg("-o")
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting syscribe record --cgroup")?;
        // Ready once it said so for every pod; its log is drained to its end meanwhile.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let stderr = recording.stderr.take().context("stderr")?;
        let drain = thread::spawn(move || {
            let mut said = 0;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("recording the containers of this cgroup") {
                    said += 1;
                    if said == count {
                        let _ = ready_tx.send(());
                    }
                }
            }
        });
        let started = ready
            .recv_timeout(Duration::from_secs(60))
            .context("syscribe record --cgroup never recorded every pod");
        let measured = started.and_then(|()| {
            let ns = if in_container {
                let container = mkdir(pods[0].join("loop"))?;
                probe_loop(Command::new("sh").arg("-c").arg(format!(
                    "echo $$ > {} && exec {} loop {}",
                    container.join("cgroup.procs").display(),
                    self.probe.display(),
                    self.iterations
                )))?
            } else {
                self.bare()?
            };
            let body = body.then(|| self.program_body(is_recorder)).transpose()?;
            Ok(Sample { ns, body })
        });
        stop(&mut recording)?;
        let _ = drain.join();
        let sample = measured?;
        if in_container {
            let text = fs::read_to_string(out.join("loop.json"))
                .context("no profile for the loop's container")?;
            if !text.contains("\"getppid\"") {
                bail!(
                    "the loop's container did not record getppid: the measurement would be meaningless"
                );
            }
        }
        Ok(sample)
    }

    /// bpftrace counting syscalls per id for one cgroup (the loop's), the classic one-liner.
    fn bpftrace(&self, body: bool) -> Result<Sample> {
        // Per run of the bench: two benches at once (two worktrees) must not share it.
        let cgroup = self
            .cgroup2
            .join(format!("syscribe-bench-bpftrace-{}", std::process::id()));
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
            .stderr(Stdio::null())
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
        let ns = probe_loop(Command::new("sh").arg("-c").arg(format!(
            "echo $$ > {} && exec {} loop {}",
            procs.display(),
            self.probe.display(),
            self.iterations
        )));
        let body = body
            .then(|| {
                self.program_body(|name| {
                    !name.starts_with("syscribe") && name.contains("sys_enter")
                })
            })
            .transpose();
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
        Ok(Sample {
            ns: ns?,
            body: body?,
        })
    }
}

fn is_recorder(name: &str) -> bool {
    // Kernel program names are cut to 15 characters.
    name == "syscribe_sys_en"
}

/// The program a workload exercises: the recorder, or the capability hook.
fn is_hook(workload: Workload) -> fn(&str) -> bool {
    match workload {
        Workload::Getppid => is_recorder,
        // syscribe_capable, cut to 15 characters.
        Workload::CapKill => |name| name == "syscribe_capabl",
    }
}

/// ns per run of the (single) loaded program whose name matches, from BPF statistics.
impl Bench<'_> {
    /// ns per run of the (single) program loaded since the configuration started whose name
    /// matches, from BPF statistics.
    /// Remembers the programs loaded now: not the next configuration's.
    fn mark_loaded(&self) {
        *self.loaded_before.borrow_mut() = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|info| info.id())
            .collect();
    }

    fn program_body(&self, matches: impl Fn(&str) -> bool) -> Result<f64> {
        let before = self.loaded_before.borrow();
        let found: Vec<(String, u64, Duration)> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|info| !before.contains(&info.id()))
            .filter_map(|info| {
                let name = info.name_as_str()?.to_owned();
                matches(&name).then(|| (name, info.run_count(), info.run_time()))
            })
            .collect();
        match found.as_slice() {
            [(_, count, time)] if *count > 0 => Ok(time.as_nanos() as f64 / *count as f64),
            [(name, ..)] => bail!("program {name} has no run statistics"),
            _ => bail!(
                "expected one matching program, found {:?}",
                found.iter().map(|f| &f.0).collect::<Vec<_>>()
            ),
        }
    }
}

/// The median of `values` and half their interquartile range: how far a round typically
/// strays — the noise a difference between two rows must clear to mean something.
fn spread(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[n / 2], (values[(3 * n) / 4] - values[n / 4]) / 2.0)
}

fn print_report(
    rows: &[[f64; CONFIGS.len()]],
    bodies: &[[f64; CONFIGS.len() - 1]],
    iterations: u64,
    rounds: usize,
) {
    let col = |i: usize| -> Vec<f64> { rows.iter().map(|r| r[i]).collect() };
    let added = |i: usize| spread(rows.iter().map(|r| r[i] - r[0]).collect());
    let body = |i: usize| spread(bodies.iter().map(|r| r[i]).collect());
    let floor_added = added(1).0;
    let floor_body = body(0).0;
    println!();
    println!(
        "recorder overhead: getppid x {iterations} on one CPU, {rounds} interleaved rounds (medians);"
    );
    println!(
        "program body: ns per program run with BPF run-time statistics on ({BODY_ROUNDS} rounds);"
    );
    println!("± is half the interquartile range over the rounds (the run's own noise)");
    println!(
        "{:<40} {:>10} {:>15} {:>13} {:>13} {:>13}",
        "configuration", "ns/syscall", "added ns", "added / floor", "body ns", "est. / floor"
    );
    for (i, name) in CONFIGS.iter().enumerate() {
        let ns = median(col(i));
        if i == 0 {
            println!(
                "{name:<40} {ns:>10.1} {:>15} {:>13} {:>13} {:>13}",
                "-", "-", "-", "-"
            );
            continue;
        }
        let (added_i, added_noise) = added(i);
        let (body_i, body_noise) = body(i - 1);
        // The floor's added cost plus what this configuration's body costs beyond the floor's.
        let estimate = (floor_added + body_i - floor_body) / floor_added;
        println!(
            "{name:<40} {ns:>10.1} {:>15} {:>12.2}x {:>13} {estimate:>12.2}x",
            format!("{added_i:+.1} ±{added_noise:.1}"),
            added_i / floor_added,
            format!("{body_i:.1} ±{body_noise:.1}"),
        );
    }
    println!();
    println!("goals: recorded <= 1.20x floor, not recorded <= 1.10x floor, well below bpftrace;");
    println!("the same with 1, 10 or 110 pods recorded");
    println!("(est. / floor = (floor's added ns + body ns - floor's body ns) / floor's added ns)");
}

fn print_capability_report((rows, bodies): &CapabilityRuns, iterations: u64, rounds: usize) {
    let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
    let added = |i: usize| spread(rows.iter().map(|r| r[i] - r[0]).collect());
    let body = |i: usize| spread(bodies.iter().map(|b| b[i]).collect());
    println!();
    println!(
        "capability hook (cap_capable tracepoint): kill(child, 0) x {iterations}, one CAP_KILL check each, {rounds} interleaved rounds (medians)"
    );
    println!(
        "{:<40} {:>10} {:>15} {:>9} {:>13}",
        "configuration", "ns/call", "added ns", "x bare", "hook body ns"
    );
    for (i, name) in CAPABILITY_CONFIGS.iter().enumerate() {
        let ns = col(i);
        if i == 0 {
            println!("{name:<40} {ns:>10.1} {:>15} {:>9} {:>13}", "-", "-", "-");
        } else {
            let ((added_i, added_noise), (body_i, body_noise)) = (added(i), body(i - 1));
            println!(
                "{name:<40} {ns:>10.1} {:>15} {:>8.2}x {:>13}",
                format!("{added_i:+.1} ±{added_noise:.1}"),
                ns / col(0),
                format!("{body_i:.1} ±{body_noise:.1}"),
            );
        }
    }
    println!(
        "(kill is a syscall too: the added ns hold the sys_enter recorder's cost as well as the hook's;"
    );
    println!("hook body: ns per run of syscribe_capable with BPF run-time statistics on)");
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

fn first_line(stdout: ChildStdout) -> Result<String> {
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    Ok(line)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_median_and_half_the_interquartile_range() {
        let values: Vec<f64> = (1..=8).map(f64::from).collect();
        assert_eq!(spread(values), (5.0, 2.0));
        assert_eq!(spread(vec![3.0]), (3.0, 0.0));
        // One wild round moves neither.
        let (median, noise) = spread(vec![10.0, 11.0, 10.5, 900.0, 10.2]);
        assert_eq!(median, 10.5);
        assert!((noise - 0.4).abs() < 1e-9, "{noise}");
    }
}
