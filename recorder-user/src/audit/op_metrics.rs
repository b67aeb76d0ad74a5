//! The daemon's per-operation counters, beside the audit counters on `/metrics`: profiles
//! installed, removed and failed on this node (by kind), recordings started and finished (by
//! kind), and requests to the API server that failed (by verb and HTTP code, or `transport`
//! when no answer came) — what an infrastructure SRE alerts on.
//!
//! Process-wide: the places that install, record and call the API count here without a
//! handle; [`super::metrics::Metrics::render`] appends [`render`]. Every series is bounded: the
//! kinds and verbs are fixed lists, codes are at most [`MAX_CODES`] per verb (the rest are
//! counted as `other`).

use std::{
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// What the daemon did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A profile was written to this node (new or changed).
    ProfileInstalled,
    /// A profile's file or module was removed from this node.
    ProfileRemoved,
    /// A profile could not be installed here (invalid, missing base, write error).
    ProfileFailed,
    /// A pod's recording started.
    RecordingStarted,
    /// A pod's recording ended (its profiles handed to the publisher).
    RecordingFinished,
}

/// The kinds operations are counted by.
pub const KINDS: [&str; 3] = ["SeccompProfile", "SelinuxProfile", "RawSelinuxProfile"];

const OPS: [(Op, &str, &str); 5] = [
    (
        Op::ProfileInstalled,
        "syscribe_profiles_installed_total",
        "Profiles written to this node (new or changed), by kind.",
    ),
    (
        Op::ProfileRemoved,
        "syscribe_profiles_removed_total",
        "Profiles removed from this node, by kind.",
    ),
    (
        Op::ProfileFailed,
        "syscribe_profiles_failed_total",
        "Profiles this node could not install (invalid, missing base, write error), by kind.",
    ),
    (
        Op::RecordingStarted,
        "syscribe_recordings_started_total",
        "Pod recordings started on this node, by kind.",
    ),
    (
        Op::RecordingFinished,
        "syscribe_recordings_finished_total",
        "Pod recordings ended on this node (profiles handed to the publisher), by kind.",
    ),
];

/// One counter per (operation, kind).
static COUNTS: [AtomicU64; OPS.len() * KINDS.len()] =
    [const { AtomicU64::new(0) }; OPS.len() * KINDS.len()];

/// The API verbs requests are counted by (kube's names for what the HTTP request was).
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Distinct codes kept per verb; more are counted as `other`.
pub const MAX_CODES: usize = 16;

/// Failed API requests: per verb, (code, count).
static API_ERRORS: Mutex<[Vec<(String, u64)>; VERBS.len()]> =
    Mutex::new([const { Vec::new() }; VERBS.len()]);

fn index(op: Op) -> usize {
    OPS.iter().position(|(o, _, _)| *o == op).unwrap_or(0)
}

/// Counts one operation on a profile or recording of `kind` (one of [`KINDS`]; others are
/// not counted).
pub fn count(op: Op, kind: &str) {
    if let Some(k) = KINDS.iter().position(|k| *k == kind) {
        COUNTS[index(op) * KINDS.len() + k].fetch_add(1, Ordering::Relaxed);
    }
}

/// The current value of one counter.
pub fn value(op: Op, kind: &str) -> u64 {
    KINDS.iter().position(|k| *k == kind).map_or(0, |k| {
        COUNTS[index(op) * KINDS.len() + k].load(Ordering::Relaxed)
    })
}

/// Counts a failed API request: `code` is the HTTP status, None when no answer came.
pub fn api_error(verb: &str, code: Option<u16>) {
    let Some(v) = VERBS.iter().position(|known| *known == verb) else {
        return;
    };
    let code = code.map_or_else(|| "transport".to_owned(), |c| c.to_string());
    let Ok(mut errors) = API_ERRORS.lock() else {
        return;
    };
    let series = &mut errors[v];
    if let Some(entry) = series.iter_mut().find(|(c, _)| *c == code) {
        entry.1 += 1;
    } else if series.len() < MAX_CODES {
        series.push((code, 1));
    } else if let Some(entry) = series.iter_mut().find(|(c, _)| c == "other") {
        entry.1 += 1;
    } else {
        // The last slot becomes `other` (its own count kept in it).
        if let Some(last) = series.last_mut() {
            last.0 = "other".to_owned();
            last.1 += 1;
        }
    }
}

/// The counters in the Prometheus text format, appended to `out`.
pub fn render(out: &mut String) {
    for (i, (_, name, help)) in OPS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (k, kind) in KINDS.iter().enumerate() {
            let value = COUNTS[i * KINDS.len() + k].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {value}");
        }
    }
    let name = "syscribe_api_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Requests to the API server that failed, by verb and HTTP code (transport: no answer).\n# TYPE {name} counter"
    );
    if let Ok(errors) = API_ERRORS.lock() {
        for (verb, series) in VERBS.iter().zip(errors.iter()) {
            let mut series = series.clone();
            series.sort();
            for (code, value) in series {
                let _ = writeln!(out, "{name}{{verb=\"{verb}\",code=\"{code}\"}} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_renders_every_family() {
        let before = value(Op::ProfileInstalled, "SeccompProfile");
        count(Op::ProfileInstalled, "SeccompProfile");
        count(Op::ProfileInstalled, "NotAKind");
        assert_eq!(value(Op::ProfileInstalled, "SeccompProfile"), before + 1);
        let mut text = String::new();
        render(&mut text);
        for family in [
            "syscribe_profiles_installed_total",
            "syscribe_profiles_removed_total",
            "syscribe_profiles_failed_total",
            "syscribe_recordings_started_total",
            "syscribe_recordings_finished_total",
            "syscribe_api_errors_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} counter")),
                "{family}: {text}"
            );
        }
        assert!(
            text.contains("syscribe_profiles_removed_total{kind=\"RawSelinuxProfile\"}"),
            "{text}"
        );
    }

    #[test]
    fn api_errors_are_counted_by_verb_and_code_and_bounded() {
        api_error("deletecollection", Some(409));
        api_error("deletecollection", Some(409));
        api_error("deletecollection", None);
        api_error("frobnicate", Some(500));
        for code in 0..100u16 {
            api_error("update", Some(400 + code));
        }
        let mut text = String::new();
        render(&mut text);
        assert!(
            text.contains("syscribe_api_errors_total{verb=\"deletecollection\",code=\"409\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "syscribe_api_errors_total{verb=\"deletecollection\",code=\"transport\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("frobnicate"), "{text}");
        let update = text
            .lines()
            .filter(|l| l.starts_with("syscribe_api_errors_total{verb=\"update\""))
            .count();
        assert_eq!(update, MAX_CODES, "{text}");
        let total: u64 = text
            .lines()
            .filter(|l| l.starts_with("syscribe_api_errors_total{verb=\"update\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 100, "every failure is counted, some as other");
    }
}
