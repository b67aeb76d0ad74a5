//! Seccomp documents: an OCI seccomp document or a SeccompProfile's spec — actions,
//! architectures, flags, and each rule's syscall names (checked with libseccomp on every
//! listed architecture) and arguments.

use std::collections::{BTreeMap, HashMap};

use libseccomp::{ScmpArch, ScmpSyscall};
use serde_yaml::Value;

use super::{
    Report, Validator,
    fields::{
        ACTIONS, ARCHES, ARG_FIELDS, FLAGS, OCI_FIELDS, OCI_ONLY_FIELDS, OPS, RULE_FIELDS,
        SPEC_ONLY_FIELDS,
    },
    join, state,
    suggest::arch_suggestion,
    suggestion, type_name, unknown_fields,
};

/// An errno a filter returns: a number libseccomp takes (see `enforce::MAX_ERRNO`).
fn errno_ret(v: &Value, path: &str, report: &mut Report<'_>) {
    match v.as_u64() {
        None => report.error(path, format!("must be a number ≥ 0, not {}", type_name(v))),
        Some(n) if n > u64::from(crate::profile::enforce::MAX_ERRNO) => report.error(
            path,
            format!(
                "{n} is more than {}, the largest errno libseccomp (runc, crun) accepts",
                crate::profile::enforce::MAX_ERRNO
            ),
        ),
        Some(_) => {}
    }
}

impl Validator {
    /// Whether `name` is a syscall of `arch`.
    fn knows(&mut self, arch: ScmpArch, label: &str, name: &str) -> bool {
        if !self.name_sets.contains_key(label) {
            let set = self.names_of(arch, label).iter().cloned().collect();
            self.name_sets.insert(label.to_owned(), set);
        }
        self.name_sets[label].contains(name)
    }

    /// The first architecture libseccomp knows `name` on, if any.
    fn arch_of(&mut self, name: &str) -> Option<&'static str> {
        if self.anywhere.is_none() {
            let mut anywhere = HashMap::new();
            for (label, arch) in &ARCHES[1..] {
                for known in self.names_of(*arch, label).to_vec() {
                    anywhere.entry(known).or_insert(*label);
                }
            }
            self.anywhere = Some(anywhere);
        }
        self.anywhere.as_ref().and_then(|a| a.get(name).copied())
    }

    fn names_of(&mut self, arch: ScmpArch, label: &str) -> &[String] {
        self.names.entry(label.to_owned()).or_insert_with(|| {
            (0..2048)
                .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(arch).ok())
                .collect()
        })
    }

    pub(super) fn seccomp(
        &mut self,
        doc: &Value,
        prefix: &str,
        is_spec: bool,
        report: &mut Report<'_>,
    ) {
        let Some(map) = doc.as_mapping() else {
            report.error(prefix, format!("must be a mapping, not {}", type_name(doc)));
            return;
        };
        let allowed: Vec<&str> = OCI_FIELDS
            .iter()
            .chain(if is_spec {
                &SPEC_ONLY_FIELDS[..]
            } else {
                &OCI_ONLY_FIELDS[..]
            })
            .copied()
            .collect();
        unknown_fields(map, prefix, &allowed, report);
        if let Some(v) = doc.get("defaultErrnoRet") {
            errno_ret(v, &join(prefix, "defaultErrnoRet"), report);
        }
        for field in ["listenerPath", "listenerMetadata"] {
            if let Some(v) = doc.get(field)
                && !v.is_string()
            {
                report.error(
                    join(prefix, field),
                    format!("must be a string, not {}", type_name(v)),
                );
            }
        }
        if is_spec {
            state(doc, report);
            if let Some(base) = doc.get("baseProfileName")
                && !base.is_string()
            {
                report.error(
                    "spec.baseProfileName",
                    format!("must be a string, not {}", type_name(base)),
                );
            }
        }
        let default_action = match doc.get("defaultAction") {
            None => {
                report.error(
                    join(prefix, "defaultAction"),
                    "missing: every profile needs a default action",
                );
                None
            }
            Some(v) => self.action(v, &join(prefix, "defaultAction"), report),
        };
        // Architectures: their syscall tables are what names are checked against.
        let mut arches: Vec<(String, ScmpArch)> = Vec::new();
        if let Some(list) = self.string_list(
            doc.get("architectures"),
            &join(prefix, "architectures"),
            report,
        ) {
            for (i, name) in &list {
                match ARCHES.iter().find(|(n, _)| n == name) {
                    Some((n, arch)) => arches.push(((*n).to_owned(), *arch)),
                    None => report.error(
                        format!("{}[{i}]", join(prefix, "architectures")),
                        format!("unknown architecture {name:?}{}", arch_suggestion(name)),
                    ),
                }
            }
        }
        if arches.is_empty() {
            arches.push(("the native architecture".to_owned(), ScmpArch::Native));
        }
        if let Some(list) = self.string_list(doc.get("flags"), &join(prefix, "flags"), report) {
            for (i, name) in &list {
                if !FLAGS.contains(&name.as_str()) {
                    report.error(
                        format!("{}[{i}]", join(prefix, "flags")),
                        format!("unknown flag {name:?}{}", suggestion(name, FLAGS)),
                    );
                }
            }
        }
        let Some(rules) = doc.get("syscalls") else {
            return;
        };
        let rules_path = join(prefix, "syscalls");
        let Some(rules) = rules.as_sequence() else {
            report.error(
                &rules_path,
                format!("must be a list of rules, not {}", type_name(rules)),
            );
            return;
        };
        let mut first_seen: BTreeMap<String, String> = BTreeMap::new();
        let mut allow_rules = false;
        for (r, rule) in rules.iter().enumerate() {
            let path = format!("{rules_path}[{r}]");
            let Some(rule_map) = rule.as_mapping() else {
                report.error(&path, format!("must be a mapping, not {}", type_name(rule)));
                continue;
            };
            unknown_fields(rule_map, &path, &RULE_FIELDS, report);
            let action = match rule.get("action") {
                None => {
                    report.error(format!("{path}.action"), "missing: a rule needs an action");
                    None
                }
                Some(v) => self.action(v, &format!("{path}.action"), report),
            };
            allow_rules |= action == Some("SCMP_ACT_ALLOW");
            let conditional = rule
                .get("args")
                .and_then(Value::as_sequence)
                .is_some_and(|a| !a.is_empty());
            // Same action and same errno as the default: the rule changes nothing.
            // Without a number, SCMP_ACT_ERRNO returns EPERM (runc, crun).
            const EPERM: u64 = 1;
            let default_errno = doc
                .get("defaultErrnoRet")
                .and_then(Value::as_u64)
                .unwrap_or(EPERM);
            let same_errno = action != Some("SCMP_ACT_ERRNO")
                || rule
                    .get("errnoRet")
                    .and_then(Value::as_u64)
                    .unwrap_or(EPERM)
                    == default_errno;
            if let (Some(action), Some(default)) = (action, default_action)
                && action == default
                && same_errno
                && !conditional
            {
                report.warning(
                    format!("{path}.action"),
                    format!("{action} is the default action too: this rule changes nothing"),
                );
            }
            if rule.get("errnoRet").is_some() && action.is_some_and(|a| a != "SCMP_ACT_ERRNO") {
                report.error(
                    format!("{path}.errnoRet"),
                    format!(
                        "only SCMP_ACT_ERRNO returns an errno, not {}",
                        action.unwrap_or_default()
                    ),
                );
            }
            if let Some(v) = rule.get("errnoRet") {
                errno_ret(v, &format!("{path}.errnoRet"), report);
            }
            let names_value = rule.get("names");
            match self.string_list(names_value, &format!("{path}.names"), report) {
                None if names_value.is_none() => report.error(
                    format!("{path}.names"),
                    "missing: a rule needs the syscalls it is about",
                ),
                None => {}
                Some(_)
                    if names_value
                        .and_then(Value::as_sequence)
                        .is_some_and(Vec::is_empty) =>
                {
                    report.error(
                        format!("{path}.names"),
                        "empty: a rule needs at least one syscall",
                    )
                }
                Some(names) => {
                    for (n, name) in &names {
                        let name_path = format!("{path}.names[{n}]");
                        // Like libseccomp: a name only needs to exist on one of the listed
                        // architectures (x86_64 profiles list i386 and x32 too, whose tables
                        // differ); one that exists on none of them is a mistake.
                        let known_somewhere = arches
                            .iter()
                            .any(|(label, arch)| self.knows(*arch, label, name));
                        let elsewhere = if known_somewhere {
                            None
                        } else {
                            self.arch_of(name)
                        };
                        if let Some(other) = elsewhere {
                            // runc and crun skip a name the filter's architectures lack
                            // (upstream's own examples list umount, stime, vm86 for x86_64).
                            let listed: Vec<&str> =
                                arches.iter().map(|(l, _)| l.as_str()).collect();
                            let hint = if self.suggestions_left > 0 {
                                self.suggestions_left -= 1;
                                let (label, arch) = &arches[0];
                                let known = self.names_of(*arch, label);
                                suggestion(name, known.iter().map(String::as_str))
                            } else {
                                String::new()
                            };
                            report.warning(
                                &name_path,
                                format!(
                                    "{name:?} is no syscall on {} (it is one on {other}): runc and crun skip it{hint}",
                                    listed.join(", ")
                                ),
                            );
                        } else if !known_somewhere {
                            let (label, arch) = &arches[0];
                            let listed: Vec<&str> =
                                arches.iter().map(|(l, _)| l.as_str()).collect();
                            let hint = if self.suggestions_left > 0 {
                                self.suggestions_left -= 1;
                                let known = self.names_of(*arch, label);
                                suggestion(name, known.iter().map(String::as_str))
                            } else {
                                String::new()
                            };
                            report.error(
                                &name_path,
                                format!("unknown syscall {name:?} on {}{hint}", listed.join(", ")),
                            );
                        }
                        // Several rules for one syscall are fine when they compare
                        // arguments (Docker's default profile does this); two
                        // unconditional ones are a mistake (libseccomp refuses different
                        // actions, and the same one twice is noise).
                        if conditional {
                            continue;
                        }
                        if let Some(first) = first_seen.get(name) {
                            report.error(
                                &name_path,
                                format!("{name:?} is already in {first}: one syscall, one unconditional rule"),
                            );
                        } else {
                            first_seen.insert(name.clone(), name_path);
                        }
                    }
                }
            }
            if let Some(args) = rule.get("args") {
                self.args(args, &format!("{path}.args"), report);
            }
        }
        if default_action == Some("SCMP_ACT_ALLOW") && allow_rules {
            report.warning(
                join(prefix, "defaultAction"),
                "SCMP_ACT_ALLOW with ALLOW rules: this profile confines nothing",
            );
        }
    }

    fn args(&mut self, args: &Value, path: &str, report: &mut Report<'_>) {
        let Some(args) = args.as_sequence() else {
            report.error(path, format!("must be a list, not {}", type_name(args)));
            return;
        };
        if args.len() > 6 {
            report.error(
                path,
                format!("{} arguments: a syscall has at most 6", args.len()),
            );
        }
        for (a, arg) in args.iter().enumerate() {
            let arg_path = format!("{path}[{a}]");
            let Some(map) = arg.as_mapping() else {
                report.error(
                    &arg_path,
                    format!("must be a mapping, not {}", type_name(arg)),
                );
                continue;
            };
            unknown_fields(map, &arg_path, &ARG_FIELDS, report);
            match arg.get("index").map(|v| v.as_u64()) {
                None => report.error(
                    format!("{arg_path}.index"),
                    "missing: which argument (0 to 5)",
                ),
                Some(Some(i)) if i <= 5 => {}
                Some(_) => report.error(
                    format!("{arg_path}.index"),
                    "must be an argument index from 0 to 5",
                ),
            }
            for field in ["value", "valueTwo"] {
                if let Some(v) = arg.get(field)
                    && v.as_u64().is_none()
                {
                    report.error(
                        format!("{arg_path}.{field}"),
                        format!("must be a number ≥ 0, not {}", type_name(v)),
                    );
                }
            }
            match arg.get("op").map(|v| v.as_str()) {
                None => report.error(
                    format!("{arg_path}.op"),
                    "missing: a comparison (SCMP_CMP_EQ…)",
                ),
                Some(Some(op)) if OPS.contains(&op) => {}
                Some(Some(op)) => report.error(
                    format!("{arg_path}.op"),
                    format!("unknown comparison {op:?}{}", suggestion(op, OPS)),
                ),
                Some(None) => {
                    report.error(format!("{arg_path}.op"), "must be a string (SCMP_CMP_EQ…)")
                }
            }
        }
    }

    fn action<'v>(&self, value: &'v Value, path: &str, report: &mut Report<'_>) -> Option<&'v str> {
        match value.as_str() {
            Some(action) if ACTIONS.contains(&action) => Some(action),
            Some(action) => {
                report.error(
                    path,
                    format!("unknown action {action:?}{}", suggestion(action, ACTIONS)),
                );
                None
            }
            None => {
                report.error(
                    path,
                    format!("must be a string (SCMP_ACT_…), not {}", type_name(value)),
                );
                None
            }
        }
    }
}
