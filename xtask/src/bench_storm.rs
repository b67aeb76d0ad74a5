//! `cargo xtask bench storm`: a real kernel denial storm read from the audit netlink multicast
//! group by plain readers and by `syscribe enrich`, side by side (see [`storm`]).

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::bench_enricher::median;

/// `cargo xtask bench storm`: a real denial storm — one process calling getppid `calls` times
/// under a seccomp filter whose only rule logs getppid (SCMP_ACT_LOG), so the kernel emits one
/// audit record per call, as fast as it can — read from the audit netlink multicast group by
/// several readers in turn. For each: records emitted, read and lost (the socket's ENOBUFS
/// overflows and serial gaps; the kernel's own drops from its audit status), the CPU each
/// reader spent per record, and the socket buffer it got. Ratios and counts, no assertions.
pub fn storm(syscribe: &Path, probe: &Path, calls: u64) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("syscribe-bench-storm-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let profile = scratch.join("getppid-log.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}"#,
    )?;
    // The kernel's backlog (64 here) makes a storm's producer wait for room; the wait can miss
    // its wake-up and last the whole backlog_wait_time (60 s, seen every time at 64): raised
    // for the run, restored after.
    let backlog_before = audit_status()?
        .get("backlog_limit")
        .copied()
        .context("no backlog_limit in auditctl -s")?;
    set_backlog(STORM_BACKLOG)?;
    let storm = Storm {
        syscribe,
        probe: fs::canonicalize(probe)
            .with_context(|| format!("the storm workload {}", probe.display()))?,
        profile,
        calls,
    };
    let result = storm.run_all();
    let _ = fs::remove_dir_all(&scratch);
    let status = audit_status();
    set_backlog(backlog_before)?;
    let rows = result?;
    let status = status?;
    println!();
    println!(
        "storm: one process, {calls} getppid calls logged by seccomp (one audit record each), read from the audit netlink multicast group; median of {STORM_ROUNDS} interleaved rounds"
    );
    println!(
        "kernel audit during the run: rate_limit {} /s, backlog_limit {} (raised from {backlog_before}), backlog_wait_time {} (producers wait for room instead of dropping), lost since boot {}",
        status.get("rate_limit").copied().unwrap_or_default(),
        status.get("backlog_limit").copied().unwrap_or_default(),
        status.get("backlog_wait_time").copied().unwrap_or_default(),
        status.get("lost").copied().unwrap_or_default(),
    );
    println!(
        "{:<58} {:>9} {:>9} {:>8} {:>9} {:>8} {:>11} {:>9} {:>10}",
        "reader",
        "emitted",
        "read",
        "lost",
        "overflows",
        "k.lost",
        "records/s",
        "CPU ns/r",
        "rcvbuf KiB"
    );
    for row in rows {
        println!(
            "{:<58} {:>9} {:>9} {:>8} {:>9} {:>8} {:>11.0} {:>9} {:>10}",
            row.name,
            row.emitted,
            row.read.map_or("-".into(), |n| n.to_string()),
            row.lost.map_or("-".into(), |n| n.to_string()),
            row.overflows.map_or("-".into(), |n| n.to_string()),
            row.kernel_lost,
            row.rate,
            row.cpu_ns_per_record
                .map_or("-".into(), |ns| format!("{ns:.0}")),
            row.rcvbuf_kib.map_or("-".into(), |n| n.to_string()),
        );
    }
    println!(
        "emitted: calls the storm made; read: its records the reader got; lost: what the reader counted missing (the socket's drop counter, serial gaps); overflows: ENOBUFS errors (plain readers) or socket drops (syscribe); k.lost: the kernel's own drops meanwhile (auditctl -s lost); records/s: the storm's rate while read; CPU ns/r: the reader's CPU time per record read"
    );
    Ok(())
}

const STORM_ROUNDS: usize = 3;
/// The kernel audit backlog during the storm benchmark.
const STORM_BACKLOG: u64 = 8192;

fn set_backlog(limit: u64) -> Result<()> {
    let out = Command::new("auditctl")
        .args(["-b", &limit.to_string()])
        .output()
        .context("auditctl -b")?;
    if !out.status.success() {
        bail!(
            "auditctl -b {limit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

struct Storm<'a> {
    syscribe: &'a Path,
    probe: PathBuf,
    profile: PathBuf,
    calls: u64,
}

/// One reader's result (medians over the rounds).
struct Row {
    name: &'static str,
    emitted: u64,
    read: Option<u64>,
    lost: Option<u64>,
    overflows: Option<u64>,
    kernel_lost: u64,
    rate: f64,
    cpu_ns_per_record: Option<f64>,
    rcvbuf_kib: Option<u64>,
}

/// One run's numbers.
#[derive(Default, Clone, Copy)]
struct Sample {
    read: Option<u64>,
    lost: Option<u64>,
    overflows: Option<u64>,
    kernel_lost: u64,
    rate: f64,
    cpu_ns: Option<f64>,
    rcvbuf: Option<u64>,
}

#[derive(Clone, Copy)]
enum Reader {
    Nobody,
    Plain { batched: bool, rcvbuf: usize },
    Syscribe { every_line: bool },
}

const READERS: [(&str, Reader); 5] = [
    ("nobody listening (the storm's own rate)", Reader::Nobody),
    (
        "plain reader: recv() per record, default buffer",
        Reader::Plain {
            batched: false,
            rcvbuf: 0,
        },
    ),
    (
        "plain reader: recvmmsg x64, 64 MiB forced buffer",
        Reader::Plain {
            batched: true,
            rcvbuf: 64 << 20,
        },
    ),
    (
        "syscribe enrich --source netlink (per-source share)",
        Reader::Syscribe { every_line: false },
    ),
    (
        "syscribe enrich ... --per-source-rate 0 (every line)",
        Reader::Syscribe { every_line: true },
    ),
];

impl Storm<'_> {
    fn run_all(&self) -> Result<Vec<Row>> {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); READERS.len()];
        for round in 0..STORM_ROUNDS {
            for (i, (name, reader)) in READERS.iter().enumerate() {
                eprintln!("bench: round {}/{STORM_ROUNDS}: {name}", round + 1);
                samples[i].push(self.once(*reader)?);
            }
        }
        Ok(READERS
            .iter()
            .zip(samples)
            .map(|((name, _), samples)| {
                let med = |f: &dyn Fn(&Sample) -> Option<f64>| {
                    let values: Vec<f64> = samples.iter().filter_map(f).collect();
                    (!values.is_empty()).then(|| median(values))
                };
                Row {
                    name,
                    emitted: self.calls,
                    read: med(&|s| s.read.map(|n| n as f64)).map(|n| n as u64),
                    lost: med(&|s| s.lost.map(|n| n as f64)).map(|n| n as u64),
                    overflows: med(&|s| s.overflows.map(|n| n as f64)).map(|n| n as u64),
                    kernel_lost: med(&|s| Some(s.kernel_lost as f64)).unwrap_or(0.0) as u64,
                    rate: med(&|s| Some(s.rate)).unwrap_or(0.0),
                    cpu_ns_per_record: med(&|s| s.cpu_ns),
                    rcvbuf_kib: med(&|s| s.rcvbuf.map(|n| n as f64)).map(|n| n as u64 >> 10),
                }
            })
            .collect())
    }

    /// Runs the storm; returns its rate (records/s).
    fn storm(&self) -> Result<f64> {
        let start = Instant::now();
        let status = Command::new(self.syscribe)
            .arg("run")
            .arg("--profile")
            .arg(&self.profile)
            .arg("--")
            .arg(&self.probe)
            .args(["loop", &self.calls.to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running the storm")?;
        if !status.success() {
            bail!("the storm failed: {status}");
        }
        Ok(self.calls as f64 / start.elapsed().as_secs_f64())
    }

    fn once(&self, reader: Reader) -> Result<Sample> {
        let before = audit_status()?.get("lost").copied().unwrap_or_default();
        let mut sample = match reader {
            Reader::Nobody => Sample {
                rate: self.storm()?,
                ..Sample::default()
            },
            Reader::Plain { batched, rcvbuf } => self.plain(batched, rcvbuf)?,
            Reader::Syscribe { every_line } => self.syscribe(every_line)?,
        };
        let after = audit_status()?.get("lost").copied().unwrap_or_default();
        sample.kernel_lost = after.saturating_sub(before);
        Ok(sample)
    }

    /// A reader thread in this process doing nothing but counting the storm's records.
    fn plain(&self, batched: bool, rcvbuf: usize) -> Result<Sample> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let socket = plain::Socket::open(rcvbuf)?;
        let granted = socket.rcvbuf;
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || socket.count(batched, &stop))
        };
        let rate = self.storm()?;
        // Drained: the reader has seen nothing for a while.
        std::thread::sleep(std::time::Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let counted = reader.join().expect("reader thread")?;
        Ok(Sample {
            read: Some(counted.seccomp),
            lost: Some(counted.missing),
            overflows: Some(counted.overflows),
            rate,
            cpu_ns: Some(counted.cpu_ns as f64 / counted.records.max(1) as f64),
            rcvbuf: Some(granted as u64),
            ..Sample::default()
        })
    }

    fn syscribe(&self, every_line: bool) -> Result<Sample> {
        let err_path =
            std::env::temp_dir().join(format!("syscribe-bench-storm-{}.err", std::process::id()));
        let mut cmd = Command::new(self.syscribe);
        cmd.args([
            "enrich",
            "--follow",
            "--source",
            "netlink",
            "--metrics-addr",
            "127.0.0.1:0",
        ]);
        if every_line {
            cmd.args(["--per-source-rate", "0"]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_path)?)
            .spawn()
            .context("starting syscribe enrich")?;
        let result = (|| -> Result<Sample> {
            let deadline = Instant::now() + std::time::Duration::from_secs(20);
            let stderr = loop {
                let stderr = fs::read_to_string(&err_path)?;
                if stderr.contains("reading the audit netlink multicast group") {
                    break stderr;
                }
                if Instant::now() > deadline {
                    bail!("syscribe enrich did not start: {stderr}");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let addr = stderr
                .lines()
                .find_map(|l| {
                    l.strip_prefix("syscribe: metrics on http://")?
                        .strip_suffix("/metrics")
                })
                .context("no metrics address")?
                .to_owned();
            let rcvbuf = stderr.lines().find_map(|l| {
                l.strip_prefix("syscribe: netlink receive buffer: ")?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
            // Its start-up (eBPF loading…) is not the storm's cost.
            let cpu_before = process_cpu_ns(child.id())?;
            let rate = self.storm()?;
            // Drained: the storm's series stops growing.
            let exe = format!("executable=\"{}\"", self.probe.display());
            let mut last = u64::MAX;
            let read = loop {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let metrics = http_get(&addr, "/metrics")?;
                let now = metrics
                    .lines()
                    .find(|l| l.contains(&exe))
                    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                    .unwrap_or(0);
                if now == last {
                    break now;
                }
                last = now;
            };
            let cpu_ns = process_cpu_ns(child.id())?.saturating_sub(cpu_before);
            Ok(Sample {
                read: Some(read),
                rate,
                cpu_ns: Some(cpu_ns as f64 / read.max(1) as f64),
                rcvbuf: rcvbuf.map(|kib| kib << 10),
                ..Sample::default()
            })
        })();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait()?;
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&err_path);
        let mut sample = result?;
        if !status.success() {
            bail!("syscribe enrich failed: {status}: {stderr}");
        }
        let summary = stderr
            .lines()
            .rfind(|l| l.contains(" lines, "))
            .with_context(|| format!("no summary: {stderr}"))?;
        let count = |label: &str| {
            summary
                .split([',', ';'])
                .find_map(|part| part.trim().strip_suffix(label)?.trim().parse::<u64>().ok())
        };
        sample.lost = count("lost");
        sample.overflows = count("socket overflows");
        Ok(sample)
    }
}

/// User + system CPU of a process so far (all its threads), from /proc (clock ticks).
fn process_cpu_ns(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name's closing parenthesis: state is field 3; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// `auditctl -s` as numbers by name.
fn audit_status() -> Result<std::collections::BTreeMap<String, u64>> {
    let out = Command::new("auditctl")
        .arg("-s")
        .output()
        .context("auditctl -s (Debian's auditd)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

fn http_get(addr: &str, path: &str) -> Result<String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The least a reader of the audit multicast group can do: receive and count.
mod plain {
    use std::{
        io,
        os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        sync::atomic::{AtomicBool, Ordering},
    };

    const MESSAGE: usize = 9 * 1024;
    const BATCH: usize = 64;
    const AUDIT_SECCOMP: u16 = 1326;

    pub struct Socket {
        fd: OwnedFd,
        pub rcvbuf: usize,
    }

    pub struct Counted {
        pub records: u64,
        pub seccomp: u64,
        pub missing: u64,
        pub overflows: u64,
        pub cpu_ns: u64,
    }

    impl Socket {
        /// Joins the group; `rcvbuf` 0 keeps the default buffer, else forces that size.
        pub fn open(rcvbuf: usize) -> io::Result<Self> {
            // SAFETY: plain socket(2), owned at once.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_AUDIT,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let int = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if rcvbuf > 0 {
                let size = rcvbuf as libc::c_int;
                // SAFETY: valid fd, a live c_int.
                if unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        (&size as *const libc::c_int).cast(),
                        int,
                    )
                } < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // SAFETY: zeroed sockaddr_nl is valid.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = 1; // AUDIT_NLGRP_READLOG
            // SAFETY: valid fd and address.
            if unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut granted: libc::c_int = 0;
            let mut len = int;
            // SAFETY: valid fd, a live c_int and its length.
            unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&mut granted as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            Ok(Self {
                fd,
                rcvbuf: granted as usize,
            })
        }

        /// Counts records until `stop`; then the thread's CPU time.
        pub fn count(self, batched: bool, stop: &AtomicBool) -> io::Result<Counted> {
            let mut bufs = vec![0u8; BATCH * MESSAGE];
            let batch = if batched { BATCH } else { 1 };
            let mut c = Counted {
                records: 0,
                seccomp: 0,
                missing: 0,
                overflows: 0,
                cpu_ns: 0,
            };
            let mut last_serial: Option<u64> = None;
            while !stop.load(Ordering::Relaxed) {
                let mut pollfd = libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pollfd, 1, 100) } <= 0 {
                    continue;
                }
                // SAFETY: zeroed headers are valid; each iovec points at its own slot.
                let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
                let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
                for (i, (iov, msg)) in iovecs.iter_mut().zip(msgs.iter_mut()).enumerate() {
                    iov.iov_base = bufs[i * MESSAGE..].as_mut_ptr().cast();
                    iov.iov_len = MESSAGE;
                    msg.msg_hdr.msg_iov = iov;
                    msg.msg_hdr.msg_iovlen = 1;
                }
                let n = if batched {
                    // SAFETY: BATCH valid headers.
                    unsafe {
                        libc::recvmmsg(
                            self.fd.as_raw_fd(),
                            msgs.as_mut_ptr(),
                            batch as libc::c_uint,
                            libc::MSG_DONTWAIT,
                            std::ptr::null_mut(),
                        )
                    }
                } else {
                    // SAFETY: one slot of MESSAGE bytes.
                    let n = unsafe {
                        libc::recv(
                            self.fd.as_raw_fd(),
                            bufs.as_mut_ptr().cast(),
                            MESSAGE,
                            libc::MSG_DONTWAIT,
                        )
                    };
                    msgs[0].msg_len = n.max(0) as libc::c_uint;
                    if n < 0 { -1 } else { 1 }
                };
                if n < 0 {
                    let err = io::Error::last_os_error();
                    match err.raw_os_error() {
                        Some(libc::ENOBUFS) => c.overflows += 1,
                        Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                        _ => return Err(err),
                    }
                    continue;
                }
                for (i, msg) in msgs.iter().enumerate().take(n as usize) {
                    let slot =
                        &bufs[i * MESSAGE..i * MESSAGE + (msg.msg_len as usize).min(MESSAGE)];
                    if slot.len() < 16 {
                        continue;
                    }
                    c.records += 1;
                    if u16::from_ne_bytes([slot[4], slot[5]]) == AUDIT_SECCOMP {
                        c.seccomp += 1;
                    }
                    if let Some(serial) = serial_of(&slot[16..]) {
                        if let Some(last) = last_serial
                            && serial > last
                        {
                            c.missing += serial - last - 1;
                        }
                        last_serial = Some(last_serial.map_or(serial, |l| l.max(serial)));
                    }
                }
            }
            c.missing = c.missing.max(drops(&self.fd));
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a live timespec.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            c.cpu_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            Ok(c)
        }
    }

    /// The socket's drop counter (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`): records the kernel
    /// dropped because the buffer was full (or the socket congested after an ENOBUFS).
    fn drops(fd: &OwnedFd) -> u64 {
        let mut info = [0u32; 9];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: valid fd, a live buffer and its length.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 { u64::from(info[8]) } else { 0 }
    }

    /// `audit(SECONDS.MILLIS:SERIAL): …` → SERIAL.
    fn serial_of(text: &[u8]) -> Option<u64> {
        let head = text.strip_prefix(b"audit(")?;
        let close = head.iter().take(48).position(|b| *b == b')')?;
        let colon = head[..close].iter().position(|b| *b == b':')?;
        std::str::from_utf8(&head[colon + 1..close])
            .ok()?
            .parse()
            .ok()
    }
}
