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

/// Wall seconds of a command with stdout discarded.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(secs)
}

/// Peak resident set of the largest child waited for so far, in MiB.
fn children_max_rss_mib() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

pub fn enricher(syscribe: &Path, records: u64) -> Result<()> {
    let file =
        std::env::temp_dir().join(format!("syscribe-bench-audit-{}.log", std::process::id()));
    eprintln!("bench: writing {records} records to {}", file.display());
    generate(&file, records)?;
    let source = format!("file={}", file.display());
    let result = (|| -> Result<(f64, f64, f64, f64)> {
        // syscribe first: the children's peak RSS read right after it is its own.
        let ours = timed(
            Command::new(syscribe).args(["enrich", "--source", &source, "--format", "json"]),
        )?;
        let rss = children_max_rss_mib();
        let raw = timed(Command::new("ausearch").arg("--raw").arg("-if").arg(&file))?;
        let interpreted = timed(Command::new("ausearch").arg("-i").arg("-if").arg(&file))?;
        Ok((ours, rss, raw, interpreted))
    })();
    let _ = fs::remove_file(&file);
    let (ours, rss, raw, interpreted) = result?;
    let rate = |secs: f64| records as f64 / secs;
    println!();
    println!(
        "enricher: {records} mixed audit.log records (60% seccomp, 20% AVC, 10% AppArmor, 10% other), one thread"
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
