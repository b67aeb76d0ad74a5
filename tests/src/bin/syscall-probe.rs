//! A test program of ours whose syscalls are known: the recorder must see exactly these.
//!
//! `syscall-probe unusual`  uname, getcwd, sched_yield, getpriority
//! `syscall-probe family`   the parent's thread calls sysinfo; a forked child calls getsid and
//!                          its thread calls times; a grandchild calls getpgid.
//! `syscall-probe x32`      calls getpid through the x32 ABI (number | 0x4000_0000): beyond the
//!                          recorder's range, so it must be counted as dropped.
//! `syscall-probe linger`   calls sysinfo, then sleeps 30 s (a process left behind).
//! `syscall-probe loop N`   getppid N times; prints ns per call (benchmark workload).
//! `syscall-probe caploop N` kill(child, 0) N times, the child running as another user (so
//!                          each call is one CAP_KILL check); prints ns per call (benchmark
//!                          workload of the capability hook; run it as root).

use std::time::Instant;

fn raw(nr: libc::c_long, a: libc::c_long) -> libc::c_long {
    // SAFETY: only argument-free or pointer-free syscalls, or a valid buffer (see callers).
    unsafe { libc::syscall(nr, a, 0, 0) }
}

fn unusual() {
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let mut cwd = [0u8; 4096];
    assert_eq!(
        raw(libc::SYS_uname, std::ptr::addr_of_mut!(uts) as libc::c_long),
        0
    );
    // SAFETY: cwd is a valid buffer of the given length.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, cwd.as_mut_ptr(), cwd.len()) };
    assert!(n > 0);
    assert_eq!(raw(libc::SYS_sched_yield, 0), 0);
    raw(libc::SYS_getpriority, libc::PRIO_PROCESS as libc::c_long);
}

fn in_thread(nr: libc::c_long, arg: libc::c_long) {
    std::thread::spawn(move || raw(nr, arg))
        .join()
        .expect("thread");
}

fn fork_and_wait(child: impl FnOnce()) {
    // SAFETY: the child only makes syscalls and spawns a thread before _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: leaving the child without running the parent's atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );
}

fn family() {
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    let info_ptr = std::ptr::addr_of_mut!(info) as libc::c_long;
    in_thread(libc::SYS_sysinfo, info_ptr);
    fork_and_wait(|| {
        raw(libc::SYS_getsid, 0);
        let mut tms: libc::tms = unsafe { std::mem::zeroed() };
        in_thread(libc::SYS_times, std::ptr::addr_of_mut!(tms) as libc::c_long);
        fork_and_wait(|| {
            raw(libc::SYS_getpgid, 0);
        });
    });
}

/// The benchmark loop runs on one CPU so that migrations do not add noise.
fn pin_to_last_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t of the right size.
    unsafe {
        let cpus = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// kill(child, 0) `n` times: the child runs as `nobody`, so root passes the permission check
/// only through CAP_KILL (`kill_ok_by_cred`), one capability check per call.
fn capability_loop(n: u64) {
    // SAFETY: the child only calls setuid and pause before being killed.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // SAFETY: plain syscalls in the child.
        unsafe {
            if libc::setuid(65534) != 0 {
                libc::_exit(1);
            }
            loop {
                libc::pause();
            }
        }
    }
    // The child's uid must have changed before the loop, or no check would be needed.
    let status = format!("/proc/{child}/status");
    while !std::fs::read_to_string(&status).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534"))
    }) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pin_to_last_cpu();
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: signal 0 only checks permission.
        let sent = unsafe { libc::kill(child, 0) };
        assert_eq!(sent, 0, "kill(child, 0) failed: not root?");
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    // SAFETY: our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    println!("{ns:.2}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("unusual") => unusual(),
        Some("family") => family(),
        Some("x32") => {
            // ENOSYS on kernels without x32 support; the sys_enter tracepoint sees it either way.
            raw(0x4000_0000 | libc::SYS_getpid, 0);
        }
        Some("linger") => {
            let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
            raw(
                libc::SYS_sysinfo,
                std::ptr::addr_of_mut!(info) as libc::c_long,
            );
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        Some("loop") => {
            pin_to_last_cpu();
            let n: u64 = args
                .get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(3_000_000);
            let start = Instant::now();
            for _ in 0..n {
                raw(libc::SYS_getppid, 0);
            }
            println!("{:.2}", start.elapsed().as_nanos() as f64 / n as f64);
        }
        Some("caploop") => {
            let n: u64 = args
                .get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(3_000_000);
            capability_loop(n);
        }
        _ => {
            eprintln!("usage: syscall-probe unusual|family|x32|linger|loop N|caploop N");
            std::process::exit(2);
        }
    }
}
