//! The cgroup a locally recorded command runs in: created before the command starts, removed
//! after it (and anything it left behind) is gone.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::RecordError;
use crate::resolve::cgroup::cgroup_id;

/// Directory under the cgroup2 mount that holds syscribe's local recordings.
pub const PARENT_DIR: &str = "syscribe";

#[derive(Debug)]
pub struct LocalCgroup {
    dir: PathBuf,
    id: u64,
    removed: bool,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecordError {
    let path = path.to_owned();
    move |source| RecordError::CgroupIo { op, path, source }
}

impl LocalCgroup {
    /// Creates `<cgroup2 mount>/syscribe/record-<our pid>` (after removing stale, empty ones
    /// left by syscribe processes that no longer exist).
    pub fn create(cgroup2_root: &Path) -> Result<Self, RecordError> {
        let parent = cgroup2_root.join(PARENT_DIR);
        fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
        remove_stale(&parent);
        let dir = parent.join(format!("record-{}", std::process::id()));
        fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        let id = match cgroup_id(&dir) {
            Ok(id) => id,
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                return Err(err.into());
            }
        };
        Ok(Self {
            dir,
            id,
            removed: false,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cgroup.procs`, opened for writing: writing "0" to it moves the writer into this cgroup.
    pub fn procs_for_joining(&self) -> Result<fs::File, RecordError> {
        let path = self.dir.join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))
    }

    /// The processes still in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, RecordError> {
        let path = self.dir.join("cgroup.procs");
        let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Kills everything left in the cgroup and waits (up to `timeout`) until it is empty.
    /// Returns how many processes were there.
    pub fn kill_all(&self, timeout: Duration) -> Result<usize, RecordError> {
        let first = self.pids()?;
        if first.is_empty() {
            return Ok(0);
        }
        let kill_file = self.dir.join("cgroup.kill");
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(first.len());
            }
            if Instant::now() > deadline {
                return Err(RecordError::Leftovers {
                    path: self.dir.clone(),
                    pids,
                });
            }
            // cgroup.kill (Linux 5.14+) kills atomically, forks in flight included.
            if fs::write(&kill_file, "1").is_err() {
                for pid in pids {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup (it must be empty) and the parent directory if nothing else uses it.
    pub fn remove(mut self) -> Result<(), RecordError> {
        self.removed = true;
        fs::remove_dir(&self.dir).map_err(io_err("remove", &self.dir))?;
        if let Some(parent) = self.dir.parent() {
            // Another recording may still use it: ENOTEMPTY/EBUSY are fine.
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }
}

impl Drop for LocalCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Error paths: best effort, never leave a cgroup behind.
        if let Err(err) = self.kill_all(Duration::from_secs(5)) {
            tracing::warn!(error = %err, "cleaning up the recording cgroup");
        }
        if let Err(err) = fs::remove_dir(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %err, "cannot remove the recording cgroup");
        }
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Removes `record-<pid>` cgroups whose syscribe process is gone (no such process, or the pid
/// now names another program) and which hold no process; one that still holds processes (a
/// killed recorder's command, running on unrecorded) is reported, not killed: they are the
/// user's processes. Returns the paths reported.
pub(crate) fn remove_stale(parent: &Path) -> Vec<PathBuf> {
    let mut reported = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return reported;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("record-")) else {
            continue;
        };
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let comm = fs::read_to_string(Path::new("/proc").join(pid).join("comm")).ok();
        if comm.is_some_and(|c| c.trim_end() == "syscribe") {
            continue;
        }
        let path = entry.path();
        // rmdir fails on a populated cgroup: then say so.
        match fs::remove_dir(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a stale recording cgroup");
            }
            Err(_) => {
                let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<&str> = procs.split_whitespace().take(16).collect();
                if pids.is_empty() {
                    continue;
                }
                tracing::warn!(
                    path = %path.display(),
                    pids = %pids.join(","),
                    "a killed syscribe's recording cgroup still holds processes (its command runs on, unrecorded); \
                     kill them (echo 1 > cgroup.kill) and the cgroup goes at the next recording"
                );
                reported.push(path);
            }
        }
    }
    reported
}
