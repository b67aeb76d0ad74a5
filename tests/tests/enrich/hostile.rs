//! `syscribe enrich` against hostile and overwhelming input: forged process names, floods of
//! distinct keys, denial storms from one source, idle pipes, devices and endless lines.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use syscribe_tests::*;

use super::{http_get, sync_under};

/// The benchmark workload: getppid N times (see tests/src/bin/syscall-probe.rs).
const PROBE: &str = env!("CARGO_BIN_EXE_syscall-probe");

/// A `syscribe enrich` whose stdout and stderr go to files (any format, read whole).
struct Enricher {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Enricher {
    fn spawn(dir: &TempDir, tag: &str, args: &[&str], stdin: Stdio) -> Self {
        let out = dir.join(&format!("{tag}.out"));
        let err = dir.join(&format!("{tag}.err"));
        let child = syscribe()
            .arg("enrich")
            .args(args)
            .stdin(stdin)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn syscribe enrich");
        Self { child, out, err }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap()
    }

    /// Waits (up to `timeout`) until `ready(stderr)` or `ready(stdout)` holds.
    fn wait_until(&self, timeout: Duration, what: &str, ready: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(&self.stdout(), &self.stderr()) {
            assert!(
                Instant::now() < deadline,
                "never {what}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; the exit must come within `limit`. Returns the status and stderr.
    fn stop_within(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        self.stop_with(libc::SIGTERM, limit)
    }

    /// `sig`; the exit must come within `limit`. Returns the status and stderr.
    fn stop_with(
        &mut self,
        sig: libc::c_int,
        limit: Duration,
    ) -> (std::process::ExitStatus, String) {
        signal(self.child.id(), sig);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "syscribe enrich did not exit within {limit:?} of SIGTERM; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Enricher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that names itself "\naction=allow\x1b[7m" (its kernel `comm`, cut to 15 bytes:
/// the name of the link it was run through) and makes a logged denial: the text output keeps it one escaped value on one line, with no
/// raw escape byte; the JSON output carries the name exactly.
#[test]
fn a_forged_process_name_cannot_forge_a_text_line() {
    let dir = TempDir::new("enrich-forged");
    let profile = dir.join("sync-log.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sync"], "action": "SCMP_ACT_LOG"}]}"#,
    )
    .unwrap();
    let args = |format| ["--follow", "--source", "netlink", "--format", format];
    let text = Enricher::spawn(&dir, "text", &args("text"), Stdio::null());
    let json = Enricher::spawn(&dir, "json", &args("json"), Stdio::null());
    for enricher in [&text, &json] {
        enricher.wait_until(Duration::from_secs(10), "ready", |_, err| {
            err.contains("reading the audit netlink multicast group")
        });
    }
    // busybox, run through a link with that name and as `sync` (argv[0]): the kernel names
    // the process after the link.
    let link = dir.join("\naction=allow\u{1b}[7m");
    std::os::unix::fs::symlink("/bin/busybox", &link).unwrap();
    let mut child = syscribe()
        .arg("run")
        .arg("--profile")
        .arg(&profile)
        .args(["--", "/bin/busybox", "sh", "-c", r#"exec -a sync "$0""#])
        .arg(&link)
        .spawn()
        .unwrap();
    // `syscribe run` execs the shell, which execs busybox: the pid stays.
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let forged = "\naction=allow\u{1b}[";

    json.wait_until(Duration::from_secs(10), "the JSON line", |out, _| {
        out.contains(&format!("\"pid\":{pid},"))
    });
    let line: serde_json::Value = json
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["pid"] == pid)
        .unwrap();
    assert_eq!(line["comm"], forged, "JSON carries the name exactly");
    assert_eq!(line["syscallName"], "sync");

    text.wait_until(Duration::from_secs(10), "the text line", |out, _| {
        out.contains(&format!(" pid={pid} "))
    });
    let out = text.stdout();
    assert!(!out.contains('\u{1b}'), "a raw escape byte: {out:?}");
    let mine: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&format!(" pid={pid} ")))
        .collect();
    assert_eq!(mine.len(), 1, "{out:?}");
    assert!(
        mine[0].contains(r#" comm="\naction=allow\u{001b}[" "#),
        "the name is one quoted, escaped value: {}",
        mine[0]
    );
    assert!(mine[0].starts_with("action=log "), "{}", mine[0]);
    for line in out.lines() {
        assert!(
            line.contains(" timestamp=") || line.ends_with(" type=summary"),
            "every line is a whole denial (no forged line): {line:?}"
        );
    }
    for mut enricher in [text, json] {
        let (status, err) = enricher.stop_within(Duration::from_secs(5));
        assert!(status.success(), "{err}");
    }
}

/// A seccomp record line as the kernel writes it to audit.log.
fn seccomp_line(serial: u64, pid: u32, comm: &str, exe: &str, syscall: u32) -> String {
    format!(
        "type=SECCOMP msg=audit(1795703105.{:03}:{serial}): auid=4294967295 uid=0 gid=0 ses=4294967295 pid={pid} comm=\"{comm}\" exe=\"{exe}\" sig=0 arch=c000003e syscall={syscall} compat=0 ip=0x7f5c6cd5a4f7 code=0x7ffc0000\n",
        serial % 1000
    )
}

/// More distinct keys (process names) than the aggregation table holds: the rest go to one
/// "(other)" row, the counts add up to the denials read, and the summary, the metrics and the
/// text output (escaped like every line) say so.
#[test]
fn aggregation_counts_every_denial_beyond_its_table() {
    const TABLE: u64 = 65_536;
    const BEYOND: u64 = 1_000;
    let dir = TempDir::new("enrich-aggregate");
    let mut input = String::new();
    for n in 0..TABLE + BEYOND {
        input.push_str(&seccomp_line(
            n + 1,
            100,
            &format!("p{n}"),
            "/usr/bin/app",
            162,
        ));
    }
    // Three more of a key already in the table.
    for n in 0..3 {
        input.push_str(&seccomp_line(n + 1, 100, "p0", "/usr/bin/app", 162));
    }
    let denials = TABLE + BEYOND + 3;

    // Through an idle pipe: the metrics are published while it waits for more.
    let mut enricher = Enricher::spawn(
        &dir,
        "json",
        &[
            "--source",
            "-",
            "--aggregate",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        Stdio::piped(),
    );
    let mut stdin = enricher.child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    stdin.flush().unwrap();
    enricher.wait_until(Duration::from_secs(10), "the metrics address", |_, err| {
        err.contains("metrics on http://")
    });
    let addr = enricher
        .stderr()
        .lines()
        .find_map(|l| {
            l.strip_prefix("syscribe: metrics on http://")?
                .strip_suffix("/metrics")
                .map(str::to_owned)
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = http_get(&addr, "/metrics");
        if metrics.contains(&format!("syscribe_enricher_denials_total {denials}\n")) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "never all read: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains(&format!(
            "syscribe_enricher_aggregate_overflow_total {BEYOND}\n"
        )),
        "{metrics}"
    );
    drop(stdin);
    let status = enricher.child.wait().unwrap();
    let err = enricher.stderr();
    assert!(status.success(), "{err}");
    assert_eq!(summary_count(&err, "denials"), denials, "{err}");
    assert_eq!(
        summary_count(&err, "aggregated as (other)"),
        BEYOND,
        "{err}"
    );

    let rows: Vec<serde_json::Value> = enricher
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows.len() as u64,
        TABLE + 1,
        "the table's rows and one catch-all"
    );
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total, denials, "every denial is counted in some row");
    let other: Vec<_> = rows.iter().filter(|r| r["type"] == "(other)").collect();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["count"], BEYOND);
    let p0 = rows.iter().find(|r| r["comm"] == "p0").unwrap();
    assert_eq!(p0["count"], 4);

    // Text: the aggregate rows are escaped like every line (a name with a space and a quote).
    let file = dir.join("forged.log");
    std::fs::write(
        &file,
        seccomp_line(1, 100, "70206f3d22782079", "/usr/bin/app", 162)
            .replace("comm=\"70206f3d22782079\"", "comm=70206f3d22782079"),
    )
    .unwrap();
    let output = syscribe()
        .args(["enrich", "--format", "text", "--aggregate", "0", "--source"])
        .arg(format!("file={}", file.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(r#" comm="p o=\"x y" count=1 "#),
        "{}",
        stdout(&output)
    );
}

/// The kernel's audit backlog raised for one test, restored on drop: at this machine's 64, a
/// storm's producer waits for room and the wait can miss its wake-up for the whole
/// backlog_wait_time (60 s; the storm benchmark shows it).
struct Backlog {
    before: String,
}

impl Backlog {
    fn raise(limit: u32) -> Self {
        let status = std::process::Command::new("auditctl")
            .arg("-s")
            .output()
            .expect("auditctl (Debian's auditd package) is installed");
        let before = String::from_utf8_lossy(&status.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("backlog_limit ").map(str::to_owned))
            .expect("backlog_limit in auditctl -s");
        let set = std::process::Command::new("auditctl")
            .args(["-b", &limit.to_string()])
            .output()
            .unwrap();
        assert!(set.status.success(), "{}", stderr(&set));
        Self { before }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        let _ = std::process::Command::new("auditctl")
            .args(["-b", &self.before])
            .output();
    }
}

/// A storm of logged denials from one process (hundreds of thousands per second, from the
/// real kernel) does not bury another process's few denials: each source prints its share,
/// the rest of the storm is summarised with counts, and printed + summarised adds up to what
/// was read; what was not read is counted as lost.
#[test]
fn a_storm_from_one_source_does_not_hide_another() {
    const STORM: u64 = 200_000;
    require_root();
    let _backlog = Backlog::raise(8192);
    let dir = TempDir::new("enrich-storm");
    let profile = dir.join("getppid-log.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}"#,
    )
    .unwrap();
    let mut enricher = Enricher::spawn(
        &dir,
        "storm",
        &[
            "--follow",
            "--source",
            "netlink",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        Stdio::null(),
    );
    enricher.wait_until(Duration::from_secs(10), "ready", |_, err| {
        err.contains("reading the audit netlink multicast group")
    });
    let addr = enricher
        .stderr()
        .lines()
        .find_map(|l| {
            l.strip_prefix("syscribe: metrics on http://")?
                .strip_suffix("/metrics")
                .map(str::to_owned)
        })
        .unwrap();
    let probe = std::fs::canonicalize(PROBE).unwrap();
    let storm = syscribe()
        .arg("run")
        .arg("--profile")
        .arg(&profile)
        .arg("--")
        .arg(&probe)
        .args(["loop", &STORM.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let storm_pid = storm.id();
    // The quiet source's denials, in the middle of the storm.
    std::thread::sleep(Duration::from_millis(50));
    let quiet: Vec<u32> = (0..3)
        .map(|_| {
            let (pid, status) = sync_under(&dir, "SCMP_ACT_LOG");
            assert!(status.success());
            pid
        })
        .collect();
    let storm = storm.wait_with_output().unwrap();
    assert!(storm.status.success());

    // Everything read: the storm's series stops growing.
    let storm_exe = probe.display().to_string();
    let read_of = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("security_profiles_operator_seccomp_profile_audit_total{")
                    && l.contains(&format!("executable=\"{storm_exe}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = read_of(&http_get(&addr, "/metrics"));
        if now == last {
            break now;
        }
        assert!(Instant::now() < deadline, "still reading");
        last = now;
    };
    let (status, err) = enricher.stop_within(Duration::from_secs(5));
    assert!(status.success(), "{err}");
    let out = enricher.stdout();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();

    for pid in &quiet {
        assert_eq!(
            lines.iter().filter(|l| l["pid"] == *pid).count(),
            1,
            "the quiet source's denial of pid {pid} is printed; stderr: {err}"
        );
    }
    let printed = lines.iter().filter(|l| l["pid"] == storm_pid).count() as u64;
    let source = format!("executable {storm_exe}");
    let summaries: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "summary" && l["source"] == source.as_str())
        .collect();
    let summarised: u64 = summaries.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert!(!summaries.is_empty(), "the storm is summarised: {err}");
    assert_eq!(
        summaries[0]["message"],
        format!(
            "{} more denials from {source} summarised",
            summaries[0]["count"]
        )
    );
    assert_eq!(printed + summarised, read, "printed + summarised = read");
    assert!(
        printed <= 500 + 100 * 60,
        "the storm printed its share only: {printed}"
    );
    assert_eq!(
        summary_count(&err, "summarised (per-source share)"),
        summarised
    );

    // What was not read is counted: as lost on the socket, or by the kernel.
    let lost = summary_count(&err, "lost");
    assert!(lost >= summary_count(&err, "socket overflows"));
    let kernel_lost = summary_count(&err, "lost by the kernel");
    eprintln!(
        "storm: {STORM} emitted, {read} read, {lost} lost, {kernel_lost} lost by the kernel, {printed} printed, {summarised} summarised"
    );
    assert!(read <= STORM);
    assert!(
        read + lost + kernel_lost >= STORM,
        "every record read or counted lost: {err}"
    );
}

/// `--follow --source -` with nothing coming: SIGTERM ends it at once, with its summary.
#[test]
fn an_idle_stdin_follower_stops_on_sigterm() {
    let dir = TempDir::new("enrich-idle-stdin");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut enricher =
            Enricher::spawn(&dir, "idle", &["--follow", "--source", "-"], Stdio::piped());
        enricher.wait_until(Duration::from_secs(10), "started", |_, err| {
            err.contains("remembering process exits")
        });
        std::thread::sleep(Duration::from_millis(500));
        let (status, err) = enricher.stop_with(signal, Duration::from_secs(2));
        assert!(status.success(), "{err}");
        assert_eq!(summary_count(&err, "denials"), 0, "{err}");
    }
}

/// A device as a file source is refused by name (reading /dev/zero never ends and has no
/// lines); an endless line through stdin is dropped in bounded memory and counted.
#[test]
fn devices_are_refused_and_endless_lines_are_bounded() {
    let dir = TempDir::new("enrich-endless");
    // Killed after 5 s if it reads instead of refusing (memory would grow without bound).
    let mut device = Enricher::spawn(
        &dir,
        "device",
        &["--source", "file=/dev/zero"],
        Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = device.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "file=/dev/zero was read, not refused ({} KiB so far)",
            device.peak_rss_kib()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let err = device.stderr();
    assert!(
        err.contains("/dev/zero") && err.contains("a character device, not a regular file"),
        "{err}"
    );

    let zero = std::fs::File::open("/dev/zero").unwrap();
    let mut enricher = Enricher::spawn(&dir, "zero", &["--source", "-"], Stdio::from(zero));
    std::thread::sleep(Duration::from_secs(2));
    let peak = enricher.peak_rss_kib();
    let (status, err) = enricher.stop_within(Duration::from_secs(2));
    assert!(status.success(), "{err}");
    assert!(peak < 200 << 10, "memory grew with the line: {peak} KiB");
    assert_eq!(summary_count(&err, "too long"), 1, "{err}");
    assert_eq!(summary_count(&err, "denials"), 0, "{err}");
}

/// The kernel's audit status as the enricher reads it (AUDIT_GET) is what auditctl says.
#[test]
fn the_kernel_audit_status_is_read_like_auditctl() {
    require_root();
    let status = syscribe::audit::netlink::AuditStatus::read().expect("AUDIT_GET as root");
    let out = std::process::Command::new("auditctl")
        .arg("-s")
        .output()
        .expect("auditctl (Debian's auditd package) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u32 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert_eq!(status.backlog_limit, field("backlog_limit"));
    assert_eq!(status.rate_limit, field("rate_limit"));
    assert_eq!(status.enabled, field("enabled"));
    assert!(status.lost <= field("lost"));
}
