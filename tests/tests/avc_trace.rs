//! The eBPF program on `avc:selinux_audited` loads and attaches to this kernel's real
//! tracepoint (root). SELinux is compiled in but off here, so the kernel never fires it: no
//! denial is read; decoding is tested on byte-exact records in recorder-user's unit tests.

use syscribe::bpf::{AVC_FORMAT_PATHS, AvcTracer};
use syscribe_tests::require_root;

/// The tracepoint's format, mounting tracefs first where it is missing.
fn format() -> String {
    if !std::path::Path::new(AVC_FORMAT_PATHS[0]).exists() {
        let status = std::process::Command::new("mount")
            .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot mount tracefs");
    }
    std::fs::read_to_string(AVC_FORMAT_PATHS[0])
        .expect("this kernel has the avc:selinux_audited tracepoint (SELinux compiled in)")
}

#[test]
fn the_avc_program_attaches_to_the_real_tracepoint() {
    require_root();
    let format = format();
    let mut tracer = AvcTracer::start(std::path::Path::new("/sys/kernel/btf/vmlinux"), &format)
        .expect("the AVC program loads and attaches");
    assert_eq!(tracer.drain(|_| {}), 0, "SELinux is off: nothing is denied");
    assert_eq!(tracer.counters().unwrap(), (0, 0, 0));
    drop(tracer);
}

#[test]
fn a_kernel_whose_format_moved_is_refused_before_loading() {
    require_root();
    let moved = format().replace("tclass;\toffset:32", "tclass;\toffset:40");
    let err = AvcTracer::start(std::path::Path::new("/sys/kernel/btf/vmlinux"), &moved)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("tclass"), "{err}");
}
