//! The daemon's idle memory on the node (s8).

use syscribe_tests::cluster::{Kube, daemon_pids, deployed, rss_kib};

/// The daemon's resident memory on the node while it records nothing (a figure for
/// docs/kubernetes.md, printed; the test only checks it was found).
#[test]
fn s8_the_daemons_idle_memory_is_measured() {
    let kube = Kube::get();
    deployed(&kube);
    let found: Vec<u64> = daemon_pids().into_iter().filter_map(rss_kib).collect();
    assert_eq!(
        found.len(),
        1,
        "one syscribe daemon process on the node: {found:?}"
    );
    println!(
        "syscribe daemon RSS, idle on the node: {:.1} MiB",
        found[0] as f64 / 1024.0
    );
}
