//! Merging the partial profiles of a workload's replicas (`mergeStrategy: Containers`): the
//! union of what every replica was allowed, and the coverage — in how many of the replicas
//! each syscall was seen — as upstream's `spo.x-k8s.io/syscall-coverage` annotation
//! (`{"version":"v1","total":N,"syscalls":{name:count}}`). And joining a profile with the chain
//! of its base profiles (`baseProfileName`), for the node installer and `syscribe pull` alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use thiserror::Error;

use super::{
    conflict::{Conflict, resolve_labelled},
    seccomp::{Action, Seccomp, SyscallRule},
};

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

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BaseError {
    #[error("no SeccompProfile named {name} in {from}")]
    NotFound { name: String, from: String },
    #[error("base profiles of {name} form a cycle through {base}")]
    Cycle { name: String, base: String },
}

/// The profile as OCI JSON with its base profiles' rules first (upstream's union); rules with
/// the same verdict (action, errno, arguments) are joined, so a syscall allowed by both is
/// listed once. Where a profile and a base give one syscall different verdicts, the more
/// restrictive applies ([`crate::profile::conflict`]) and the conflict is returned, naming both.
/// Linear in the names of the whole chain, however deep.
/// `profiles` maps each name to its profile: where they come from (a YAML file, the cluster) is
/// the caller's business, and `from` names it in errors.
pub fn resolve_bases<P: WithBase>(
    name: &str,
    profiles: &BTreeMap<String, P>,
    from: &str,
) -> Result<(Seccomp, Vec<Conflict>), BaseError> {
    let get = |n: &str| {
        profiles
            .get_key_value(n)
            .ok_or_else(|| BaseError::NotFound {
                name: n.to_owned(),
                from: from.to_owned(),
            })
    };
    // The chain, the profile first: (name, profile).
    let mut chain = vec![get(name)?];
    let mut seen = HashSet::from([name.to_owned()]);
    while let Some(base) = chain.last().and_then(|(_, p)| p.base_profile_name()) {
        if !seen.insert(base.to_owned()) {
            return Err(BaseError::Cycle {
                name: name.to_owned(),
                base: base.to_owned(),
            });
        }
        chain.push(get(base)?);
    }
    let mut seccomp = chain[0].1.seccomp();
    let mut rules: Vec<SyscallRule> = Vec::new();
    // Where each joined rule came from: (profile, its index there).
    let mut origins: Vec<(String, usize)> = Vec::new();
    let mut names_of: Vec<HashSet<String>> = Vec::new();
    let mut by_verdict: HashMap<String, usize> = Default::default();
    // The deepest base first: its rules come first.
    for (profile_name, profile) in chain.iter().rev() {
        for (k, rule) in profile.seccomp().syscalls.into_iter().enumerate() {
            let key = serde_json::to_string(&(rule.action, rule.errno_ret, &rule.args))
                .expect("rules serialize");
            match by_verdict.get(&key) {
                Some(&i) => {
                    for n in rule.names {
                        if names_of[i].insert(n.clone()) {
                            rules[i].names.push(n);
                        }
                    }
                }
                None => {
                    by_verdict.insert(key, rules.len());
                    names_of.push(rule.names.iter().cloned().collect());
                    origins.push(((*profile_name).clone(), k));
                    rules.push(rule);
                }
            }
        }
    }
    seccomp.syscalls = rules;
    let conflicts = resolve_labelled(&mut seccomp, &|i| {
        let (profile, k) = &origins[i];
        format!("{profile}'s syscalls[{k}]")
    });
    Ok((seccomp, conflicts))
}

/// A profile that may name a base profile (upstream's `baseProfileName`): what
/// [`resolve_bases`] joins. The cluster's SeccompProfile is one (`crate::k8s::crd`).
pub trait WithBase {
    /// The profile's own rules as an OCI document, without its base profiles'.
    fn seccomp(&self) -> Seccomp;
    /// The profile whose rules are added to this one's, by name.
    fn base_profile_name(&self) -> Option<&str>;
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
