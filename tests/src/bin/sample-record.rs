//! Records one sample server (`deploy/profiles/`) under its load and writes its committed
//! profile; `cargo xtask samples` builds the root filesystem, then runs this (as root).
//!
//! `sample-record SERVER OUT.yaml SUITE DATE`, with `SYSCRIBE_BIN` (the syscribe that records)
//! and `SYSCRIBE_SAMPLES` (the root filesystems' cache) set.

use std::process::ExitCode;

use syscribe_tests::samples::{self, Provenance, Server};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, out, suite, date] = args.as_slice() else {
        eprintln!("usage: sample-record SERVER OUT.yaml SUITE DATE");
        return ExitCode::from(2);
    };
    let Some(server) = Server::from_name(server) else {
        eprintln!(
            "sample-record: no sample server {server:?}; there are {:?}",
            Server::ALL.map(Server::name)
        );
        return ExitCode::from(2);
    };
    syscribe_tests::require_root();
    let rootfs = samples::rootfs(server);
    let (profile, served) = match samples::record(server, &rootfs.path) {
        Ok(recorded) => recorded,
        Err(err) => {
            eprintln!("sample-record: {}: {err}", server.name());
            return ExitCode::FAILURE;
        }
    };
    let provenance = Provenance {
        package_version: &rootfs.version,
        suite,
        date,
    };
    let text = match samples::profile_document(server, &profile, &provenance) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("sample-record: {}: {err}", server.name());
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = std::fs::write(out, text) {
        eprintln!("sample-record: writing {out}: {err}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "sample-record: {} {}: {} syscalls, {} requests answered as the site defines -> {out}",
        server.package(),
        rootfs.version,
        syscribe_tests::allowed_names(&profile).len(),
        served.requests,
    );
    ExitCode::SUCCESS
}
