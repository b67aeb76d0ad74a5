//! The sample profiles in `deploy/profiles/` hold: each server, run by runc under its committed
//! profile (turned into the OCI JSON runc loads by `syscribe pull`, as a user would), answers
//! the load it was recorded under with the same statuses and bodies, reloads its
//! configuration and stops gracefully — with only the capabilities it was recorded using
//! (its `syscribe.dev/capabilities` annotation), every other one dropped; without one syscall it needs only to serve (`accept4`)
//! the same load fails, so the profile is what confines it.
//!
//! The servers' root filesystems come from `cargo xtask test` (Debian's packages, cached; see
//! `syscribe_tests::samples`).

use std::{path::PathBuf, time::Duration};

use syscribe_tests::{
    containers::{PodCgroup, assert_no_container_leftovers},
    samples::{self, ANNOTATION_PACKAGE, Sample, Server},
    *,
};

fn committed(server: Server) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/profiles")
        .join(format!("{}.yaml", server.name()))
}

fn replays_under_its_committed_profile(server: Server) {
    require_root();
    let rootfs = samples::rootfs(server);
    let file = committed(server);
    let dir = TempDir::new(&format!("sample-replay-{}", server.name()));

    let validated = syscribe().arg("validate").arg(&file).output().unwrap();
    assert!(
        validated.status.success(),
        "syscribe validate {}: {}",
        file.display(),
        stderr(&validated)
    );
    let oci = dir.join("profile.json");
    let pulled = syscribe()
        .args(["pull", server.name(), "-f"])
        .arg(&file)
        .arg("-o")
        .arg(&oci)
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "syscribe pull: {}",
        stderr(&pulled)
    );
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&oci).unwrap()).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");

    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let recorded_from = yaml["metadata"]["annotations"][ANNOTATION_PACKAGE]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {ANNOTATION_PACKAGE}", file.display()));
    let here = format!("{}={}", server.package(), rootfs.version);
    if recorded_from != here {
        // Debian's point releases move on; the replay says whether the profile still holds.
        eprintln!(
            "note: {} was recorded from {recorded_from}, the cached root filesystem has {here}; \
             `cargo xtask samples {}` records it again",
            file.display(),
            server.name()
        );
    }

    // The capabilities it used when recorded, and no others.
    let capabilities = yaml["metadata"]["annotations"]["syscribe.dev/capabilities"]
        .as_str()
        .map(syscribe::profile::capabilities::from_annotation)
        .unwrap_or_else(|| panic!("{} has no syscribe.dev/capabilities", file.display()));

    let pod = PodCgroup::new();
    let served = Sample::new(server, &rootfs.path, &pod, Some(&profile))
        .with_capabilities(&capabilities)
        .serve()
        .unwrap_or_else(|err| {
            panic!(
                "{} under its committed profile, with only {capabilities:?}, did not answer as \
                 when it was recorded: {err}",
                server.name()
            )
        });
    assert!(served.requests > 0);

    let needed = server.needed_to_serve();
    let crippled: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(without_syscall(&dir, &profile, needed)).unwrap(),
    )
    .unwrap();
    let refused = Sample::new(server, &rootfs.path, &pod, Some(&crippled))
        .with_capabilities(&capabilities)
        .with_request_time(Duration::from_secs(3))
        .serve();
    match refused {
        Ok(_) => panic!(
            "{} answered the whole load without {needed} in its profile: the profile does not \
             confine it",
            server.name()
        ),
        Err(err) => eprintln!(
            "{} without {needed}, as it must: {}",
            server.name(),
            err.lines().next().unwrap_or_default()
        ),
    }
    assert_no_container_leftovers(pod);
}

#[test]
fn nginx_replays_under_its_sample_profile() {
    replays_under_its_committed_profile(Server::Nginx);
}

#[test]
fn httpd_replays_under_its_sample_profile() {
    replays_under_its_committed_profile(Server::Httpd);
}

#[test]
fn haproxy_replays_under_its_sample_profile() {
    replays_under_its_committed_profile(Server::Haproxy);
}
