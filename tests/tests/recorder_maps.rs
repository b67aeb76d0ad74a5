//! The recorder's kernel maps, driven through the library: index collisions and bounds.

use std::{path::PathBuf, process::Command};

use syscribe::{
    bpf::{BpfError, INDEX_SLOTS, MAX_RECORDED_CGROUPS, Recorder},
    profile::build::syscall_name,
    resolve::cgroup::cgroup_id,
};
use syscribe_tests::require_root;

const BTF: &str = "/sys/kernel/btf/vmlinux";

struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from("/sys/fs/cgroup/unified").join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create test cgroup");
        Self(dir)
    }

    /// Runs a busybox applet inside the cgroup (the shell joins, then execs the applet).
    fn run(&self, applet: &str) {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec /bin/busybox {applet}",
            self.0.display()
        );
        let status = Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{applet} failed in the test cgroup");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn names(recorder: &mut Recorder, id: u64) -> Vec<String> {
    let (set, _) = recorder.read(id).expect("read set");
    set.numbers().filter_map(syscall_name).collect()
}

/// A recorded cgroup whose index slot is taken by another recorded id lives in the collision
/// map, and is recorded all the same — also after the slot's owner stops being recorded.
#[test]
fn colliding_cgroup_ids_are_recorded() {
    require_root();
    let cgroup = TestCgroup::new("syscribe-test-collide");
    let id = cgroup_id(&cgroup.0).unwrap();
    let squatter = id + u64::from(INDEX_SLOTS); // same index slot, no such cgroup yet
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    recorder.watch(squatter).unwrap();
    recorder.watch(id).unwrap();
    recorder.attach().unwrap();

    cgroup.run("uname");
    let recorded = names(&mut recorder, id);
    assert!(recorded.contains(&"uname".to_owned()), "{recorded:?}");
    assert!(
        names(&mut recorder, squatter).is_empty(),
        "nothing runs in the squatter's cgroup"
    );

    recorder.unwatch(squatter).unwrap();
    cgroup.run("sync");
    let recorded = names(&mut recorder, id);
    assert!(recorded.contains(&"sync".to_owned()), "{recorded:?}");
    recorder.unwatch(id).unwrap();
    assert!(matches!(
        recorder.read(id),
        Err(BpfError::NotWatched { .. })
    ));
}

#[test]
fn the_recording_table_is_bounded_and_says_so() {
    require_root();
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    // Fake ids spread over index slots and collisions alike.
    let ids: Vec<u64> = (0..u64::from(MAX_RECORDED_CGROUPS))
        .map(|i| 1_000_000 + i * 3)
        .collect();
    for id in &ids {
        recorder.watch(*id).unwrap();
    }
    let err = recorder.watch(42).unwrap_err();
    assert!(
        matches!(err, BpfError::TableFull { cgroup_id: 42 }),
        "{err}"
    );
    assert!(err.to_string().contains("recording table is full"), "{err}");
    recorder.unwatch(ids[0]).unwrap();
    recorder.watch(42).expect("a freed slot is reusable");
}

/// The per-CPU decision cache never outlives a change: a task that leaves a recorded cgroup is
/// no longer recorded, and a cgroup that starts being recorded while its task runs is recorded
/// from its next syscall on.
#[test]
fn cached_decisions_follow_cgroup_moves_and_new_recordings() {
    use std::io::Write as _;

    require_root();
    let cgroup = TestCgroup::new("syscribe-test-cache");
    let id = cgroup_id(&cgroup.0).unwrap();
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    recorder.watch(id).unwrap();
    recorder.attach().unwrap();

    // Joins, calls uname, leaves for the root cgroup, then calls sync: only uname counts.
    let root_procs = "/sys/fs/cgroup/unified/cgroup.procs";
    let script = format!(
        "echo $$ > {}/cgroup.procs; /bin/busybox uname >/dev/null; echo $$ > {root_procs}; exec /bin/busybox sync",
        cgroup.0.display()
    );
    let status = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let recorded = names(&mut recorder, id);
    assert!(recorded.contains(&"uname".to_owned()), "{recorded:?}");
    assert!(
        !recorded.contains(&"sync".to_owned()),
        "recorded after leaving: {recorded:?}"
    );
    recorder.unwatch(id).unwrap();

    // A task already running (and deciding "not recorded" on every syscall) in a cgroup that
    // then starts being recorded.
    let script = format!(
        "echo $$ > {}/cgroup.procs; read line; exec /bin/busybox sync",
        cgroup.0.display()
    );
    let mut child = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let procs = cgroup.0.join("cgroup.procs");
    while std::fs::read_to_string(&procs).unwrap().trim().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    recorder.watch(id).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    let recorded = names(&mut recorder, id);
    assert!(recorded.contains(&"sync".to_owned()), "{recorded:?}");
    recorder.unwatch(id).unwrap();
}

/// A recorded subtree: containers (cgroups directly below it) created after recording started
/// each get their own set from their first syscall, nested cgroups count for their container,
/// and two containers do not mix.
#[test]
fn subtree_containers_are_discovered_from_their_first_syscall() {
    require_root();
    let pod = TestCgroup::new("syscribe-test-pod");
    let pod_id = cgroup_id(&pod.0).unwrap();
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    recorder.watch_subtree(pod_id, 1).unwrap();
    recorder.attach().unwrap();

    // Created after the recording started, like a container of a pod.
    let first = TestCgroup::new("syscribe-test-pod/first");
    let second = TestCgroup::new("syscribe-test-pod/second");
    let nested = TestCgroup::new("syscribe-test-pod/second/nested");
    first.run("uname");
    nested.run("sync");
    pod.run("true"); // the pod's own cgroup is not a container

    let mut discovered = recorder.discovered().unwrap();
    discovered.sort();
    let first_id = cgroup_id(&first.0).unwrap();
    let second_id = cgroup_id(&second.0).unwrap();
    let ids: Vec<u64> = discovered.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [first_id, second_id], "discovered {discovered:?}");
    let names_in = |recorder: &mut Recorder, slot: u32| -> Vec<String> {
        let (set, _) = recorder.read_slot(slot).unwrap();
        set.numbers().filter_map(syscall_name).collect()
    };
    let first_names = names_in(&mut recorder, discovered[0].1);
    let second_names = names_in(&mut recorder, discovered[1].1);
    assert!(first_names.contains(&"uname".to_owned()), "{first_names:?}");
    assert!(
        !first_names.contains(&"sync".to_owned()),
        "crosstalk: {first_names:?}"
    );
    assert!(
        second_names.contains(&"sync".to_owned()),
        "{second_names:?}"
    );
    assert!(
        !second_names.contains(&"uname".to_owned()),
        "crosstalk: {second_names:?}"
    );
    assert_eq!(recorder.claim_failures().unwrap(), 0);

    for (id, slot) in discovered {
        recorder.release(id, slot).unwrap();
    }
    assert!(recorder.discovered().unwrap().is_empty());
    drop(nested);
}

/// A cgroup tree removed (deepest first) on drop.
struct Tree(Vec<PathBuf>);

impl Tree {
    fn dir(&mut self, path: PathBuf) -> PathBuf {
        std::fs::create_dir_all(&path).expect("create a test cgroup");
        self.0.push(path.clone());
        path
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A node's worth of pods at once: 110 pod subtrees at two depths (guaranteed pods one level
/// above burstable and best-effort ones, as the kubelet lays them out) with 512 containers
/// between them, each a cgroup with a short busybox process: every container gets a set of
/// its own holding its own applet's syscall, and no claim fails.
#[test]
fn a_node_of_110_pods_and_512_containers_is_recorded_at_once() {
    require_root();
    const PODS: usize = 110;
    const CONTAINERS: usize = 512;
    let applets: [(&str, &str); 4] = [
        ("sync", "sync"),
        ("nproc", "sched_getaffinity"),
        ("uptime", "sysinfo"),
        ("uname", "uname"),
    ];
    let root = PathBuf::from(format!(
        "/sys/fs/cgroup/unified/syscribe-test-node-{}",
        std::process::id()
    ));
    let mut tree = Tree(Vec::new());
    let mut pods = Vec::new();
    for i in 0..PODS {
        let dir = match i % 3 {
            0 => root.join(format!("pod{i}")),
            1 => root.join("burstable").join(format!("pod{i}")),
            _ => root.join("besteffort").join(format!("pod{i}")),
        };
        pods.push(tree.dir(dir));
    }
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    for pod in &pods {
        let level = pod
            .strip_prefix("/sys/fs/cgroup/unified")
            .unwrap()
            .components()
            .count() as u32;
        recorder
            .watch_subtree(cgroup_id(pod).unwrap(), level)
            .unwrap();
    }
    recorder.attach().unwrap();

    // Containers dealt round-robin over the pods (4 or 5 each).
    let mut expected = std::collections::HashMap::new();
    for c in 0..CONTAINERS {
        let container = tree.dir(pods[c % PODS].join(format!("c{c}")));
        let (applet, syscall) = applets[c % applets.len()];
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec /bin/busybox {applet} >/dev/null",
            container.display()
        );
        let status = Command::new("/bin/busybox")
            .args(["sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "{applet} in {}", container.display());
        expected.insert(cgroup_id(&container).unwrap(), (container, syscall));
    }

    let discovered = recorder.discovered().unwrap();
    assert_eq!(
        discovered.len(),
        CONTAINERS,
        "every container has a set, nothing else does"
    );
    let mut slots = std::collections::HashSet::new();
    for (id, slot) in discovered {
        let (container, syscall) = expected
            .get(&id)
            .unwrap_or_else(|| panic!("cgroup {id} is no test container"));
        assert!(slots.insert(slot), "slot {slot} given twice");
        let (set, _) = recorder.read_slot(slot).unwrap();
        let names: Vec<String> = set.all_numbers().filter_map(syscall_name).collect();
        assert!(
            names.iter().any(|n| n == syscall) && names.iter().any(|n| n == "execve"),
            "{}: {syscall} missing from {names:?}",
            container.display()
        );
    }
    assert_eq!(recorder.claim_failures().unwrap(), 0);
    recorder.detach().unwrap();
}

/// The subtree tables say when they are full: subtrees beyond `MAX_SUBTREES`, and depths
/// beyond `MAX_SUBTREE_LEVELS` (fake cgroup ids: nothing runs in them).
#[test]
fn the_subtree_tables_are_bounded_and_say_so() {
    use syscribe::bpf::{MAX_SUBTREE_LEVELS, MAX_SUBTREES};
    require_root();
    let (mut recorder, _log) = Recorder::load(BTF.as_ref()).unwrap();
    for level in 1..=MAX_SUBTREE_LEVELS {
        recorder.watch_subtree(u64::from(level), level).unwrap();
    }
    let err = recorder
        .watch_subtree(100, MAX_SUBTREE_LEVELS + 1)
        .unwrap_err();
    assert!(
        matches!(err, BpfError::SubtreeLevelsFull { cgroup_id: 100, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("different depths"), "{err}");
    for id in u64::from(MAX_SUBTREE_LEVELS) + 1..=u64::from(MAX_SUBTREES) {
        recorder.watch_subtree(1_000 + id, 3).unwrap();
    }
    let err = recorder.watch_subtree(42, 3).unwrap_err();
    assert!(
        matches!(err, BpfError::SubtreesFull { cgroup_id: 42 }),
        "{err}"
    );
    recorder
        .unwatch_subtree(1_003 + u64::from(MAX_SUBTREE_LEVELS))
        .unwrap();
    recorder
        .watch_subtree(42, 3)
        .expect("a freed subtree entry is reusable");
}
