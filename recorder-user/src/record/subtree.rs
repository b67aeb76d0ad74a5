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
    bpf::{LogForwarder, Recorder},
    profile::{
        build::RecordedSyscalls,
        seccomp::{Boundary, NoBoundary},
    },
    resolve::{
        cgroup::{cgroup_id, cgroup2_mount},
        container::container_of_path,
    },
};

/// How often the discovered containers and the subtree's directory are looked at.
const POLL: Duration = Duration::from_millis(50);

/// One container's recording, handed to the caller.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// Where the recording starts: what was recorded before it (the runtime's setup) was left
    /// out; without one, `syscalls` holds everything (older state files say `filter_seen`).
    #[serde(alias = "filter_seen")]
    pub boundary: Boundary,
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

/// Records the containers under each of `cgroups` until SIGINT/SIGTERM or until every one of
/// them is removed (a removed one's containers are handed over then). `deliver` gets each
/// container's recording (SIGUSR1 asks for snapshots of running ones).
pub async fn record_subtree(
    paths: &HostPaths,
    cgroups: &[PathBuf],
    pin_dir: Option<&Path>,
    mut deliver: impl FnMut(ContainerRecording),
) -> Result<Ended, RecordError> {
    let mut subtrees = Subtrees::start_in(paths, pin_dir)?;
    let mut live = Vec::with_capacity(cgroups.len());
    for path in cgroups {
        live.push(subtrees.add(path)?);
    }
    // Everything wanted is added: another subtree a previous syscribe left is an orphan.
    subtrees.prune_adopted()?;

    let wait_err = |source| RecordError::Wait { source };
    let mut int = signal(SignalKind::interrupt()).map_err(wait_err)?;
    let mut term = signal(SignalKind::terminate()).map_err(wait_err)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(wait_err)?;
    let mut tick = tokio::time::interval(POLL);
    let mut finished = 0usize;
    let ended = loop {
        let snapshot = tokio::select! {
            _ = int.recv() => break Ended::Interrupted,
            _ = term.recv() => break Ended::Interrupted,
            _ = usr1.recv() => true,
            _ = tick.tick() => false,
            created = subtrees.created() => {
                created?;
                continue;
            }
        };
        let (gone, kept): (Vec<u64>, Vec<u64>) = live.iter().partition(|id| subtrees.is_gone(**id));
        for id in gone {
            for recording in subtrees.remove(id)? {
                finished += usize::from(!recording.running);
                deliver(recording);
            }
        }
        live = kept;
        if live.is_empty() {
            break Ended::SubtreeRemoved;
        }
        for (_, recording) in subtrees.poll(snapshot)? {
            finished += usize::from(!recording.running);
            deliver(recording);
        }
    };
    // The end: what is still running is handed over as it is.
    let mut left = Vec::new();
    for id in live {
        left.extend(subtrees.remove(id)?);
    }
    tracing::info!(
        containers = finished,
        still_running = left.len(),
        "containers recorded; sets of finished containers were returned to the kernel side"
    );
    for recording in left {
        deliver(recording);
    }
    subtrees.finish().await?;
    Ok(ended)
}

/// The recorder, discovering the containers below several subtrees (pods' cgroups) at once:
/// what the daemon runs, and `record --cgroup` with one subtree. Attached only while it has a
/// subtree (nothing runs when nothing is recorded).
pub struct Subtrees {
    recorder: Recorder,
    log_forwarder: Option<LogForwarder>,
    root: PathBuf,
    /// One inotify instance watching every subtree's directory for new container cgroups,
    /// read by its own thread (see [`Namer`]).
    namer: Namer,
    trees: HashMap<u64, Tree>,
    /// inotify watch descriptor → subtree cgroup id.
    watches: HashMap<i32, u64>,
    /// Subtrees a previous syscribe recorded (adopted from the pins) that this one has not
    /// added again yet: their containers are left alone (not read, not released) until they
    /// are added, or pruned as orphans.
    adopted: std::collections::BTreeSet<u64>,
}

struct Tree {
    dir: PathBuf,
    watch: i32,
    /// Container cgroup id → directory name, for every child seen so far.
    names: HashMap<u64, String>,
}

impl Subtrees {
    /// Loads the recorder (root needed); nothing is attached yet.
    pub fn start(paths: &HostPaths) -> Result<Self, RecordError> {
        Self::start_in(paths, None)
    }

    /// Like [`Subtrees::start`], with the kernel state pinned in `pin_dir` (bpffs): the
    /// recording goes on while this process is dead, and a later one started with the same
    /// directory takes it over (re-add its subtrees).
    pub fn start_pinned(paths: &HostPaths, pin_dir: &Path) -> Result<Self, RecordError> {
        Self::start_in(paths, Some(pin_dir))
    }

    fn start_in(paths: &HostPaths, pin_dir: Option<&Path>) -> Result<Self, RecordError> {
        require_root()?;
        let root = cgroup2_mount(&paths.mountinfo)?;
        let (recorder, logger) = match pin_dir {
            Some(dir) => Recorder::load_pinned(&paths.btf, dir)?,
            None => Recorder::load(&paths.btf)?,
        };
        let log_forwarder = logger.map(LogForwarder::spawn).transpose()?;
        let io_err = |source| RecordError::CgroupIo {
            op: "watch",
            path: root.clone(),
            source,
        };
        let namer = Namer::start().map_err(io_err)?;
        let adopted = recorder.watched_subtrees().into_iter().collect();
        Ok(Self {
            recorder,
            log_forwarder,
            root,
            namer,
            trees: HashMap::new(),
            watches: HashMap::new(),
            adopted,
        })
    }

    /// The cgroup2 mount the subtrees are under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts recording the containers below `path` (a directory under the cgroup2 mount or a
    /// path relative to it); returns the subtree's cgroup id.
    pub fn add(&mut self, path: &Path) -> Result<u64, RecordError> {
        use std::os::unix::ffi::OsStrExt as _;
        let (dir, level) = subtree_dir(&self.root, path);
        let subtree_id = cgroup_id(&dir)?;
        if level == 0 {
            return Err(RecordError::SubtreeIsRoot { path: dir });
        }
        if self.trees.contains_key(&subtree_id) {
            return Ok(subtree_id);
        }
        let taken_over = self.adopted.remove(&subtree_id);
        let io_err = |source| RecordError::CgroupIo {
            op: "watch",
            path: dir.clone(),
            source,
        };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io_err(std::io::ErrorKind::InvalidInput.into()))?;
        // The namer learns the directory first: an event may come the moment the watch exists.
        let mut shared = self.namer.shared.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: valid fd and NUL-terminated path.
        let watch = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&self.namer.fd),
                c_dir.as_ptr(),
                libc::IN_CREATE,
            )
        };
        if watch < 0 {
            return Err(io_err(std::io::Error::last_os_error()));
        }
        shared.dirs.insert(watch, dir.clone());
        drop(shared);
        let started = self
            .recorder
            .watch_subtree(subtree_id, level)
            .and_then(|()| self.recorder.attach());

        if let Err(err) = started {
            // Undone: no watch, no directory, and an adopted subtree stays adopted.
            self.namer.unwatch(watch);
            if taken_over {
                self.adopted.insert(subtree_id);
            }
            return Err(err.into());
        }
        tracing::info!(path = %dir.display(), cgroup_id = subtree_id, level, taken_over, "recording the containers of this cgroup");
        let names = child_cgroups(&dir).into_iter().collect();
        self.watches.insert(watch, subtree_id);
        self.trees.insert(subtree_id, Tree { dir, watch, names });
        Ok(subtree_id)
    }

    /// Whether the subtree's directory is gone (the pod's cgroup was removed).
    pub fn is_gone(&self, subtree_id: u64) -> bool {
        self.trees
            .get(&subtree_id)
            .is_none_or(|tree| !tree.dir.exists())
    }

    /// Waits for new container cgroups and takes the names the namer thread learnt
    /// (containers can live for a millisecond: their names are taken by that thread the moment
    /// their directory is created, whatever this task is busy with). Never returns while
    /// there is no subtree.
    pub async fn created(&mut self) -> Result<(), RecordError> {
        self.namer.wake.notified().await;
        self.take_names();
        Ok(())
    }

    /// Moves the names the namer thread learnt into their subtrees.
    fn take_names(&mut self) {
        let named = {
            let mut shared = self.namer.shared.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut shared.named)
        };
        for (watch, id, name) in named {
            if let Some(tree) = self
                .watches
                .get(&watch)
                .and_then(|id| self.trees.get_mut(id))
            {
                tree.names.insert(id, name);
            }
        }
    }

    /// The recordings of containers that finished since the last poll (their sets go back to
    /// the kernel side), and with `snapshot`, of every running one too; with their subtree.
    pub fn poll(&mut self, snapshot: bool) -> Result<Vec<(u64, ContainerRecording)>, RecordError> {
        // Discovered first, listed second: a container the kernel side saw has its directory
        // already, so one missing from the listing is really gone.
        self.take_names();
        let discovered = self.recorder.discovered()?;
        let mut children: HashMap<u64, u64> = HashMap::new();
        for (subtree_id, tree) in &mut self.trees {
            for (id, name) in child_cgroups(&tree.dir) {
                tree.names.entry(id).or_insert(name);
                children.insert(id, *subtree_id);
            }
        }
        let mut out = Vec::new();
        for (container, slot) in discovered {
            let live_in = children.get(&container).copied();
            if live_in.is_none()
                && !self.adopted.is_empty()
                && !self
                    .trees
                    .values()
                    .any(|t| t.names.contains_key(&container))
            {
                // Perhaps a container of an adopted subtree not added again yet: kept as it
                // is until then (or until the orphans are pruned).
                continue;
            }
            let Some(subtree_id) = live_in.or_else(|| self.owner_of(container)) else {
                // Gone before its directory was seen, with several subtrees recorded: whose
                // it was is unknown. Its set goes back rather than leak.
                tracing::warn!(
                    cgroup_id = container,
                    "a container ended before its cgroup could be named; its recording is dropped"
                );
                self.recorder.release(container, slot)?;
                continue;
            };
            let gone = live_in.is_none();
            if gone || snapshot {
                out.push((subtree_id, self.read(subtree_id, container, slot, !gone)?));
            }
            if gone {
                self.recorder.release(container, slot)?;
                if let Some(tree) = self.trees.get_mut(&subtree_id) {
                    tree.names.remove(&container);
                }
            }
        }
        Ok(out)
    }

    /// Adopted subtrees that were not added again (their pods ended while no syscribe ran):
    /// no longer recorded, their containers' sets released at the next poll. Call it once
    /// every subtree still wanted was added. Returns how many were pruned.
    pub fn prune_adopted(&mut self) -> Result<usize, RecordError> {
        let orphans = std::mem::take(&mut self.adopted);
        if orphans.is_empty() {
            return Ok(0);
        }
        for &id in &orphans {
            self.recorder.unwatch_subtree(id)?;
        }
        // Their containers' sets go back now: left for a later poll, one could be credited to
        // the only subtree still recorded (a container without a name has no other owner).
        self.take_names();
        let mut wanted: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for tree in self.trees.values() {
            wanted.extend(child_cgroups(&tree.dir).into_keys());
            wanted.extend(tree.names.keys().copied());
        }
        let mut released = 0usize;
        for (container, slot) in self.recorder.discovered()? {
            if !wanted.contains(&container) {
                self.recorder.release(container, slot)?;
                released += 1;
            }
        }
        tracing::warn!(
            subtrees = orphans.len(),
            containers = released,
            "subtrees a previous syscribe recorded were not wanted again (their pods ended meanwhile): their recordings are dropped"
        );
        Ok(orphans.len())
    }

    /// Stops recording below `subtree_id`: the recordings of its containers still held (running
    /// or not) are returned and their sets released. Detaches when it was the last subtree.
    pub fn remove(&mut self, subtree_id: u64) -> Result<Vec<ContainerRecording>, RecordError> {
        let mut out = Vec::new();
        let Some(tree) = self.trees.get(&subtree_id) else {
            return Ok(out);
        };
        let dir = tree.dir.clone();
        let watch = tree.watch;
        let children = child_cgroups(&dir);
        for (container, slot) in self.recorder.discovered()? {
            let mine =
                children.contains_key(&container) || self.owner_of(container) == Some(subtree_id);
            if !mine {
                continue;
            }
            let running = children.contains_key(&container);
            out.push(self.read(subtree_id, container, slot, running)?);
            self.recorder.release(container, slot)?;
        }
        self.recorder.unwatch_subtree(subtree_id)?;
        self.namer.unwatch(watch);
        self.watches.remove(&watch);
        self.trees.remove(&subtree_id);
        tracing::info!(path = %dir.display(), containers = out.len(), "stopped recording the containers of this cgroup");
        if self.trees.is_empty() {
            self.recorder.detach()?;
        }
        Ok(out)
    }

    /// Leaves the kernel state pinned (it goes on recording) and stops here: what a daemon
    /// being restarted does. Without pins, the same as [`Subtrees::finish`].
    pub async fn suspend(mut self) -> Result<(), RecordError> {
        // Dropping our handles leaves the pinned links and maps to the kernel.
        if let Some(forwarder) = self.log_forwarder.take() {
            forwarder.finish().await;
        }
        Ok(())
    }

    /// Reports what went wrong on the kernel side, detaches (and removes the pins), and
    /// flushes its diagnostics.
    pub async fn finish(mut self) -> Result<(), RecordError> {
        let claim_failures = self.recorder.claim_failures()?;
        if claim_failures > 0 {
            tracing::warn!(
                count = claim_failures,
                "containers could not be recorded: all discovery sets were in use"
            );
        }
        self.recorder.unpin()?;
        self.recorder.detach()?;
        if let Some(forwarder) = self.log_forwarder.take() {
            forwarder.finish().await;
        }
        Ok(())
    }

    /// The subtree a container was seen in (by name); with a single subtree, that one (a
    /// container gone before its directory was seen).
    fn owner_of(&self, container: u64) -> Option<u64> {
        self.trees
            .iter()
            .find(|(_, tree)| tree.names.contains_key(&container))
            .map(|(id, _)| *id)
            .or_else(|| {
                (self.trees.len() == 1)
                    .then(|| self.trees.keys().next().copied())
                    .flatten()
            })
    }

    fn read(
        &mut self,
        subtree_id: u64,
        container: u64,
        slot: u32,
        running: bool,
    ) -> Result<ContainerRecording, RecordError> {
        // Disjoint fields: the recorder is written, the subtree's names only read.
        let empty = HashMap::new();
        let (dir, names) = match self.trees.get(&subtree_id) {
            Some(tree) => (tree.dir.as_path(), &tree.names),
            None => (Path::new(""), &empty),
        };
        let capabilities = self.recorder.records_capabilities();
        read(
            &mut self.recorder,
            dir,
            names,
            container,
            slot,
            running,
            capabilities,
        )
    }
}

fn read(
    recorder: &mut Recorder,
    dir: &Path,
    names: &HashMap<u64, String>,
    cgroup_id: u64,
    slot: u32,
    running: bool,
    capabilities: bool,
) -> Result<ContainerRecording, RecordError> {
    let (set, out_of_range) = recorder.read_slot(slot)?;
    let name = names
        .get(&cgroup_id)
        .cloned()
        .unwrap_or_else(|| format!("cgroup-{cgroup_id}"));
    // The whole path: the pod's UID is in the subtree's part of it.
    let identity = container_of_path(&dir.join(&name).to_string_lossy());
    // Nothing counted yet (no exec after the boundary, or no boundary at all): unknown, not
    // "none used".
    let capabilities = capabilities && recorder_ebpf::counts_capabilities(set.flags);
    Ok(ContainerRecording {
        container_id: identity.as_ref().map(|c| c.container_id.clone()),
        pod_uid: identity.and_then(|c| c.pod_uid),
        name,
        cgroup_id,
        syscalls: RecordedSyscalls {
            numbers: set.profile_numbers().collect(),
            out_of_range,
            capabilities: capabilities.then(|| set.capability_mask()),
        },
        running,
        boundary: boundary(set.flags),
    })
}

/// The boundary the kernel side's flags say it found.
fn boundary(flags: u64) -> Boundary {
    use recorder_ebpf::Boundary as Found;
    match recorder_ebpf::boundary_of(flags) {
        Found::Filter => Boundary::Filter,
        Found::Exec => Boundary::Exec,
        Found::RootNotSwitched => Boundary::None {
            reason: NoBoundary::RootNotSwitched,
        },
        Found::NotExeced => Boundary::None {
            reason: NoBoundary::NotExeced,
        },
    }
}

/// What the namer thread shares: the watched directories, and the names it learnt.
#[derive(Default)]
struct Naming {
    /// inotify watch descriptor → the subtree's directory.
    dirs: HashMap<i32, PathBuf>,
    /// (watch, container cgroup id, directory name) learnt since the last take.
    named: Vec<(i32, u64, String)>,
}

/// A thread of its own reading the inotify instance, so a new container cgroup is named
/// (its directory stat'ed) microseconds after it is created — a short container's cgroup can
/// be gone a millisecond later, and the recording's task may be busy then (polling maps, an
/// API call). Bounded: at most `MAX_NAMED` names wait to be taken (more are dropped and
/// counted in the log).
struct Namer {
    fd: std::os::fd::OwnedFd,
    shared: std::sync::Arc<std::sync::Mutex<Naming>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Names waiting to be taken, at most (the poll takes them every 50 ms).
const MAX_NAMED: usize = 65_536;

impl Namer {
    fn start() -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd as _, FromRawFd as _};
        // SAFETY: plain syscall; the fd is owned right after it is created.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new, valid descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let reader = fd.try_clone()?;
        let shared: std::sync::Arc<std::sync::Mutex<Naming>> = std::sync::Arc::default();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (thread_shared, thread_wake, thread_stop) =
            (shared.clone(), wake.clone(), stop.clone());
        std::thread::Builder::new()
            .name("cgroup-namer".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                let mut dropped = 0u64;
                while !thread_stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut pollfd = libc::pollfd {
                        fd: reader.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; 100 ms so a stop is seen soon.
                    if unsafe { libc::poll(&mut pollfd, 1, 100) } <= 0 {
                        continue;
                    }
                    // SAFETY: reading into a buffer we own, of the given length.
                    let n = unsafe {
                        libc::read(reader.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    };
                    if n <= 0 {
                        continue;
                    }
                    let events = parse_inotify_events(&buf[..n as usize]);
                    let dirs: Vec<(i32, Option<PathBuf>, String)> = {
                        let shared = thread_shared.lock().unwrap_or_else(|e| e.into_inner());
                        events
                            .into_iter()
                            .map(|(watch, name)| (watch, shared.dirs.get(&watch).cloned(), name))
                            .collect()
                    };
                    let mut learnt = Vec::new();
                    for (watch, dir, name) in dirs {
                        if let Some(dir) = dir
                            && let Ok(meta) = fs::metadata(dir.join(&name))
                            && meta.is_dir()
                        {
                            learnt.push((watch, meta.ino(), name));
                        }
                    }
                    if learnt.is_empty() {
                        continue;
                    }
                    {
                        let mut shared = thread_shared.lock().unwrap_or_else(|e| e.into_inner());
                        for entry in learnt {
                            if shared.named.len() < MAX_NAMED {
                                shared.named.push(entry);
                            } else {
                                dropped += 1;
                                if dropped.is_power_of_two() {
                                    tracing::warn!(
                                        dropped,
                                        "container cgroup names not taken in time; dropped"
                                    );
                                }
                            }
                        }
                    }
                    thread_wake.notify_one();
                }
            })?;
        Ok(Self {
            fd,
            shared,
            wake,
            stop,
        })
    }

    /// Stops watching a subtree's directory.
    fn unwatch(&self, watch: i32) {
        // SAFETY: valid fd and a watch descriptor it returned (an already-removed watch is an
        // error we ignore: the directory may be gone).
        unsafe {
            libc::inotify_rm_watch(std::os::fd::AsRawFd::as_raw_fd(&self.fd), watch);
        }
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirs
            .remove(&watch);
    }
}

impl Drop for Namer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The (watch descriptor, name) pairs in a buffer of `struct inotify_event` records.
fn parse_inotify_events(mut buf: &[u8]) -> Vec<(i32, String)> {
    const HEADER: usize = 16; // wd: i32, mask: u32, cookie: u32, len: u32
    let mut events = Vec::new();
    while buf.len() >= HEADER {
        let watch = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
        let Some(name) = buf.get(HEADER..HEADER + len) else {
            break;
        };
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if !name.is_empty() {
            events.push((watch, String::from_utf8_lossy(name).into_owned()));
        }
        buf = &buf[HEADER + len..];
    }
    events
}

/// The cgroups directly below `dir`: id → directory name. From the directory entries alone (a
/// cgroup's id is its inode number): no stat of the dozens of control files beside them,
/// since every recorded pod is listed at each poll.
fn child_cgroups(dir: &Path) -> BTreeMap<u64, String> {
    use std::os::unix::fs::DirEntryExt as _;
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| {
            (
                entry.ino(),
                entry.file_name().to_string_lossy().into_owned(),
            )
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
            parse_inotify_events(&buf),
            [
                (1, "abc".to_owned()),
                (1, "container-with-a-longer-name".to_owned())
            ]
        );
        assert!(
            parse_inotify_events(&buf[..20]).is_empty(),
            "a truncated record is dropped"
        );
    }

    /// The kernel side's boundary tables (numbers per architecture) against libseccomp's names.
    #[test]
    fn boundary_syscall_numbers_are_libseccomps() {
        use libseccomp::{ScmpArch, ScmpSyscall};
        use recorder_ebpf::{ABI_AARCH64, ABI_X86_64, SETUP_NAMES};
        for (arch, abi) in [
            (ScmpArch::X8664, ABI_X86_64),
            (ScmpArch::Aarch64, ABI_AARCH64),
        ] {
            let nr = |name: &str| {
                let nr: i32 = ScmpSyscall::from_name_by_arch(name, arch)
                    .unwrap_or_else(|e| panic!("{name} on {arch:?}: {e}"))
                    .into();
                u64::try_from(nr).unwrap_or_else(|_| panic!("{name} on {arch:?}: {nr}"))
            };
            assert_eq!(abi.seccomp, nr("seccomp"), "{arch:?}");
            assert_eq!(abi.prctl, nr("prctl"), "{arch:?}");
            assert_eq!(abi.execve, nr("execve"), "{arch:?}");
            assert_eq!(abi.execveat, nr("execveat"), "{arch:?}");
            assert_eq!(
                abi.root_switch,
                [nr("pivot_root"), nr("chroot")],
                "{arch:?}"
            );
            for (name, number) in SETUP_NAMES.iter().zip(abi.setup) {
                if *name == "open_tree_attr" {
                    // Linux 6.15, newer than this libseccomp: the kernel's shared table, 467
                    // on every architecture (include/uapi/asm-generic/unistd.h).
                    assert_eq!(number, 467);
                    continue;
                }
                assert_eq!(number, nr(name), "{name} on {arch:?}");
            }
        }
        assert_eq!(
            boundary(recorder_ebpf::SET_AWAIT_BOUNDARY | recorder_ebpf::SET_ROOT_SWITCHED),
            Boundary::None {
                reason: NoBoundary::NotExeced
            }
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
