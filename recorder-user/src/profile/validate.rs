//! Validating seccomp profiles — OCI seccomp JSON or a SeccompProfile's spec — beyond a schema:
//! every problem, each with the JSON path of its field and a reason a person understands.
//! Syscall names are checked with libseccomp for every listed architecture, with a "did you
//! mean". Works on the parsed document tree, so unknown fields and wrong types are reported
//! together with everything else, not one at a time.

use std::collections::{BTreeMap, HashMap};

use libseccomp::{ScmpArch, ScmpSyscall};
use serde_yaml::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// `spec.syscalls[2].names[4]`, or `` for the document itself.
    pub path: String,
    pub message: String,
}

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
const FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];
const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// SCMP_ARCH_* names libseccomp knows, with its architecture.
const ARCHES: [(&str, ScmpArch); 20] = [
    ("SCMP_ARCH_NATIVE", ScmpArch::Native),
    ("SCMP_ARCH_X86", ScmpArch::X86),
    ("SCMP_ARCH_X86_64", ScmpArch::X8664),
    ("SCMP_ARCH_X32", ScmpArch::X32),
    ("SCMP_ARCH_ARM", ScmpArch::Arm),
    ("SCMP_ARCH_AARCH64", ScmpArch::Aarch64),
    ("SCMP_ARCH_MIPS", ScmpArch::Mips),
    ("SCMP_ARCH_MIPS64", ScmpArch::Mips64),
    ("SCMP_ARCH_MIPS64N32", ScmpArch::Mips64N32),
    ("SCMP_ARCH_MIPSEL", ScmpArch::Mipsel),
    ("SCMP_ARCH_MIPSEL64", ScmpArch::Mipsel64),
    ("SCMP_ARCH_MIPSEL64N32", ScmpArch::Mipsel64N32),
    ("SCMP_ARCH_PPC", ScmpArch::Ppc),
    ("SCMP_ARCH_PPC64", ScmpArch::Ppc64),
    ("SCMP_ARCH_PPC64LE", ScmpArch::Ppc64Le),
    ("SCMP_ARCH_S390", ScmpArch::S390),
    ("SCMP_ARCH_S390X", ScmpArch::S390X),
    ("SCMP_ARCH_PARISC", ScmpArch::Parisc),
    ("SCMP_ARCH_PARISC64", ScmpArch::Parisc64),
    ("SCMP_ARCH_RISCV64", ScmpArch::Riscv64),
];

/// Top-level fields of an OCI seccomp document / a SeccompProfile spec.
const OCI_FIELDS: [&str; 7] = [
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
    "syscalls",
];
const SPEC_ONLY_FIELDS: [&str; 2] = ["baseProfileName", "state"];
/// syscribe's recording metadata in OCI documents it wrote (runtimes ignore it).
const OCI_ONLY_FIELDS: [&str; 1] = ["syscribe"];
const RULE_FIELDS: [&str; 6] = ["names", "action", "errnoRet", "args", "comment", "includes"];
const ARG_FIELDS: [&str; 4] = ["index", "value", "valueTwo", "op"];

/// Syscall names per architecture, from libseccomp (built once per validator).
#[derive(Default)]
pub struct Validator {
    names: HashMap<String, Vec<String>>,
}

struct Report<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Report<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }
    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }
    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
        });
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (row[j] + 1)
                .min(current + 1)
                .min(previous + usize::from(ca != *cb));
            previous = current;
        }
    }
    row[b.len()]
}

/// ` (did you mean "x"?)` for the closest candidate within a third of the word's length
/// (at least 2 edits: a swapped pair of letters is two).
fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (word.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| {
            (
                distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Validator {
    fn names_of(&mut self, arch: ScmpArch, label: &str) -> &[String] {
        self.names.entry(label.to_owned()).or_insert_with(|| {
            (0..2048)
                .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(arch).ok())
                .collect()
        })
    }

    /// Every problem of one document: an OCI seccomp document, or a SeccompProfile.
    pub fn validate(&mut self, doc: &Value) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut report = Report {
            problems: &mut problems,
        };
        match doc.get("kind") {
            None => self.seccomp(doc, "", false, &mut report),
            Some(kind) if kind.as_str() == Some("SeccompProfile") => {
                match doc.get("apiVersion").and_then(Value::as_str) {
                    Some(v) if v.starts_with("security-profiles-operator.x-k8s.io/") => {}
                    other => report.error(
                        "apiVersion",
                        format!(
                            "expected security-profiles-operator.x-k8s.io/v1, found {}",
                            other.map_or("nothing".to_owned(), |v| format!("{v:?}"))
                        ),
                    ),
                }
                match doc.get("spec") {
                    Some(spec) => self.seccomp(spec, "spec", true, &mut report),
                    None => report.error("spec", "missing: a SeccompProfile needs a spec"),
                }
            }
            Some(kind) => report.error(
                "kind",
                format!("{kind:?} is not a seccomp profile (expected SeccompProfile, or an OCI seccomp document without kind)"),
            ),
        }
        problems.sort_by_key(|p| p.severity);
        problems
    }

    fn seccomp(&mut self, doc: &Value, prefix: &str, is_spec: bool, report: &mut Report<'_>) {
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
        for key in map.keys() {
            let key = key.as_str().unwrap_or("?");
            if !allowed.contains(&key) {
                report.error(
                    join(prefix, key),
                    format!("unknown field{}", suggestion(key, allowed.iter().copied())),
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
            for (i, (name, _)) in list.iter().enumerate() {
                match ARCHES.iter().find(|(n, _)| n == name) {
                    Some((n, arch)) => arches.push(((*n).to_owned(), *arch)),
                    None => report.error(
                        format!("{}[{i}]", join(prefix, "architectures")),
                        format!(
                            "unknown architecture {name:?}{}",
                            suggestion(name, ARCHES.iter().map(|(n, _)| *n))
                        ),
                    ),
                }
            }
        }
        if arches.is_empty() {
            arches.push(("the native architecture".to_owned(), ScmpArch::Native));
        }
        if let Some(list) = self.string_list(doc.get("flags"), &join(prefix, "flags"), report) {
            for (i, (name, _)) in list.iter().enumerate() {
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
            for key in rule_map.keys() {
                let key = key.as_str().unwrap_or("?");
                if !RULE_FIELDS.contains(&key) {
                    report.error(
                        format!("{path}.{key}"),
                        format!("unknown field{}", suggestion(key, RULE_FIELDS)),
                    );
                }
            }
            let action = match rule.get("action") {
                None => {
                    report.error(format!("{path}.action"), "missing: a rule needs an action");
                    None
                }
                Some(v) => self.action(v, &format!("{path}.action"), report),
            };
            allow_rules |= action == Some("SCMP_ACT_ALLOW");
            if let (Some(action), Some(default)) = (action, default_action)
                && action == default
                && rule.get("args").is_none()
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
            if let Some(v) = rule.get("errnoRet")
                && v.as_u64().is_none()
            {
                report.error(
                    format!("{path}.errnoRet"),
                    format!("must be a number ≥ 0, not {}", type_name(v)),
                );
            }
            match self.string_list(rule.get("names"), &format!("{path}.names"), report) {
                None => report.error(
                    format!("{path}.names"),
                    "missing: a rule needs the syscalls it is about",
                ),
                Some(names) if names.is_empty() => report.error(
                    format!("{path}.names"),
                    "empty: a rule needs at least one syscall",
                ),
                Some(names) => {
                    for (n, (name, _)) in names.iter().enumerate() {
                        let name_path = format!("{path}.names[{n}]");
                        // Like libseccomp: a name only needs to exist on one of the listed
                        // architectures (x86_64 profiles list i386 and x32 too, whose tables
                        // differ); one that exists on none of them is a mistake.
                        let known_somewhere = arches.iter().any(|(label, arch)| {
                            self.names_of(*arch, label).iter().any(|k| k == name)
                        });
                        if !known_somewhere {
                            let (label, arch) = &arches[0];
                            let listed: Vec<&str> =
                                arches.iter().map(|(l, _)| l.as_str()).collect();
                            let known = self.names_of(*arch, label);
                            let hint = suggestion(name, known.iter().map(String::as_str));
                            report.error(
                                &name_path,
                                format!("unknown syscall {name:?} on {}{hint}", listed.join(", ")),
                            );
                        }
                        if let Some(first) = first_seen.get(name) {
                            report.error(
                                &name_path,
                                format!("{name:?} is already in {first}: one syscall, one rule"),
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
            for key in map.keys() {
                let key = key.as_str().unwrap_or("?");
                if !ARG_FIELDS.contains(&key) {
                    report.error(
                        format!("{arg_path}.{key}"),
                        format!("unknown field{}", suggestion(key, ARG_FIELDS)),
                    );
                }
            }
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

    /// A list of strings (each with its value); `None` when absent. Non-strings are reported.
    fn string_list(
        &self,
        value: Option<&Value>,
        path: &str,
        report: &mut Report<'_>,
    ) -> Option<Vec<(String, Value)>> {
        let value = value?;
        let Some(items) = value.as_sequence() else {
            report.error(path, format!("must be a list, not {}", type_name(value)));
            return Some(Vec::new());
        };
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(s) => Some((s.to_owned(), item.clone())),
                    None => {
                        report.error(
                            format!("{path}[{i}]"),
                            format!("must be a string, not {}", type_name(item)),
                        );
                        None
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<(Severity, String, String)> {
        let doc: Value = serde_yaml::from_str(yaml).unwrap();
        Validator::default()
            .validate(&doc)
            .into_iter()
            .map(|p| (p.severity, p.path, p.message))
            .collect()
    }

    #[test]
    fn a_recorded_profile_is_valid() {
        assert_eq!(
            problems(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["read", "write", "futex"], "action": "SCMP_ACT_ALLOW"}]}"#
            ),
            []
        );
    }

    #[test]
    fn every_problem_with_its_path_and_a_suggestion() {
        let found = problems(
            r#"
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: p}
spec:
  defaultAction: SCMP_ACT_ERRNO
  architectures: [SCMP_ARCH_X86_64, SCMP_ARCH_X86_46]
  flags: [SECCOMP_FILTER_FLAG_TSYNK]
  syscals: []
  syscalls:
  - names: [read, raed, open]
    action: SCMP_ACT_ALLOW
  - names: [read]
    action: SCMP_ACT_ALOW
  - names: []
    action: SCMP_ACT_ERRNO
    errnoRet: 1
  - names: [mount]
    action: SCMP_ACT_LOG
    errnoRet: 1
    args: [{index: 6, value: 1, op: SCMP_CMP_EQQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}, {index: 0, op: SCMP_CMP_EQ}]
"#,
        );
        let expect = |path: &str, needle: &str| {
            assert!(
                found
                    .iter()
                    .any(|(_, p, m)| p == path && m.contains(needle)),
                "no {path}: {needle} in {found:#?}"
            );
        };
        expect(
            "spec.architectures[1]",
            "unknown architecture \"SCMP_ARCH_X86_46\" (did you mean \"SCMP_ARCH_X86_64\"?)",
        );
        expect(
            "spec.flags[0]",
            "did you mean \"SECCOMP_FILTER_FLAG_TSYNC\"",
        );
        expect("spec.syscals", "unknown field (did you mean \"syscalls\"?)");
        expect(
            "spec.syscalls[0].names[1]",
            "unknown syscall \"raed\" on SCMP_ARCH_X86_64 (did you mean \"read\"?)",
        );
        assert!(
            !found
                .iter()
                .any(|(_, p, _)| p == "spec.syscalls[0].names[2]"),
            "open exists"
        );
        expect(
            "spec.syscalls[1].names[0]",
            "already in spec.syscalls[0].names[0]",
        );
        expect("spec.syscalls[1].action", "did you mean \"SCMP_ACT_ALLOW\"");
        expect("spec.syscalls[2].names", "empty");
        expect("spec.syscalls[2].action", "changes nothing");
        expect("spec.syscalls[3].errnoRet", "only SCMP_ACT_ERRNO");
        expect("spec.syscalls[3].args", "7 arguments");
        expect("spec.syscalls[3].args[0].index", "0 to 5");
        expect(
            "spec.syscalls[3].args[0].op",
            "did you mean \"SCMP_CMP_EQ\"",
        );
        let warnings = found
            .iter()
            .filter(|(s, _, _)| *s == Severity::Warning)
            .count();
        assert_eq!(warnings, 1, "{found:#?}");
    }

    #[test]
    fn names_need_to_exist_on_one_listed_architecture() {
        // open: x86_64 yes, aarch64 no — fine for a two-architecture profile, not for aarch64 alone.
        let both = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["open"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert_eq!(both, []);
        let arm = problems(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_AARCH64"], "syscalls": [{"names": ["open"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(
            arm[0]
                .2
                .contains("unknown syscall \"open\" on SCMP_ARCH_AARCH64"),
            "{arm:?}"
        );
    }

    #[test]
    fn wrong_types_and_allow_everything() {
        let found = problems(r#"{"defaultAction": 1, "syscalls": {"names": "read"}}"#);
        assert!(
            found
                .iter()
                .any(|(_, p, m)| p == "defaultAction" && m.contains("not a number")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(_, p, m)| p == "syscalls" && m.contains("not a mapping")),
            "{found:?}"
        );
        let found = problems(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(
            found
                .iter()
                .any(|(s, _, m)| *s == Severity::Warning && m.contains("confines nothing")),
            "{found:?}"
        );
        let found = problems("{kind: ConfigMap}");
        assert!(found[0].2.contains("not a seccomp profile"), "{found:?}");
    }
}
