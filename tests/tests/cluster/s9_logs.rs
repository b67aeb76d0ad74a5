//! Last: the daemon's and the webhook's logs of everything before hold no API error (s9).

use syscribe_tests::cluster::{Kube, deployed, tolerated_warnings};

/// Everything above ran under deploy/'s ServiceAccount and ClusterRole with the real
/// authorizer: not one request of the daemon or the webhook may have been refused or failed —
/// except while a test stopped the API server on purpose (its window, `tolerate_warnings`;
/// that test bounds what was logged in it).
#[test]
fn s9_the_daemon_and_webhook_logged_no_api_error() {
    let kube = Kube::get();
    deployed(&kube);
    let windows = tolerated_warnings();
    for (what, selector) in [
        ("daemon", "app.kubernetes.io/name=syscribe"),
        ("webhook", "app.kubernetes.io/name=syscribe-webhook"),
    ] {
        let logs = kube.ok(&[
            "logs",
            "-n",
            "syscribe",
            "-l",
            selector,
            "--tail=-1",
            "--prefix",
            "--timestamps",
        ]);
        assert!(!logs.trim().is_empty(), "the {what} logged nothing at all");
        // `[pod/<name>/<container>] <time> <line>`
        let tolerated = |line: &str| {
            let at = line
                .split_once("] ")
                .and_then(|(_, rest)| rest.split_once(' '))
                .and_then(|(ts, _)| syscribe_tests::cluster::rfc3339_seconds(ts));
            at.is_some_and(|at| windows.iter().any(|(from, to, _)| *from <= at && at <= *to))
        };
        let excused = logs.lines().filter(|l| tolerated(l)).count();
        if excused > 0 {
            println!(
                "the {what}: {excused} lines written while {} are not looked at",
                windows
                    .iter()
                    .map(|(_, _, why)| why.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let bad: Vec<&str> = logs
            .lines()
            .filter(|l| !tolerated(l))
            .filter(|l| {
                // A 403 as kube-rs and the API server write it; a bare "403" also
                // matched pod UIDs (`podb0010832-a403-…`, seen in a green run).
                l.contains("code: 403")
                    || l.contains("\"code\":403")
                    || l.contains("Forbidden")
                    || l.contains("forbidden")
                    || l.contains("\"level\":\"ERROR\"")
                    || l.contains("\"level\":\"WARN\"")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the {what} logged API errors or warnings:\n{}",
            bad.join("\n")
        );
    }
}
