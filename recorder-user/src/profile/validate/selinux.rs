//! SELinux profiles: a SelinuxProfile's inherit and allow rules (classes and permissions
//! against the loaded policy, else their syntax), a RawSelinuxProfile's CIL policy, and the
//! semantic check — the module compiled against a real policy.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use serde_yaml::Value;

use super::{
    Report, Severity, Validator,
    fields::{INHERIT_FIELDS, INHERIT_KINDS, RAW_SELINUX_FIELDS, SELINUX_FIELDS, SELINUX_MODES},
    one_of, state, suggestion, type_name, unknown_fields,
};

/// The object classes of an SELinux policy with their permissions (common ones included), as
/// selinuxfs lists them: `<dir>/class/<class>/perms/<permission>`.
#[derive(Debug, Default, Clone)]
pub struct SelinuxPolicy {
    pub classes: BTreeMap<String, BTreeSet<String>>,
}

impl SelinuxPolicy {
    /// The kernel's loaded policy, when SELinux is on.
    pub const SELINUXFS: &str = "/sys/fs/selinux";

    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let mut classes = BTreeMap::new();
        for class in std::fs::read_dir(dir.join("class"))? {
            let class = class?;
            let mut perms = BTreeSet::new();
            for perm in std::fs::read_dir(class.path().join("perms"))? {
                perms.insert(perm?.file_name().to_string_lossy().into_owned());
            }
            classes.insert(class.file_name().to_string_lossy().into_owned(), perms);
        }
        Ok(Self { classes })
    }
}

/// The semantic check of an SELinux profile: its module compiled against a real policy by the
/// CIL compiler (see `crate::selinux::PolicyBase`).
pub trait ModuleCheck: Send + Sync {
    /// The compiler's complaints about `module` as (module line, message) — none when it
    /// compiled — or why it could not be compiled at all.
    fn check(&self, module: &str) -> Result<Vec<(Option<usize>, String)>, String>;
}

/// Compiler lines that only say that compiling stopped (the line before says why).
const COMPILER_TRAILERS: [&str; 5] = [
    "Failed to resolve AST",
    "Failed to build AST",
    "Failed to compile cildb",
    "Failed to copy block contents into blockinherit",
    "Bad block declaration",
];

/// The semantic check: the profile's module compiled against a real policy, each complaint
/// said at the field or policy line its module line comes from.
pub(super) fn compile(compiler: &dyn ModuleCheck, doc: &Value, report: &mut Report<'_>) {
    let Some(module) = crate::profile::cil::module_of(doc) else {
        return;
    };
    if let Some(other) = module.inherits_profiles.first() {
        report.warning(
            "spec.inherit",
            format!(
                "not compiled here: it inherits SelinuxProfile {other}, whose module is on the nodes (each node compiles this one when installing it)"
            ),
        );
        return;
    }
    let complaints = match compiler.check(&module.cil) {
        Ok(complaints) => complaints,
        Err(why) => {
            report.warning("", format!("not compiled against a policy: {why}"));
            return;
        }
    };
    let mut said = 0;
    // A line that names no place explains the next one that does ("Failed to resolve
    // permission reed", then "Failed to resolve allow statement at …:2").
    let mut pending: Vec<&str> = Vec::new();
    for (i, (line, message)) in complaints.iter().enumerate() {
        let trailer = |m: &str| COMPILER_TRAILERS.iter().any(|t| m.starts_with(t));
        let next_placed = complaints[i + 1..]
            .iter()
            .any(|(l, m)| l.is_some() && !trailer(m));
        if trailer(message) {
            continue;
        }
        if line.is_none() && next_placed {
            pending.push(message);
            continue;
        }
        let origin = line.and_then(|l| module.origin(l));
        let message = if !pending.is_empty() {
            let message = if message.starts_with("Previous declaration") {
                format!("{}: {message}", pending.join("; "))
            } else {
                format!("{message}: {}", pending.join("; "))
            };
            pending.clear();
            message
        } else if message.contains(": ") {
            message.clone() // the compiler's line, with what it could not resolve named
        } else {
            format!("{message}{}", hint(message))
        };
        let message = format!("the CIL compiler refused it: {message}");
        match origin {
            Some(origin) => {
                let message = match origin.within {
                    Some(at) => format!("policy line {at}: {message}"),
                    None => message,
                };
                report.push_at(Severity::Error, &origin.path, origin.within, message);
            }
            None => report.error("", message),
        }
        said += 1;
    }
    if said == 0 && !complaints.is_empty() {
        let all: Vec<&str> = complaints.iter().map(|(_, m)| m.as_str()).collect();
        report.error(
            "",
            format!("the CIL compiler refused it: {}", all.join("; ")),
        );
    }
}

/// What a compiler complaint usually means, for people who did not write the compiler.
fn hint(message: &str) -> &'static str {
    if message.starts_with("Failed to resolve allow") {
        " (a type, class or permission the policy does not have)"
    } else if message.starts_with("Failed to resolve blockinherit") {
        " (no template or profile of that name in the policy)"
    } else if message.starts_with("Failed to resolve") {
        " (a name the policy does not have)"
    } else if message.contains("Re-declaration") {
        " (the policy already declares that name)"
    } else {
        ""
    }
}

/// A RawSelinuxProfile's spec: its CIL policy read with a position for every problem.
pub(super) fn raw_selinux(spec: &Value, report: &mut Report<'_>) {
    let Some(map) = spec.as_mapping() else {
        report.error(
            "spec",
            format!("must be a mapping, not {}", type_name(spec)),
        );
        return;
    };
    unknown_fields(map, "spec", &RAW_SELINUX_FIELDS, report);
    state(spec, report);
    let policy = match spec.get("policy") {
        None => {
            report.error(
                "spec.policy",
                "missing: a RawSelinuxProfile needs its policy (CIL statements)",
            );
            return;
        }
        Some(Value::String(policy)) => policy,
        Some(other) => {
            report.error(
                "spec.policy",
                format!(
                    "must be a string of CIL statements, not {}",
                    type_name(other)
                ),
            );
            return;
        }
    };
    if policy.trim().is_empty() {
        report.error("spec.policy", "empty: no CIL statement in the policy");
        return;
    }
    let (statements, mut found) = crate::profile::cil::parse(policy);
    found.extend(crate::profile::cil::check_statements(
        &statements,
        crate::profile::cil::RESTRICTED,
    ));
    found.sort_by_key(|p| p.at);
    for problem in found {
        report.error_within("spec.policy", problem.at, &problem.message);
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, with a lowercase-only variant for classes and permissions.
fn identifier(word: &str, lowercase: bool) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| {
        c == '_' || c.is_ascii_alphabetic() && (!lowercase || c.is_ascii_lowercase())
    }) && chars.all(|c| {
        c == '_'
            || c.is_ascii_digit()
            || c.is_ascii_alphabetic() && (!lowercase || c.is_ascii_lowercase())
    })
}

impl Validator {
    pub(super) fn selinux(&mut self, spec: &Value, report: &mut Report<'_>) {
        let Some(map) = spec.as_mapping() else {
            report.error(
                "spec",
                format!("must be a mapping, not {}", type_name(spec)),
            );
            return;
        };
        unknown_fields(map, "spec", &SELINUX_FIELDS, report);
        state(spec, report);
        if let Some(inherit) = spec.get("inherit") {
            match inherit.as_sequence() {
                None => report.error(
                    "spec.inherit",
                    format!("must be a list, not {}", type_name(inherit)),
                ),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("spec.inherit[{i}]");
                        let Some(item_map) = item.as_mapping() else {
                            report.error(
                                &path,
                                format!("must be a mapping, not {}", type_name(item)),
                            );
                            continue;
                        };
                        unknown_fields(item_map, &path, &INHERIT_FIELDS, report);
                        if let Some(kind) = item.get("kind") {
                            one_of(
                                kind,
                                &format!("{path}.kind"),
                                "kind",
                                &INHERIT_KINDS,
                                report,
                            );
                        }
                        match item.get("name") {
                            None => report.error(
                                format!("{path}.name"),
                                "missing: the policy to inherit from",
                            ),
                            Some(Value::String(name)) if name.is_empty() => report
                                .error(format!("{path}.name"), "empty: the policy to inherit from"),
                            Some(Value::String(_)) => {}
                            Some(other) => report.error(
                                format!("{path}.name"),
                                format!("must be a string, not {}", type_name(other)),
                            ),
                        }
                    }
                }
            }
        }
        if let Some(mode) = spec.get("mode") {
            one_of(mode, "spec.mode", "mode", &SELINUX_MODES, report);
        }
        if let Some(permissive) = spec.get("permissive")
            && !permissive.is_bool()
        {
            report.error(
                "spec.permissive",
                format!("must be a boolean, not {}", type_name(permissive)),
            );
        }
        let Some(allow) = spec.get("allow") else {
            return;
        };
        let Some(allow) = allow.as_mapping() else {
            report.error(
                "spec.allow",
                format!(
                    "must be a mapping of type → class → permissions, not {}",
                    type_name(allow)
                ),
            );
            return;
        };
        for (label, classes) in allow {
            let label = label.as_str().unwrap_or("?");
            let path = format!("spec.allow.{label}");
            if label != "@self" && !identifier(label, false) {
                report.error(
                    &path,
                    format!("{label:?} is not a valid SELinux type (letters, digits and _, not starting with a digit; or @self)"),
                );
            }
            let Some(classes) = classes.as_mapping() else {
                report.error(
                    &path,
                    format!(
                        "must be a mapping of class → permissions, not {}",
                        type_name(classes)
                    ),
                );
                continue;
            };
            for (class, perms) in classes {
                let class = class.as_str().unwrap_or("?");
                let class_path = format!("{path}.{class}");
                let known = self.selinux.as_ref().map(|p| p.classes.get(class));
                match known {
                    Some(None) => {
                        let classes = self.selinux.as_ref().map(|p| &p.classes);
                        report.error(
                            &class_path,
                            format!(
                                "unknown class {class:?} in the loaded policy{}",
                                suggestion(
                                    class,
                                    classes
                                        .into_iter()
                                        .flat_map(|c| c.keys().map(String::as_str))
                                )
                            ),
                        );
                    }
                    None if !identifier(class, true) => report.error(
                        &class_path,
                        format!(
                            "{class:?} is not a valid class name (lowercase letters, digits and _)"
                        ),
                    ),
                    _ => {}
                }
                let Some(list) = self.string_list(Some(perms), &class_path, report) else {
                    continue;
                };
                if perms.as_sequence().is_some_and(Vec::is_empty) {
                    report.error(&class_path, "empty: list the permissions to allow");
                }
                let mut seen = BTreeSet::new();
                for (k, perm) in &list {
                    let perm_path = format!("{class_path}[{k}]");
                    match known {
                        Some(Some(perms)) if !perms.contains(perm) => report.error(
                            &perm_path,
                            format!(
                                "unknown permission {perm:?} for class {class}{}",
                                suggestion(perm, perms.iter().map(String::as_str))
                            ),
                        ),
                        None if !identifier(perm, true) => report.error(
                            &perm_path,
                            format!("{perm:?} is not a valid permission name (lowercase letters, digits and _)"),
                        ),
                        _ => {}
                    }
                    if !seen.insert(perm.as_str()) {
                        report.warning(&perm_path, format!("{perm:?} is listed twice"));
                    }
                }
            }
        }
    }
}
