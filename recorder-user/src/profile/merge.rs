//! Merging the partial profiles of a workload's replicas (`mergeStrategy: Containers`): the
//! union of what every replica was allowed, and the coverage — in how many of the replicas
//! each syscall was seen — as upstream's `spo.x-k8s.io/syscall-coverage` annotation
//! (`{"version":"v1","total":N,"syscalls":{name:count}}`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::seccomp::{Action, Seccomp, SyscallRule};

/// `spo.x-k8s.io/syscall-coverage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub version: &'static str,
    /// How many partial profiles were merged.
    pub total: usize,
    /// Syscall name → in how many of them it was allowed.
    pub syscalls: BTreeMap<String, usize>,
}

/// The union of `partials` (recorded profiles: default action plus allow rules), and the
/// coverage. `None` when there is nothing to merge.
pub fn merge_partials(partials: &[Seccomp]) -> Option<(Seccomp, Coverage)> {
    let first = partials.first()?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut architectures = Vec::new();
    for partial in partials {
        let mut names: Vec<&String> = partial
            .syscalls
            .iter()
            .filter(|rule| rule.action == Action::Allow)
            .flat_map(|rule| rule.names.iter())
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            *counts.entry(name.clone()).or_default() += 1;
        }
        for arch in &partial.architectures {
            if !architectures.contains(arch) {
                architectures.push(arch.clone());
            }
        }
    }
    let mut merged = first.clone();
    merged.architectures = architectures;
    merged.syscalls = if counts.is_empty() {
        Vec::new()
    } else {
        vec![SyscallRule {
            names: counts.keys().cloned().collect(),
            action: Action::Allow,
            errno_ret: None,
            args: Vec::new(),
        }]
    };
    merged.syscribe = None;
    Some((
        merged,
        Coverage {
            version: "v1",
            total: partials.len(),
            syscalls: counts,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(names: &[&str]) -> Seccomp {
        Seccomp {
            default_action: Action::Errno,
            default_errno_ret: None,
            architectures: vec!["SCMP_ARCH_X86_64".into()],
            flags: Vec::new(),
            listener_path: None,
            listener_metadata: None,
            syscalls: vec![SyscallRule {
                names: names.iter().map(|n| (*n).to_owned()).collect(),
                action: Action::Allow,
                errno_ret: None,
                args: Vec::new(),
            }],
            syscribe: None,
        }
    }

    #[test]
    fn union_with_coverage() {
        let (merged, coverage) = merge_partials(&[
            recorded(&["read", "write", "futex"]),
            recorded(&["read", "openat"]),
            recorded(&["read"]),
        ])
        .unwrap();
        assert_eq!(
            merged.syscalls[0].names,
            ["futex", "openat", "read", "write"]
        );
        assert_eq!(merged.default_action, Action::Errno);
        assert_eq!(coverage.total, 3);
        assert_eq!(coverage.syscalls["read"], 3);
        assert_eq!(coverage.syscalls["write"], 1);
        assert_eq!(
            serde_json::to_string(&coverage).unwrap(),
            r#"{"version":"v1","total":3,"syscalls":{"futex":1,"openat":1,"read":3,"write":1}}"#
        );
        assert!(merge_partials(&[]).is_none());
    }
}
