//! Benchmark helper (run by `cargo xtask bench recorder`): the wall time of `runc run` of a
//! trivial busybox container, with and without `syscribe record --cgroup` recording its pod.
//! Blocks alternate so drift hits both sides alike; prints the medians and their ratio.
//!
//! usage: container-start SYSCRIBE_BIN RUNS_PER_BLOCK BLOCKS

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::Instant,
};

use syscribe_tests::{
    TempDir,
    containers::{Bundle, PodCgroup},
};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn start_recording(syscribe: &str, pod: &PodCgroup, out: &TempDir) -> Child {
    let mut child = Command::new(syscribe)
        .args(["record", "--cgroup", &pod.path(), "-o"])
        .arg(out.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start syscribe record --cgroup");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("recording the containers") => break,
            Some(Ok(_)) => continue,
            _ => panic!("syscribe record --cgroup did not start"),
        }
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, syscribe, runs, blocks] = args.as_slice() else {
        eprintln!("usage: container-start SYSCRIBE_BIN RUNS_PER_BLOCK BLOCKS");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS_PER_BLOCK");
    let blocks: usize = blocks.parse().expect("BLOCKS");
    let pod = PodCgroup::new();
    let out = TempDir::new("container-start");
    let bundle = Bundle::new(&pod, &["/bin/true"]);
    // Both sides run under a filter, as recorded containers do.
    bundle.set_seccomp(Some(
        &serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW" }),
    ));
    let time_runs = |samples: &mut Vec<f64>| {
        for _ in 0..runs {
            let start = Instant::now();
            let ran = bundle.run("runc");
            assert!(
                ran.status.success(),
                "runc run failed: {}",
                String::from_utf8_lossy(&ran.stderr)
            );
            samples.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        time_runs(&mut without);
        let mut recording = start_recording(syscribe, &pod, &out);
        time_runs(&mut with);
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(recording.id() as i32, libc::SIGTERM) };
        let status = recording.wait().expect("wait for syscribe");
        assert!(
            status.success(),
            "syscribe record --cgroup failed: {status}"
        );
    }
    let (a, b) = (median(without), median(with));
    println!(
        "container start (runc run of busybox true, {} runs each): {a:.1} ms without recording, {b:.1} ms while recording the pod, ratio {:.2}x",
        runs * blocks,
        b / a
    );
}
