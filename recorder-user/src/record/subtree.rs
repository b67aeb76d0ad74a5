//! Recording every container that appears under a cgroup: `syscribe record --cgroup PATH`.
//!
//! The kernel side discovers containers (cgroups directly below PATH) at their first syscall
//! and records each in its own set; this side names them (from the cgroup directory, parsed
//! for a container id when it follows a kubelet/podman layout), and hands each container's
//! recording over when its cgroup goes away, when asked for a snapshot, or at the end.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::signal::unix::{SignalKind, signal};

use super::{HostPaths, RecordError, require_root};
use crate::{
    bpf::{LogForwarder, Recorder, SET_FILTER_SEEN},
    profile::build::RecordedSyscalls,
    resolve::{
        cgroup::{cgroup_id, cgroup2_mount},
        container::container_of_path,
    },
};

/// How often the discovered containers and the subtree's directory are looked at.
const POLL: Duration = Duration::from_millis(50);

/// One container's recording, handed to the caller.
#[derive(Debug)]
pub struct ContainerRecording {
    /// The container's cgroup directory name, or `cgroup-<id>` when it was gone before syscribe
    /// saw its directory.
    pub name: String,
    /// The container id, when the cgroup path follows a known layout.
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub cgroup_id: u64,
    pub syscalls: RecordedSyscalls,
    /// Whether the container is still running (a snapshot), or finished.
    pub running: bool,
    /// Whether the runtime installed a seccomp filter in the container: what was recorded
    /// before it (the runtime's setup) was left out. Without one, the profile holds the
    /// runtime's setup syscalls too.
    pub filter_seen: bool,
}

/// Why a subtree recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Interrupted,
    SubtreeRemoved,
}

/// Resolves `--cgroup PATH`: a path under the cgroup2 mount, or a cgroup path relative to it
/// (`/kubepods/besteffort/pod<uid>`). Returns the directory and its depth below the root.
pub fn subtree_dir(root: &Path, path: &Path) -> (PathBuf, u32) {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let relative: PathBuf = relative
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let level = relative.components().count() as u32;
    (root.join(relative), level)
}

/// Records the containers under `path` until SIGINT/SIGTERM or until `path` is removed.
/// `deliver` gets each container's recording (SIGUSR1 asks for snapshots of running ones).
pub async fn record_subtree(
    paths: &HostPaths,
    path: &Path,
    mut deliver: impl FnMut(ContainerRecording),
) -> Result<Ended, RecordError> {
    require_root()?;
    let root = cgroup2_mount(&paths.mountinfo)?;
    let (dir, level) = subtree_dir(&root, path);
    let subtree_id = cgroup_id(&dir)?;
    if level == 0 {
        return Err(RecordError::SubtreeIsRoot { path: dir });
    }

    let (mut recorder, logger) = Recorder::load(&paths.btf)?;
    let log_forwarder = logger.map(LogForwarder::spawn).transpose()?;
    recorder.watch_subtree(subtree_id, level)?;
    recorder.attach()?;
    tracing::info!(path = %dir.display(), cgroup_id = subtree_id, level, "recording the containers of this cgroup");

    let wait_err = |source| RecordError::Wait { source };
    let mut int = signal(SignalKind::interrupt()).map_err(wait_err)?;
    let mut term = signal(SignalKind::terminate()).map_err(wait_err)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(wait_err)?;
    let mut tick = tokio::time::interval(POLL);
    // Container cgroups can live for milliseconds (`runc run` of a short command): learn each
    // new directory's name and id the moment it is created, not at the next poll.
    let mut created = CreatedDirs::watch(&dir)?;
    // cgroup id → directory name, for every child seen so far.
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut delivered_finished = 0usize;
    let ended = loop {
        let snapshot = tokio::select! {
            _ = int.recv() => break Ended::Interrupted,
            _ = term.recv() => break Ended::Interrupted,
            _ = usr1.recv() => true,
            _ = tick.tick() => false,
            new = created.next() => {
                names.extend(new?);
                continue;
            }
        };
        if !dir.exists() {
            break Ended::SubtreeRemoved;
        }
        // Discovered first, listed second: a container the kernel side saw has its directory
        // already, so one missing from the listing is really gone.
        let discovered = recorder.discovered()?;
        let children = child_cgroups(&dir);
        for (id, name) in &children {
            names.entry(*id).or_insert_with(|| name.clone());
        }
        for (container, slot) in discovered {
            let gone = !children.contains_key(&container);
            if gone || snapshot {
                let recording = read(&mut recorder, &dir, &names, container, slot, !gone)?;
                deliver(recording);
            }
            if gone {
                recorder.release(container, slot)?;
                names.remove(&container);
                delivered_finished += 1;
            }
        }
    };

    // The end: what is still running is handed over as it is.
    let live = recorder.discovered()?;
    tracing::info!(
        containers = delivered_finished,
        still_running = live.len(),
        "containers recorded; sets of finished containers were returned to the kernel side"
    );
    for (container, slot) in live {
        let running = dir
            .join(names.get(&container).map_or("", String::as_str))
            .exists();
        let recording = read(&mut recorder, &dir, &names, container, slot, running)?;
        deliver(recording);
        recorder.release(container, slot)?;
    }
    let claim_failures = recorder.claim_failures()?;
    if claim_failures > 0 {
        tracing::warn!(
            count = claim_failures,
            "containers could not be recorded: all discovery sets were in use"
        );
    }
    recorder.detach()?;
    if let Some(forwarder) = log_forwarder {
        forwarder.finish().await;
    }
    Ok(ended)
}

fn read(
    recorder: &mut Recorder,
    dir: &Path,
    names: &HashMap<u64, String>,
    cgroup_id: u64,
    slot: u32,
    running: bool,
) -> Result<ContainerRecording, RecordError> {
    let (set, out_of_range) = recorder.read_slot(slot)?;
    let name = names
        .get(&cgroup_id)
        .cloned()
        .unwrap_or_else(|| format!("cgroup-{cgroup_id}"));
    // The whole path: the pod's UID is in the subtree's part of it.
    let identity = container_of_path(&dir.join(&name).to_string_lossy());
    Ok(ContainerRecording {
        container_id: identity.as_ref().map(|c| c.container_id.clone()),
        pod_uid: identity.and_then(|c| c.pod_uid),
        name,
        cgroup_id,
        syscalls: RecordedSyscalls {
            numbers: set.numbers().collect(),
            out_of_range,
        },
        running,
        filter_seen: set.flags & SET_FILTER_SEEN != 0,
    })
}

/// inotify on the subtree's directory: the cgroups created directly below it, as (id, name).
struct CreatedDirs {
    dir: PathBuf,
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl CreatedDirs {
    fn watch(dir: &Path) -> Result<Self, RecordError> {
        use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
        let io_err = |source| RecordError::CgroupIo {
            op: "watch",
            path: dir.to_owned(),
            source,
        };
        // SAFETY: plain syscalls; the fd is owned right after it is created.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io_err(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a new, valid descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io_err(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                c_dir.as_ptr(),
                libc::IN_CREATE,
            )
        };
        if wd < 0 {
            return Err(io_err(std::io::Error::last_os_error()));
        }
        // SAFETY: the OwnedFd stays open and unchanged for the AsyncFd's whole life (it owns it).
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(|err| io_err(err.into()))?;
        Ok(Self {
            dir: dir.to_owned(),
            fd,
        })
    }

    /// Waits for creations; returns the new directories that still exist.
    async fn next(&mut self) -> Result<Vec<(u64, String)>, RecordError> {
        let io_err = |source| RecordError::CgroupIo {
            op: "watch",
            path: self.dir.clone(),
            source,
        };
        let mut guard = self.fd.readable().await.map_err(io_err)?;
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a buffer we own, of the given length.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(guard.get_inner()),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                return Ok(Vec::new());
            }
            return Err(io_err(err));
        }
        Ok(parse_inotify_names(&buf[..n as usize])
            .into_iter()
            .filter_map(|name| {
                let meta = fs::metadata(self.dir.join(&name)).ok()?;
                meta.is_dir().then(|| (meta.ino(), name))
            })
            .collect())
    }
}

/// The names in a buffer of `struct inotify_event` records.
fn parse_inotify_names(mut buf: &[u8]) -> Vec<String> {
    const HEADER: usize = 16; // wd: i32, mask: u32, cookie: u32, len: u32
    let mut names = Vec::new();
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
        let Some(name) = buf.get(HEADER..HEADER + len) else {
            break;
        };
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        buf = &buf[HEADER + len..];
    }
    names
}

/// The cgroups directly below `dir`: id → directory name.
fn child_cgroups(dir: &Path) -> BTreeMap<u64, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_dir()
                .then(|| (meta.ino(), entry.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inotify_records_are_split_into_names() {
        let mut buf = Vec::new();
        for name in ["abc", "container-with-a-longer-name"] {
            let padded = (name.len() + 1).div_ceil(16) * 16;
            buf.extend_from_slice(&1i32.to_ne_bytes());
            buf.extend_from_slice(&(libc::IN_CREATE | libc::IN_ISDIR).to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(padded as u32).to_ne_bytes());
            buf.extend_from_slice(name.as_bytes());
            buf.resize(buf.len() + padded - name.len(), 0);
        }
        assert_eq!(
            parse_inotify_names(&buf),
            ["abc", "container-with-a-longer-name"]
        );
        assert!(
            parse_inotify_names(&buf[..20]).is_empty(),
            "a truncated record is dropped"
        );
    }

    #[test]
    fn subtree_paths_are_relative_to_the_cgroup2_root() {
        let root = Path::new("/sys/fs/cgroup/unified");
        let (dir, level) = subtree_dir(root, Path::new("/kubepods/besteffort/pod1"));
        assert_eq!(
            dir,
            Path::new("/sys/fs/cgroup/unified/kubepods/besteffort/pod1")
        );
        assert_eq!(level, 3);
        let (dir, level) = subtree_dir(root, Path::new("/sys/fs/cgroup/unified/kubepods/pod2/"));
        assert_eq!(dir, Path::new("/sys/fs/cgroup/unified/kubepods/pod2"));
        assert_eq!(level, 2);
        assert_eq!(subtree_dir(root, Path::new("/")).1, 0);
    }
}
