//! `cargo xtask bench enricher`: parse + enrich + format a generated audit.log of mixed
//! records in one thread, side by side with `ausearch --raw` and `ausearch -i` on the same file.

use std::{
    fs,
    io::{BufWriter, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// Writes `records` audit.log lines: 6/10 seccomp (LOG and KILL, several syscalls), 2/10 AVC,
/// 1/10 AppArmor, 1/10 SYSCALL (not a denial: parsed and skipped).
fn generate(path: &Path, records: u64) -> Result<()> {
    let mut out = BufWriter::new(
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for i in 0..records {
        let (secs, millis, serial) = (1_795_703_105 + i / 1000, i % 1000, i + 1);
        let header = format!("msg=audit({secs}.{millis:03}:{serial}):");
        let pid = 4_000_000 + i % 64;
        let line = match i % 10 {
            0..=5 => format!(
                "type=SECCOMP {header} auid=4294967295 uid=0 gid=0 ses=4294967295 pid={pid} comm=\"app\" exe=\"/usr/bin/app\" sig=0 arch=c000003e syscall={} compat=0 ip=0x7f5c6cd5a4f7 code={}",
                [0, 1, 2, 59, 110, 162, 257][(i % 7) as usize],
                if i % 2 == 0 {
                    "0x7ffc0000"
                } else {
                    "0x80000000"
                }
            ),
            6 | 7 => format!(
                "type=AVC {header} avc:  denied  {{ read write }} for  pid={pid} comm=\"cat\" name=\"secret\" dev=\"vda\" ino=1234 scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"
            ),
            8 => format!(
                "type=AVC {header} apparmor=\"DENIED\" operation=\"open\" profile=\"cri-containerd.apparmor.d\" name=\"/etc/shadow\" pid={pid} comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"
            ),
            _ => format!(
                "type=SYSCALL {header} arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=2 ppid=1 pid={pid} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"app\" exe=\"/usr/bin/app\" key=(null)"
            ),
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Wall seconds and peak RSS (MiB) of a command with stdout discarded. The peak is the
/// process's own `VmHWM`, read while it runs (monotonic: the last reading is the peak but for
/// the final few ms). Not rusage: a child's high-water mark there also counts the address
/// space it was forked from, which here is xtask's, ten times syscribe's.
fn timed(cmd: &mut Command) -> Result<(f64, f64)> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0_f64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(kib) = fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok((secs, peak_kib / 1024.0))
}

const ROUNDS: usize = 3;

pub(crate) fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `VmHWM:   4228 kB` → 4228.
fn vm_hwm_kib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn enricher(syscribe: &Path, records: u64) -> Result<()> {
    let file =
        std::env::temp_dir().join(format!("syscribe-bench-audit-{}.log", std::process::id()));
    eprintln!("bench: writing {records} records to {}", file.display());
    generate(&file, records)?;
    let source = format!("file={}", file.display());
    // Interleaved rounds, medians: this VM's speed drifts by tens of percent from run to run.
    let result = (|| -> Result<(f64, f64, f64, f64)> {
        let (mut ours, mut raw, mut interpreted, mut rss) =
            (Vec::new(), Vec::new(), Vec::new(), 0.0_f64);
        for _ in 0..ROUNDS {
            let (secs, peak) = timed(
                Command::new(syscribe).args(["enrich", "--source", &source, "--format", "json"]),
            )?;
            ours.push(secs);
            rss = rss.max(peak);
            raw.push(timed(Command::new("ausearch").arg("--raw").arg("-if").arg(&file))?.0);
            interpreted.push(timed(Command::new("ausearch").arg("-i").arg("-if").arg(&file))?.0);
        }
        Ok((median(ours), rss, median(raw), median(interpreted)))
    })();
    let _ = fs::remove_file(&file);
    let (ours, rss, raw, interpreted) = result?;
    let rate = |secs: f64| records as f64 / secs;
    println!();
    println!(
        "enricher: {records} mixed audit.log records (60% seccomp, 20% AVC, 10% AppArmor, 10% other), one thread, median of {ROUNDS} interleaved rounds"
    );
    println!(
        "{:<44} {:>9} {:>14} {:>16}",
        "", "seconds", "records/s", "syscribe faster"
    );
    println!(
        "{:<44} {ours:>9.2} {:>14.0} {:>16}",
        "syscribe enrich --format json",
        rate(ours),
        "-"
    );
    println!(
        "{:<44} {raw:>9.2} {:>14.0} {:>15.1}x",
        "ausearch --raw",
        rate(raw),
        raw / ours
    );
    println!(
        "{:<44} {interpreted:>9.2} {:>14.0} {:>15.1}x",
        "ausearch -i",
        rate(interpreted),
        interpreted / ours
    );
    println!("syscribe peak RSS: {rss:.1} MiB");
    println!("goals: >= 1M records/s, >= 100x ausearch");
    Ok(())
}
