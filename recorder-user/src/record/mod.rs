//! Recording one command locally: `syscribe record -- CMD`.
//!
//! The command starts in a fresh cgroup v2 before its first instruction: the child forked by
//! syscribe writes "0" to the new cgroup's `cgroup.procs` (which moves it) and then execs CMD.
//! The recorder watches that cgroup id only, so the first syscall counted is CMD's `execve`, and
//! everything CMD's processes and threads do after it is counted, until CMD exits. Processes CMD
//! leaves behind are killed so the cgroup can be removed.

pub mod cgroup;
pub mod subtree;

use std::{
    ffi::OsString,
    os::{fd::AsRawFd as _, unix::process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    bpf::{BpfError, LogForwarder, Recorder},
    profile::build::RecordedSyscalls,
    resolve::cgroup::{CgroupError, cgroup2_mount},
};

pub use cgroup::LocalCgroup;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error(
        "syscribe record needs root: loading eBPF and creating cgroups take CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (euid is {euid})"
    )]
    NotRoot { euid: u32 },
    #[error("command not found: {command}")]
    CommandNotFound { command: String },
    #[error("cannot execute {command}: {reason}")]
    CommandNotExecutable { command: String, reason: String },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("cannot {op} cgroup file {path}: {source}", path = .path.display())]
    CgroupIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is the root of the cgroup hierarchy; record a pod's or a container's cgroup below it", path = .path.display())]
    SubtreeIsRoot { path: PathBuf },
    #[error("processes {pids:?} are still in {path} after being killed", path = .path.display())]
    Leftovers { path: PathBuf, pids: Vec<i32> },
    #[error(transparent)]
    Bpf(Box<BpfError>),
    #[error("waiting for the recorded command: {source}")]
    Wait {
        #[source]
        source: std::io::Error,
    },
}

impl From<BpfError> for RecordError {
    fn from(err: BpfError) -> Self {
        // Boxed: aya's errors are large, and every Result of this module carries the variant.
        Self::Bpf(Box::new(err))
    }
}

/// Host paths, parameters so tests can point them elsewhere.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// Kernel BTF (`/sys/kernel/btf/vmlinux`).
    pub btf: PathBuf,
    /// A mountinfo file to find the cgroup2 mount in (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
}

/// The outcome of a local recording.
#[derive(Debug)]
pub struct Recording {
    pub syscalls: RecordedSyscalls,
    pub exit: ExitStatus,
    /// Processes CMD left running when it exited (they were killed).
    pub leftovers_killed: usize,
}

impl Recording {
    /// The exit code the shell would show for the command: its code, or 128 + signal.
    pub fn exit_code(&self) -> i32 {
        exit_code(self.exit)
    }
}

pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|sig| 128 + sig))
        .unwrap_or(1)
}

/// Resolves a command name the way execvp would: a name with a slash is a path, anything else
/// is looked up in `PATH`. Checked before anything is created, so a typo costs nothing.
pub fn resolve_command(command: &str) -> Result<PathBuf, RecordError> {
    let not_found = || RecordError::CommandNotFound {
        command: command.to_owned(),
    };
    let candidates: Vec<PathBuf> = if command.contains('/') {
        vec![PathBuf::from(command)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        std::env::split_paths(&path)
            .map(|dir| dir.join(command))
            .collect()
    };
    if let Some(found) = candidates.iter().find(|p| is_executable(p)) {
        return Ok(found.clone());
    }
    // Something is there but cannot run: 126, as a shell says, not "not found".
    for candidate in &candidates {
        if let Ok(meta) = std::fs::metadata(candidate) {
            let reason = if meta.is_dir() {
                format!("{} is a directory", candidate.display())
            } else {
                format!(
                    "{} is not executable (no x permission)",
                    candidate.display()
                )
            };
            return Err(RecordError::CommandNotExecutable {
                command: command.to_owned(),
                reason,
            });
        }
    }
    Err(not_found())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why an executable file that exists could not be started: a missing interpreter is the
/// usual cause of ENOENT there, and the one a user cannot guess from "No such file".
pub fn exec_failure(path: &Path, err: &std::io::Error) -> String {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..read];
    match (err.raw_os_error(), head.strip_prefix(b"#!")) {
        (Some(libc::ENOENT), Some(line)) => {
            let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
            let interpreter = String::from_utf8_lossy(line);
            let interpreter = interpreter.split_whitespace().next().unwrap_or_default();
            format!("bad interpreter {interpreter:?}: {err}")
        }
        (Some(libc::ENOEXEC), _) => format!("not an executable format the kernel runs: {err}"),
        _ => err.to_string(),
    }
}

pub fn require_root() -> Result<(), RecordError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(RecordError::NotRoot { euid });
    }
    Ok(())
}

/// Runs `command` (argv, non-empty) in a fresh cgroup and records its syscalls.
pub async fn record_command(
    paths: &HostPaths,
    command: &[String],
) -> Result<Recording, RecordError> {
    require_root()?;
    let (program, args) = command
        .split_first()
        .ok_or_else(|| RecordError::CommandNotFound {
            command: String::new(),
        })?;
    let program_path = resolve_command(program)?;
    let root = cgroup2_mount(&paths.mountinfo)?;

    let (mut recorder, logger) = Recorder::load(&paths.btf)?;
    let log_forwarder = logger.map(LogForwarder::spawn).transpose()?;

    let cgroup = LocalCgroup::create(&root)?;
    let cgroup_id = cgroup.id();
    tracing::debug!(cgroup_id, path = %cgroup.dir().display(), "recording cgroup created");
    recorder.watch(cgroup_id)?;
    recorder.attach()?;

    let procs = cgroup.procs_for_joining()?;
    let procs_fd = procs.as_raw_fd();
    let mut cmd = tokio::process::Command::new(&program_path);
    cmd.arg0(program).args(args);
    // SAFETY: the closure runs in the forked child before exec and only calls write(2), which
    // is async-signal-safe. After it returns, std's only remaining syscall is execve, so the
    // first syscall the recorder sees from CMD's cgroup is CMD's own execve.
    unsafe {
        cmd.pre_exec(move || {
            let written = libc::write(procs_fd, b"0".as_ptr().cast(), 1);
            if written == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|source| RecordError::CommandNotExecutable {
            command: program.clone(),
            reason: exec_failure(&program_path, &source),
        })?;
    drop(procs);
    let exit = wait_forwarding_signals(&mut child).await?;

    let leftovers_killed = cgroup.kill_all(Duration::from_secs(5))?;
    if leftovers_killed > 0 {
        tracing::warn!(
            count = leftovers_killed,
            "the command left processes running; they were recorded until killed"
        );
    }
    let (set, out_of_range) = recorder.read(cgroup_id)?;
    let capabilities = recorder.records_capabilities();
    recorder.detach()?;
    recorder.unwatch(cgroup_id)?;
    cgroup.remove()?;
    if let Some(forwarder) = log_forwarder {
        forwarder.finish().await;
    }
    if out_of_range > 0 {
        tracing::warn!(
            count = out_of_range,
            last = set.last_out_of_range,
            "syscalls with numbers beyond the recorder's range were counted, not recorded"
        );
    }
    Ok(Recording {
        syscalls: RecordedSyscalls {
            numbers: set.numbers().collect(),
            out_of_range,
            capabilities: capabilities.then(|| set.capability_mask()),
        },
        exit,
        leftovers_killed,
    })
}

/// Waits for the child. SIGTERM and SIGHUP sent to syscribe are passed on to it; SIGINT and
/// SIGQUIT are ignored here because a terminal already sends them to the whole foreground group.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> Result<ExitStatus, RecordError> {
    let wait_err = |source| RecordError::Wait { source };
    let mut term = signal(SignalKind::terminate()).map_err(wait_err)?;
    let mut hup = signal(SignalKind::hangup()).map_err(wait_err)?;
    let mut int = signal(SignalKind::interrupt()).map_err(wait_err)?;
    let mut quit = signal(SignalKind::quit()).map_err(wait_err)?;
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    loop {
        let forward = tokio::select! {
            status = child.wait() => return status.map_err(wait_err),
            _ = term.recv() => Some(libc::SIGTERM),
            _ = hup.recv() => Some(libc::SIGHUP),
            _ = int.recv() => None,
            _ = quit.recv() => None,
        };
        if let (Some(sig), Some(pid)) = (forward, pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        }
    }
}
