//! One syscall, two verdicts: rules without arguments that name the same syscall with
//! different actions (or errnos). A filter can apply only one; which one must never depend on
//! the order rules happened to be joined in.
//!
//! Syscribe's precedence is the kernel's own when several seccomp filters answer one syscall
//! (seccomp(2), "the return value with the highest precedence"): KILL_PROCESS, KILL_THREAD
//! (KILL), TRAP, ERRNO, USER_NOTIF, TRACE, LOG, ALLOW. The most restrictive action wins; between
//! two ERRNO or TRACE rules with different numbers, the first rule wins. Every conflict is
//! said, naming both rules — a KILL written by a user never silently becomes a LOG.

use std::collections::HashMap;

use super::seccomp::{Action, Seccomp};

/// Lower is more restrictive (the kernel's order of precedence).
pub fn precedence(action: Action) -> u8 {
    match action {
        Action::KillProcess => 0,
        Action::Kill | Action::KillThread => 1,
        Action::Trap => 2,
        Action::Errno => 3,
        Action::Notify => 4,
        Action::Trace => 5,
        Action::Log => 6,
        Action::Allow => 7,
    }
}

/// The verdict of a rule as written: action and the number it returns.
fn verdict(action: Action, errno_ret: Option<u32>) -> String {
    let name = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    match errno_ret {
        Some(n) => format!("{name} ({n})"),
        None => name,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    /// Where the rule that applies is (`syscalls[0]`, or a profile's rule), and its verdict.
    pub kept: (String, String),
    /// The same for the rule whose listing of `name` was removed.
    pub dropped: (String, String),
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "syscall {:?} is in {} ({}) and in {} ({}); {} applies (the more restrictive, or the first of two equals)",
            self.name, self.kept.0, self.kept.1, self.dropped.0, self.dropped.1, self.kept.1
        )
    }
}

/// Finds the conflicts between unconditional rules, in rule order, without changing anything.
pub fn find(seccomp: &Seccomp) -> Vec<Conflict> {
    resolve_inner(seccomp, &|i| format!("syscalls[{i}]"), |_, _| {})
}

/// Applies the precedence: each syscall stays only in the rule that wins; rules left with no
/// names go. Returns what was decided (indices are those before the change).
pub fn resolve(seccomp: &mut Seccomp) -> Vec<Conflict> {
    resolve_labelled(seccomp, &|i| format!("syscalls[{i}]"))
}

/// [`resolve`], naming rule `i` as `label(i)` (which profile of a join it came from).
pub fn resolve_labelled(seccomp: &mut Seccomp, label: &dyn Fn(usize) -> String) -> Vec<Conflict> {
    let mut drop: Vec<(usize, String)> = Vec::new();
    let conflicts = resolve_inner(seccomp, label, |rule, name| {
        drop.push((rule, name.to_owned()))
    });
    if drop.is_empty() {
        return conflicts;
    }
    let mut by_rule: HashMap<usize, Vec<String>> = HashMap::new();
    for (rule, name) in drop {
        by_rule.entry(rule).or_default().push(name);
    }
    let mut index = 0;
    seccomp.syscalls.retain_mut(|rule| {
        if let Some(names) = by_rule.get(&index) {
            rule.names.retain(|n| !names.contains(n));
        }
        index += 1;
        !rule.names.is_empty()
    });
    conflicts
}

fn resolve_inner(
    seccomp: &Seccomp,
    label: &dyn Fn(usize) -> String,
    mut drop: impl FnMut(usize, &str),
) -> Vec<Conflict> {
    // Syscall name → the rule that applies to it so far.
    let mut winner: HashMap<&str, usize> = HashMap::new();
    let mut conflicts = Vec::new();
    for (i, rule) in seccomp.syscalls.iter().enumerate() {
        if !rule.args.is_empty() {
            continue;
        }
        for name in &rule.names {
            let Some(&w) = winner.get(name.as_str()) else {
                winner.insert(name, i);
                continue;
            };
            if w == i {
                continue;
            }
            let old = &seccomp.syscalls[w];
            if old.action == rule.action && old.errno_ret == rule.errno_ret {
                continue;
            }
            let (kept, dropped) = if precedence(rule.action) < precedence(old.action) {
                winner.insert(name, i);
                (i, w)
            } else {
                (w, i)
            };
            let describe = |r: usize| {
                let rule = &seccomp.syscalls[r];
                (label(r), verdict(rule.action, rule.errno_ret))
            };
            drop(dropped, name);
            conflicts.push(Conflict {
                name: name.clone(),
                kept: describe(kept),
                dropped: describe(dropped),
            });
        }
    }
    conflicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(rules: serde_json::Value) -> Seccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": rules,
        }))
        .unwrap()
    }

    #[test]
    fn the_most_restrictive_action_wins_whatever_the_order() {
        for rules in [
            serde_json::json!([
                {"names": ["read", "mkdir"], "action": "SCMP_ACT_LOG"},
                {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
            ]),
            serde_json::json!([
                {"names": ["mkdir"], "action": "SCMP_ACT_KILL"},
                {"names": ["read", "mkdir"], "action": "SCMP_ACT_LOG"},
            ]),
        ] {
            let mut seccomp = profile(rules);
            let conflicts = resolve(&mut seccomp);
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            let said = conflicts[0].to_string();
            assert!(said.contains("\"mkdir\""), "{said}");
            assert!(
                said.contains("SCMP_ACT_KILL") && said.contains("SCMP_ACT_LOG"),
                "{said}"
            );
            assert!(said.ends_with(
                "SCMP_ACT_KILL applies (the more restrictive, or the first of two equals)"
            ));
            for rule in &seccomp.syscalls {
                let has = rule.names.iter().any(|n| n == "mkdir");
                assert_eq!(has, rule.action == Action::Kill, "{:?}", seccomp.syscalls);
            }
            assert!(find(&seccomp).is_empty());
        }
    }

    #[test]
    fn equal_actions_with_different_numbers_keep_the_first_and_say_so() {
        let mut seccomp = profile(serde_json::json!([
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["open", "close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]));
        let conflicts = resolve(&mut seccomp);
        assert_eq!(conflicts.len(), 1);
        let rule = |i: usize, v: &str| (format!("syscalls[{i}]"), v.to_owned());
        assert_eq!(conflicts[0].kept, rule(0, "SCMP_ACT_ERRNO (38)"));
        assert_eq!(conflicts[0].dropped, rule(1, "SCMP_ACT_ERRNO (1)"));
        assert_eq!(seccomp.syscalls[1].names, ["close"]);
    }

    #[test]
    fn rules_with_arguments_are_not_conflicts() {
        let seccomp = profile(serde_json::json!([
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ]));
        assert!(find(&seccomp).is_empty());
    }

    #[test]
    fn a_rule_left_empty_goes() {
        let mut seccomp = profile(serde_json::json!([
            {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
        ]));
        resolve(&mut seccomp);
        assert_eq!(seccomp.syscalls.len(), 1);
        assert_eq!(seccomp.syscalls[0].action, Action::KillProcess);
    }
}
