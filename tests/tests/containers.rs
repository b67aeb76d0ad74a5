//! Recording real containers (runc, crun) below a pod's cgroup (root, real kernel).

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use syscribe_tests::{
    containers::{Bundle, PodCgroup},
    *,
};

/// A running `syscribe record --cgroup`.
struct PodRecording {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl PodRecording {
    fn start(pod: &PodCgroup, out: &Path) -> Self {
        let mut child = syscribe()
            .args(["record", "--cgroup", &pod.path(), "-o"])
            .arg(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn syscribe record --cgroup");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut recording = Self {
            child,
            lines,
            log: Vec::new(),
        };
        recording.wait_for_line("recording the containers");
        recording
    }

    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(needle) {
                    return;
                }
            }
        }
        panic!(
            "syscribe never said {needle:?}; it said:\n{}",
            self.log.join("\n")
        );
    }

    /// SIGTERM, then the whole log.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        self.log.extend(self.lines.try_iter());
        assert!(
            status.success(),
            "syscribe record --cgroup failed: {}",
            self.log.join("\n")
        );
        self.log
    }
}

/// Waits for the profile syscribe writes when the container's cgroup goes away.
fn profile_of(out: &Path, bundle: &Bundle) -> serde_json::Value {
    let path: PathBuf = out.join(format!("{}.json", bundle.id));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no profile at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn containers_of_a_pod_get_their_own_profiles_from_their_first_syscall() {
    require_root();
    let pod = PodCgroup::new();
    let out = TempDir::new("pod-profiles");
    let recording = PodRecording::start(&pod, out.path());

    // Containers created after the recording started; each makes its distinctive syscall
    // first thing (busybox applets run without a shell in between).
    let first = Bundle::new(&pod, &["/bin/uname", "-a"]);
    let second = Bundle::new(&pod, &["/bin/sh", "-c", "sync && echo synced"]);
    let ran_first = first.run("runc");
    let ran_second = second.run("runc");
    assert!(ran_first.status.success(), "{}", stderr(&ran_first));
    assert!(ran_second.status.success(), "{}", stderr(&ran_second));
    let first_names = allowed_names(&profile_of(out.path(), &first));
    let second_names = allowed_names(&profile_of(out.path(), &second));
    let log = recording.stop();
    eprintln!(
        "first: {first_names:?}\nsecond: {second_names:?}\nlog:\n{}",
        log.join("\n")
    );
    assert!(first_names.contains("uname"), "{first_names:?}");
    assert!(second_names.contains("sync"), "{second_names:?}");
    let only_first: BTreeSet<_> = first_names.difference(&second_names).collect();
    let only_second: BTreeSet<_> = second_names.difference(&first_names).collect();
    assert!(!only_first.contains(&"sync".to_owned()) && !only_second.contains(&"uname".to_owned()));
}
