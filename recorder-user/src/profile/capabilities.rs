//! The Linux capabilities a recording used: the recorder's mask → names (`CAP_CHOWN`), and
//! the ready-to-paste Kubernetes `securityContext` (`drop: [ALL]`, `add: [CHOWN, …]`).

use std::collections::BTreeSet;

/// `CAP_*` names by number (include/uapi/linux/capability.h, Linux 6.18: `CAP_LAST_CAP` is
/// `CAP_CHECKPOINT_RESTORE`, 40).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities in `mask` (bit n: capability number n), sorted by name.
/// Bits this table has no name for (a newer kernel's) are warned about and left out: a name
/// no runtime knows would make the securityContext unusable.
pub fn names(mask: u64) -> Vec<String> {
    let mut names = BTreeSet::new();
    for cap in (0..64u32).filter(|cap| mask & 1 << cap != 0) {
        match NAMES.get(cap as usize) {
            Some(name) => {
                names.insert((*name).to_owned());
            }
            None => tracing::warn!(
                capability = cap,
                "a capability number this syscribe has no name for was used; it is left out"
            ),
        }
    }
    names.into_iter().collect()
}

/// The union of capability lists (names), sorted. `None` when any is unknown (not recorded):
/// a union missing one recording's needs would understate them.
pub fn union<'a>(lists: impl IntoIterator<Item = Option<&'a [String]>>) -> Option<Vec<String>> {
    let mut all = BTreeSet::new();
    for list in lists {
        all.extend(list?.iter().cloned());
    }
    Some(all.into_iter().collect())
}

/// The capability names as the value of the `syscribe.dev/capabilities` annotation.
pub fn annotation(names: &[String]) -> String {
    names.join(",")
}

/// The capability names an annotation value holds (unknown words are kept as they are: the
/// annotation is ours, but an object can be edited).
pub fn from_annotation(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Kubernetes writes capabilities without the `CAP_` prefix.
pub fn kubernetes_name(name: &str) -> &str {
    name.strip_prefix("CAP_").unwrap_or(name)
}

/// The `securityContext` YAML for a container that used `capabilities` (None: not recorded)
/// and runs under the seccomp profile `profile` (a SeccompProfile's name, installed by the
/// operator as `operator/<name>.json`). `profile` must be a resource name (checked by the
/// caller), the capabilities names from [`NAMES`].
pub fn security_context(capabilities: Option<&[String]>, profile: Option<&str>) -> String {
    let mut out = String::from("securityContext:\n");
    match capabilities {
        Some(names) => {
            out.push_str("  capabilities:\n    drop:\n    - ALL\n");
            if !names.is_empty() {
                out.push_str("    add:\n");
                for name in names {
                    out.push_str(&format!("    - {}\n", kubernetes_name(name)));
                }
            }
        }
        None => out.push_str(
            "  # capabilities: not recorded (no cap_capable tracepoint in this kernel, or the\n  # container's boundary was not found; see syscribe's log)\n",
        ),
    }
    if let Some(profile) = profile {
        out.push_str(&format!(
            "  # The SeccompProfile {profile} (`syscribe record --format crd --name {profile}`),\n  \
             # installed on the node by the operator.\n  \
             seccompProfile:\n    type: Localhost\n    localhostProfile: operator/{profile}.json\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bits_are_capability_numbers_and_names_are_sorted() {
        assert_eq!(names(0), Vec::<String>::new());
        // CAP_NET_BIND_SERVICE is 10, CAP_CHOWN 0, CAP_CHECKPOINT_RESTORE 40.
        assert_eq!(
            names(1 << 10 | 1 | 1 << 40),
            [
                "CAP_CHECKPOINT_RESTORE",
                "CAP_CHOWN",
                "CAP_NET_BIND_SERVICE"
            ]
        );
        assert_eq!(names(1 << 21), ["CAP_SYS_ADMIN"]);
        // A number beyond the table is left out, not named wrongly.
        assert_eq!(names(1 << 41 | 1 << 5), ["CAP_KILL"]);
        assert_eq!(NAMES.len(), 41);
        assert!(NAMES.iter().all(|n| n.starts_with("CAP_")));
    }

    #[test]
    fn unions_are_unknown_when_one_part_is() {
        let a = vec!["CAP_KILL".to_owned(), "CAP_CHOWN".to_owned()];
        let b = vec!["CAP_CHOWN".to_owned(), "CAP_NET_RAW".to_owned()];
        assert_eq!(
            union([Some(a.as_slice()), Some(b.as_slice())]),
            Some(vec![
                "CAP_CHOWN".to_owned(),
                "CAP_KILL".to_owned(),
                "CAP_NET_RAW".to_owned()
            ])
        );
        assert_eq!(union([Some(a.as_slice()), None]), None);
        assert_eq!(union([]), Some(Vec::new()));
    }

    #[test]
    fn annotations_round_trip() {
        let names = vec!["CAP_CHOWN".to_owned(), "CAP_NET_BIND_SERVICE".to_owned()];
        assert_eq!(annotation(&names), "CAP_CHOWN,CAP_NET_BIND_SERVICE");
        assert_eq!(from_annotation(&annotation(&names)), names);
        assert_eq!(from_annotation(""), Vec::<String>::new());
        assert_eq!(from_annotation(" CAP_KILL , "), ["CAP_KILL"]);
    }

    #[test]
    fn security_context_drops_all_and_adds_what_was_used() {
        let names = vec!["CAP_CHOWN".to_owned(), "CAP_NET_BIND_SERVICE".to_owned()];
        let text = security_context(Some(&names), Some("web"));
        assert_eq!(
            text,
            "securityContext:\n  capabilities:\n    drop:\n    - ALL\n    add:\n    - CHOWN\n    \
             - NET_BIND_SERVICE\n  # The SeccompProfile web (`syscribe record --format crd \
             --name web`),\n  # installed on the node by the operator.\n  seccompProfile:\n    \
             type: Localhost\n    localhostProfile: operator/web.json\n"
        );
        // What Kubernetes reads: the same structure as its API's.
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"securityContext": {
                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "operator/web.json"},
            }})
        );
    }

    #[test]
    fn security_context_without_capabilities_or_profile() {
        let parsed: serde_json::Value =
            serde_yaml::from_str(&security_context(Some(&[]), None)).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"securityContext": {"capabilities": {"drop": ["ALL"]}}})
        );
        let text = security_context(None, Some("web"));
        assert!(text.contains("# capabilities: not recorded"), "{text}");
        let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert!(parsed["securityContext"].get("capabilities").is_none());
        assert_eq!(
            parsed["securityContext"]["seccompProfile"]["localhostProfile"],
            "operator/web.json"
        );
    }
}
