//! Validating profiles — OCI seccomp JSON, a SeccompProfile, a SelinuxProfile — beyond a
//! schema: every problem, each with the JSON path of its field and a reason a person
//! understands. Syscall names are checked with libseccomp for every listed architecture, with a
//! "did you mean"; SELinux classes and permissions against the loaded policy when there is one
//! (else their syntax). Works on the parsed document tree, so unknown fields and wrong types are
//! reported together with everything else, not one at a time.
//!
//! The seams: `fields` (what each kind of document may hold), `suggest` (the "did you mean"),
//! `seccomp` and `selinux` (each kind's checks), `text` (the front end: a text of documents,
//! each problem with its line and column). Here: the validator, the report, and the checks
//! every kind shares.

use std::{collections::HashMap, path::Path};

use serde_yaml::Value;

mod fields;
mod seccomp;
mod selinux;
mod suggest;
mod text;

use fields::{DOCKER_FIELDS, OBJECT_FIELDS, OCI_FIELDS, SELINUX_FIELDS, STATES};
pub use selinux::{ModuleCheck, SelinuxPolicy};
use selinux::{compile, raw_selinux};
pub(crate) use suggest::suggestion;
pub use text::{Located, validate_documents, validate_text};

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
    /// Where in the field's string value (a RawSelinuxProfile's policy) the problem is.
    pub within: Option<crate::profile::cil::Pos>,
}

/// `path: message`, or the message alone for the document itself (as refusals and statuses
/// say it; `syscribe validate` adds line and column of its own).
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Syscall names per architecture, from libseccomp (built once per validator), and the SELinux
/// policy to check allow rules against, if any.
#[derive(Default)]
pub struct Validator {
    /// Compiles SELinux profiles that passed every other check, when set.
    compiler: Option<std::sync::Arc<dyn ModuleCheck>>,
    names: HashMap<String, Vec<String>>,
    /// The same names as sets, for membership (a review may hold 100k names).
    name_sets: HashMap<String, std::collections::HashSet<String>>,
    /// Every syscall name of every architecture → the first architecture that has it.
    anywhere: Option<HashMap<String, &'static str>>,
    selinux: Option<SelinuxPolicy>,
    /// Syscall-name suggestions left for the document being validated: each compares the
    /// name with every known one, so a document of thousands of bad names (the webhook takes
    /// what anyone sends) gets suggestions for the first ones only.
    suggestions_left: usize,
}

/// Syscall-name suggestions per document.
const MAX_SUGGESTIONS: usize = 64;

struct Report<'a> {
    problems: &'a mut Vec<Problem>,
    /// Problems beyond MAX_LISTED of their severity: counted, not listed.
    dropped: [usize; 2],
    listed: [usize; 2],
}

/// Problems listed per document and severity; the rest are counted ("and N more"): a
/// document the webhook or a file hands over may hold a problem per value.
pub const MAX_LISTED: usize = 1000;

impl Report<'_> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }
    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }
    fn push(&mut self, severity: Severity, path: impl Into<String>, message: impl Into<String>) {
        if !self.room(severity) {
            return;
        }
        self.problems.push(Problem {
            severity,
            path: path.into(),
            message: message.into(),
            within: None,
        });
    }
    /// Whether one more problem of `severity` is listed (else it is counted).
    fn room(&mut self, severity: Severity) -> bool {
        let i = severity as usize;
        if self.listed[i] >= MAX_LISTED {
            self.dropped[i] += 1;
            return false;
        }
        self.listed[i] += 1;
        true
    }
    /// A problem of `severity` at `path`, and at `within` inside its string value if given.
    fn push_at(
        &mut self,
        severity: Severity,
        path: &str,
        within: Option<crate::profile::cil::Pos>,
        message: String,
    ) {
        if self.room(severity) {
            self.problems.push(Problem {
                severity,
                path: path.to_owned(),
                message,
                within,
            });
        }
    }
    /// A problem at `at` inside the string value of `path`.
    fn error_within(&mut self, path: &str, at: crate::profile::cil::Pos, message: &str) {
        if !self.room(Severity::Error) {
            return;
        }
        self.problems.push(Problem {
            severity: Severity::Error,
            path: path.to_owned(),
            message: format!("policy line {at}: {message}"),
            within: Some(at),
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
/// Each key of `map` that is not in `allowed`, with the closest allowed one.
fn unknown_fields(
    map: &serde_yaml::Mapping,
    prefix: &str,
    allowed: &[&str],
    report: &mut Report<'_>,
) {
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if allowed.contains(&key) {
            continue;
        }
        let top = allowed.contains(&"apiVersion");
        if key == "comment" && !top {
            report.warning(
                join(prefix, key),
                "ignored: OCI runtimes and SeccompProfile have no comments (syscribe run refuses it)",
            );
            continue;
        }
        let message = if DOCKER_FIELDS.contains(&key) && !top {
            "unknown field: Docker's seccomp format, which OCI runtimes (runc, crun) ignore"
                .to_owned()
        } else if top && (OCI_FIELDS.contains(&key) || SELINUX_FIELDS.contains(&key)) {
            "unknown field here: it belongs in spec".to_owned()
        } else {
            format!("unknown field{}", suggestion(key, allowed.iter().copied()))
        };
        report.error(join(prefix, key), message);
    }
}

/// A string field with a fixed set of values.
fn one_of(value: &Value, path: &str, what: &str, allowed: &[&str], report: &mut Report<'_>) {
    match value.as_str() {
        Some(v) if allowed.contains(&v) => {}
        Some(v) => report.error(
            path,
            format!("unknown {what} {v:?} (expected {})", allowed.join(" or ")),
        ),
        None => report.error(
            path,
            format!(
                "must be a string ({}), not {}",
                allowed.join(" or "),
                type_name(value)
            ),
        ),
    }
}

/// `spec.state`: Enabled or Disabled.
fn state(spec: &Value, report: &mut Report<'_>) {
    if let Some(state) = spec.get("state") {
        one_of(state, "spec.state", "state", &STATES, report);
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => "a negative number",
        Value::Number(n) if n.is_f64() => "a fraction",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Validator {
    /// A validator that checks SELinux classes and permissions against `policy`.
    pub fn with_selinux_policy(policy: SelinuxPolicy) -> Self {
        Self {
            selinux: Some(policy),
            ..Self::default()
        }
    }

    /// Also compiles every SELinux profile that passed the other checks with `compiler`.
    pub fn with_compiler(mut self, compiler: std::sync::Arc<dyn ModuleCheck>) -> Self {
        self.compiler = Some(compiler);
        self
    }

    /// The loaded policy's classes when selinuxfs is mounted; else syntax checks only.
    pub fn for_this_host() -> Self {
        match SelinuxPolicy::load(Path::new(SelinuxPolicy::SELINUXFS)) {
            Ok(policy) if !policy.classes.is_empty() => Self::with_selinux_policy(policy),
            _ => Self::default(),
        }
    }

    /// Every problem of one document: an OCI seccomp document, a SeccompProfile or a
    /// SelinuxProfile. Errors first, then warnings, each in document order.
    pub fn validate(&mut self, doc: &Value) -> Vec<Problem> {
        let (mut problems, dropped) = self.validate_counted(doc);
        for (i, severity) in [Severity::Error, Severity::Warning].into_iter().enumerate() {
            if dropped[i] > 0 {
                let what = if i == 0 { "errors" } else { "warnings" };
                problems.push(Problem {
                    severity,
                    path: String::new(),
                    message: format!(
                        "and {} more {what} not listed (the first {MAX_LISTED} are)",
                        dropped[i]
                    ),
                    within: None,
                });
            }
        }
        problems.sort_by_key(|p| p.severity);
        problems
    }

    /// [`Self::validate`]'s problems without the "and N more" lines, and how many errors and
    /// warnings were not listed (beyond MAX_LISTED each).
    pub fn validate_counted(&mut self, doc: &Value) -> (Vec<Problem>, [usize; 2]) {
        self.suggestions_left = MAX_SUGGESTIONS;
        let mut problems = Vec::new();
        let mut report = Report {
            problems: &mut problems,
            dropped: [0; 2],
            listed: [0; 2],
        };
        if doc.is_null() {
            report.error("", "empty: no profile in this document (only comments?)");
            return (problems, [0; 2]);
        }
        if !doc.is_mapping() {
            report.error(
                "",
                format!("a profile must be a mapping, not {}", type_name(doc)),
            );
            return (problems, [0; 2]);
        }
        let kind = doc.get("kind").map(|k| (k, k.as_str()));
        match kind {
            None => self.seccomp(doc, "", false, &mut report),
            Some((_, Some(kind @ ("SeccompProfile" | "SelinuxProfile" | "RawSelinuxProfile")))) => {
                if let Some(map) = doc.as_mapping() {
                    unknown_fields(map, "", &OBJECT_FIELDS, &mut report);
                }
                // The versions upstream served, newest first.
                let versions: &[&str] = if kind == "SeccompProfile" {
                    &["v1", "v1beta1", "v1alpha1"]
                } else {
                    &["v1", "v1alpha2"]
                };
                let api_version = doc.get("apiVersion").and_then(Value::as_str);
                let known = api_version
                    .and_then(|v| v.strip_prefix("security-profiles-operator.x-k8s.io/"))
                    .is_some_and(|v| versions.contains(&v));
                if !known {
                    report.error(
                        "apiVersion",
                        format!(
                            "expected security-profiles-operator.x-k8s.io/v1 for a {kind} (older: {}), found {}",
                            versions[1..].join(", "),
                            api_version.map_or("nothing".to_owned(), |v| format!("{v:?}"))
                        ),
                    );
                }
                match doc.get("spec") {
                    Some(spec) if kind == "SeccompProfile" => {
                        self.seccomp(spec, "spec", true, &mut report)
                    }
                    Some(spec) if kind == "RawSelinuxProfile" => raw_selinux(spec, &mut report),
                    Some(spec) => self.selinux(spec, &mut report),
                    None => report.error("spec", format!("missing: a {kind} needs a spec")),
                }
            }
            Some((kind, _)) => report.error(
                "kind",
                format!(
                    "{} is not a seccomp or SELinux profile (expected SeccompProfile, SelinuxProfile, RawSelinuxProfile, or an OCI seccomp document without kind)",
                    serde_json::to_string(kind).unwrap_or_default()
                ),
            ),
        }
        let selinux = matches!(
            kind,
            Some((_, Some("SelinuxProfile" | "RawSelinuxProfile")))
        );
        if selinux
            && report.listed[Severity::Error as usize] == 0
            && let Some(compiler) = &self.compiler
        {
            compile(compiler.as_ref(), doc, &mut report);
        }
        let dropped = report.dropped;
        problems.sort_by_key(|p| p.severity);
        (problems, dropped)
    }
    /// The strings of a list, each with its index in the list; `None` when absent or not a
    /// list (reported). Items that are not strings are reported and left out.
    fn string_list(
        &self,
        value: Option<&Value>,
        path: &str,
        report: &mut Report<'_>,
    ) -> Option<Vec<(usize, String)>> {
        let value = value?;
        let Some(items) = value.as_sequence() else {
            report.error(path, format!("must be a list, not {}", type_name(value)));
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.as_str() {
                    Some(s) => Some((i, s.to_owned())),
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
mod tests;
